using System;
using System.Globalization;
using System.Linq;
using BenchmarkDotNet.Attributes;
using Distillation.Kernels;

namespace Distillation.Benchmarks;

/// <summary>A loss + gradient at T = 2 (our fused kernel on 1 thread and on all cores) against the memory floor, in the same run.</summary>
public abstract class FloorComparison
{
    private float[] _teacher = [];
    private float[] _student = [];
    private float[] _gradient = [];
    private TeacherDistribution _t;
    private StudentDistribution _s;
    private DistillationLoss _one = null!;
    private DistillationLoss _all = null!;

    [Benchmark(Baseline = true, Description = "floor, 1 thread")]
    public void FloorOneThread() => Floor.Add(_teacher, _student, _gradient, 0, _teacher.Length);

    [Benchmark(Description = "floor, all cores")]
    public void FloorAllCores() => Floor.AddParallel(_teacher, _student, _gradient);

    [Benchmark(Description = "fused, 1 thread")]
    public double FusedOneThread() => _one.Compute(_t, _s, _gradient).Value;

    [Benchmark(Description = "fused, all cores")]
    public double FusedAllCores() => _all.Compute(_t, _s, _gradient).Value;

    /// <summary>Builds the data and the two losses (called from each subclass's [GlobalSetup]).</summary>
    protected void Setup(string loss, int rows, int vocab)
    {
        (_teacher, _student, _gradient) = Shapes.Data(rows, vocab);
        _t = TeacherDistribution.FromLogits(_teacher, vocab);
        _s = StudentDistribution.FromLogits(_student, vocab);
        Divergence d = Shapes.Divergence(loss);
        _one = new DistillationLoss(d, 2f) { MaxDegreeOfParallelism = 1 };
        _all = new DistillationLoss(d, 2f);
    }
}

/// <summary>The loss + gradient matrix at T = 2: forward KL, soft CE, reverse KL and JSD(0.5) at the three sizes.</summary>
[MemoryDiagnoser]
public class LossBenchmarks : FloorComparison
{
    [Params("ForwardKL", "SoftCrossEntropy", "ReverseKL", "JSD(0.5)")]
    public string Loss { get; set; } = "ForwardKL";

    [Params("256x32000", "64x128256", "4096x32000")]
    public string Shape { get; set; } = "256x32000";

    [GlobalSetup]
    public void Setup()
    {
        (int rows, int vocab) = Shapes.Parse(Shape);
        Setup(Loss, rows, vocab);
    }
}

/// <summary>The rest of the family the 2.5× target names (skew KL, skew reverse KL, TVD), at 256 × 32000 against the floor.</summary>
[MemoryDiagnoser]
public class FamilyBenchmarks : FloorComparison
{
    [Params("SkewKL(0.1)", "SkewReverseKL(0.1)", "TVD")]
    public string Loss { get; set; } = "TVD";

    [GlobalSetup]
    public void Setup() => Setup(Loss, 256, 32000);
}

/// <summary>The slow baselines, at the smallest size only: the scalar reference, a TensorPrimitives chain, MathNet.Numerics.</summary>
[MemoryDiagnoser]
public class BaselineBenchmarks
{
    private float[] _teacher = [];
    private float[] _student = [];
    private float[] _gradient = [];
    private float[] _scratch = [];
    private int _vocab;
    private Divergence _divergence;
    private TeacherDistribution _t;
    private StudentDistribution _s;
    private DistillationLoss _loss = null!;

    [Params("ForwardKL", "SoftCrossEntropy", "ReverseKL", "JSD(0.5)")]
    public string Loss { get; set; } = "ForwardKL";

    [Params("256x32000")]
    public string Shape { get; set; } = "256x32000";

