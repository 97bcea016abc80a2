using System;

namespace Distillation.Benchmarks;

/// <summary>
/// Before timing anything, the baselines must compute the same loss and gradient as the library (run by
/// <c>--smoke</c> in CI): a benchmark against a wrong baseline proves nothing.
/// </summary>
internal static class BaselineCheck
{
    public static bool Run()
    {
        const int rows = 4, vocab = 1000;
        (float[] t, float[] s, float[] expected) = Shapes.Data(rows, vocab);
        float[] actual = new float[expected.Length], scratch = new float[5 * vocab];
        bool ok = true;
        foreach (string name in new[] { "ForwardKL", "SoftCrossEntropy", "ReverseKL", "JSD(0.5)" })
        {
            Divergence d = Shapes.Divergence(name);
            double reference = new DistillationLoss(d, 2f).Compute(TeacherDistribution.FromLogits(t, vocab), StudentDistribution.FromLogits(s, vocab), expected, Reduction.Sum).Value;
            ok &= Compare($"{name} TensorPrimitives", Baselines.TensorPrimitivesChain(d, t, s, actual, vocab, 2f, scratch), reference, actual, expected);
            ok &= Compare($"{name} MathNet", Baselines.MathNet(d, t, s, actual, vocab, 2f), reference, actual, expected);
        }

        return ok;
    }

    private static bool Compare(string what, double value, double reference, float[] gradient, float[] expected)
    {
        double worst = 0;
        for (int i = 0; i < gradient.Length; i++)
        {
            worst = Math.Max(worst, Math.Abs(gradient[i] - expected[i]));
        }

        bool ok = Math.Abs(value - reference) <= 1e-4 * Math.Max(1, Math.Abs(reference)) && worst <= 1e-5;
        Console.WriteLine($"baseline check {what,-32} value {value,12:G6} vs {reference,12:G6}, max |Δg| {worst:E1} {(ok ? "ok" : "MISMATCH")}");
        return ok;
    }
}
