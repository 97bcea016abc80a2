using Distillation.Kernels;

namespace Distillation.Tests;

/// <summary>Shared helpers: the loss keys of the reference data, and calls on a forced kernel path.</summary>
internal static class TestSupport
{
    /// <summary>The kernel paths the tests exercise (all run on any x64 machine; a narrower CPU falls back in software).</summary>
    public static readonly KernelPath[] Paths = [KernelPath.Scalar, KernelPath.Vector256, KernelPath.Vector512];

    /// <summary>The divergence keys of the reference data and what they mean.</summary>
    public static readonly (string Key, Divergence Divergence)[] DivergenceKeys =
    [
        ("forward_kl", Divergence.ForwardKL),
        ("reverse_kl", Divergence.ReverseKL),
        ("soft_ce", Divergence.SoftCrossEntropy),
        ("jsd_0.0", Divergence.GeneralizedJsd(0.0)),
        ("jsd_0.1", Divergence.GeneralizedJsd(0.1)),
        ("jsd_0.5", Divergence.GeneralizedJsd(0.5)),
        ("jsd_0.9", Divergence.GeneralizedJsd(0.9)),
        ("jsd_1.0", Divergence.GeneralizedJsd(1.0)),
        ("skew_kl_0.1", Divergence.SkewKL(0.1)),
        ("skew_kl_0.5", Divergence.SkewKL(0.5)),
        ("skew_rkl_0.1", Divergence.SkewReverseKL(0.1)),
        ("skew_rkl_0.5", Divergence.SkewReverseKL(0.5)),
        ("tvd", Divergence.TotalVariation),
    ];

    public static readonly Divergence[] AllDivergences = DivergenceKeys.Select(k => k.Divergence).ToArray();

    /// <summary>Per-row values and gradients of <paramref name="divergence"/> on a forced path.</summary>
    public static (float[] Rows, float[] Gradient, LossResult Result) Run(Divergence divergence, float temperature, float[] teacher, float[] student, int vocab, KernelPath path, DistributionKind teacherKind = DistributionKind.Logits, int threads = 1)
    {
        int rows = teacher.Length / vocab;
        var loss = new DistillationLoss(divergence, temperature) { MaxDegreeOfParallelism = threads };
        var t = teacherKind switch
        {
            DistributionKind.Probabilities => TeacherDistribution.FromProbabilities(teacher, vocab),
            DistributionKind.LogProbabilities => TeacherDistribution.FromLogProbabilities(teacher, vocab),
            _ => TeacherDistribution.FromLogits(teacher, vocab),
        };
        var rowValues = new float[rows];
        var gradient = new float[teacher.Length];
        LossResult result = loss.ComputeCore(t, StudentDistribution.FromLogits(student, vocab), gradient, true, Reduction.None, default, rowValues, path);
        return (rowValues, gradient, result);
    }

    /// <summary>Per-row values and gradients of the hard-label loss on a forced path.</summary>
    public static (float[] Rows, float[] Gradient) RunLanguageModel(float[] student, int[] labels, int vocab, KernelPath path, float smoothing = 0f)
    {
        var rowValues = new float[labels.Length];
        var gradient = new float[student.Length];
        new LanguageModelLoss(smoothing).ComputeCore(StudentDistribution.FromLogits(student, vocab), new TokenLabels(labels), gradient, true, Reduction.None, rowValues, path);
        return (rowValues, gradient);
    }

    /// <summary>Random logits, normal(0, scale), from a fixed seed.</summary>
    public static float[] RandomLogits(Random random, int count, double scale = 3.0)
    {
        var x = new float[count];
        for (int i = 0; i < count; i++)
        {
            double u1 = 1.0 - random.NextDouble(), u2 = random.NextDouble();
            x[i] = (float)(scale * Math.Sqrt(-2 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2));
        }

        return x;
    }
}