    [GlobalSetup]
    public void Setup()
    {
        (int rows, _vocab) = Shapes.Parse(Shape);
        (_teacher, _student, _gradient) = Shapes.Data(rows, _vocab);
        _scratch = new float[5 * _vocab];
        _t = TeacherDistribution.FromLogits(_teacher, _vocab);
        _s = StudentDistribution.FromLogits(_student, _vocab);
        _divergence = Shapes.Divergence(Loss);
        _loss = new DistillationLoss(_divergence, 2f) { MaxDegreeOfParallelism = 1 };
    }

    [Benchmark(Baseline = true, Description = "fused, 1 thread")]
    public double Fused() => _loss.Compute(_t, _s, _gradient).Value;

    [Benchmark(Description = "scalar reference (double), 1 thread")]
    public double ScalarReference() => _loss.ComputeCore(_t, _s, _gradient, true, default, default, default, KernelPath.Scalar).Value;

    [Benchmark(Description = "TensorPrimitives chain, 1 thread")]
    public double TensorPrimitivesChain() => Baselines.TensorPrimitivesChain(_divergence, _teacher, _student, _gradient, _vocab, 2f, _scratch);

    [Benchmark(Description = "MathNet.Numerics, 1 thread")]
    public double MathNet() => Baselines.MathNet(_divergence, _teacher, _student, _gradient, _vocab, 2f);
}

/// <summary>Shapes and data shared by the benchmarks.</summary>
internal static class Shapes
{
    /// <summary>Set by <c>--smoke</c>: tiny sizes so a dry run is quick.</summary>
    public static bool Smoke { get; set; }

    public static (int Rows, int Vocab) Parse(string shape)
    {
        if (Smoke)
        {
            return (4, 1000);
        }

        string[] parts = shape.Split('x');
        return (int.Parse(parts[0], CultureInfo.InvariantCulture), int.Parse(parts[1], CultureInfo.InvariantCulture));
    }

    public static (float[] Teacher, float[] Student, float[] Gradient) Data(int rows, int vocab)
    {
        int n = rows * vocab;
        var random = new Random(1);
        float[] t = new float[n], s = new float[n];
        for (int i = 0; i < n; i++)
        {
            t[i] = (float)((random.NextDouble() * 8) - 4);
            s[i] = (float)((random.NextDouble() * 8) - 4);
        }

        return (t, s, new float[n]);
    }

    /// <summary>The k most likely tokens of each teacher row, as log-probabilities at T_gen = 1 stored in binary16 (rest bucket).</summary>
    public static TopKTeacherDistribution TopK(float[] teacher, int rows, int vocab, int k)
    {
        k = Math.Min(k, vocab);
        int[] ids = new int[rows * k];
        Half[] logp = new Half[rows * k];
        for (int r = 0; r < rows; r++)
        {
            float[] row = teacher.AsSpan(r * vocab, vocab).ToArray();
            float max = row.Max();
            double lse = max + Math.Log(row.Sum(x => Math.Exp(x - max)));
            int[] top = Enumerable.Range(0, vocab).OrderByDescending(j => row[j]).Take(k).ToArray();
            for (int i = 0; i < k; i++)
            {
                ids[(r * k) + i] = top[i];
                logp[(r * k) + i] = (Half)(row[top[i]] - lse);
            }
        }

        return TopKTeacherDistribution.FromLogProbabilities(ids, logp.AsMemory(), k, vocab, ResidualMassPolicy.RestBucket);
    }

    public static Divergence Divergence(string name) => name switch
    {
        "ForwardKL" => Distillation.Divergence.ForwardKL,
        "SoftCrossEntropy" => Distillation.Divergence.SoftCrossEntropy,
        "ReverseKL" => Distillation.Divergence.ReverseKL,
        "JSD(0.5)" => Distillation.Divergence.GeneralizedJsd(0.5),
        "SkewKL(0.1)" => Distillation.Divergence.SkewKL(0.1),
        "SkewReverseKL(0.1)" => Distillation.Divergence.SkewReverseKL(0.1),
        "TVD" => Distillation.Divergence.TotalVariation,
        _ => throw new ArgumentOutOfRangeException(nameof(name), name, "unknown loss"),
    };
}
