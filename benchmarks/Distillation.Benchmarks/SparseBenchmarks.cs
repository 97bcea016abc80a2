using System;
using System.Linq;
using BenchmarkDotNet.Attributes;

namespace Distillation.Benchmarks;

/// <summary>
/// A top-k teacher (binary16 log-probabilities, rest bucket) against the dense float teacher it was cut from, loss and
/// gradient at T = 2 over 256 × 32000 on one thread: the top-k path reads 6·k bytes of teacher per row instead of
/// 4·V and spends one exp per vocabulary entry (the student's) instead of two.
/// </summary>
[MemoryDiagnoser]
public class SparseBenchmarks
{
    private float[] _student = [];
    private float[] _gradient = [];
    private TeacherDistribution _dense;
    private TopKTeacherDistribution _topK;
    private StudentDistribution _s;
    private DistillationLoss _loss = null!;

    [Params("ForwardKL", "JSD(0.5)")]
    public string Loss { get; set; } = "ForwardKL";

    [Params(20, 128)]
    public int K { get; set; } = 20;

    [Params("256x32000")]
    public string Shape { get; set; } = "256x32000";

    [GlobalSetup]
    public void Setup()
    {
        (int rows, int vocab) = Shapes.Parse(Shape);
        (float[] teacher, _student, _gradient) = Shapes.Data(rows, vocab);
        _dense = TeacherDistribution.FromLogits(teacher, vocab);
        _s = StudentDistribution.FromLogits(_student, vocab);
        _loss = new DistillationLoss(Shapes.Divergence(Loss), 2f) { MaxDegreeOfParallelism = 1 };

        _topK = Shapes.TopK(teacher, rows, vocab, K);
    }

    [Benchmark(Baseline = true, Description = "dense float teacher, 1 thread")]
    public double Dense() => _loss.Compute(_dense, _s, _gradient).Value;

    [Benchmark(Description = "top-k Half teacher, rest bucket, 1 thread")]
    public double TopK() => _loss.Compute(_topK, _s, _gradient).Value;
}
