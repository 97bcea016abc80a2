using System;
using BenchmarkDotNet.Attributes;

namespace Distillation.Benchmarks;

/// <summary>
/// Cost per element across vocabularies at about 8 M elements per call (forward KL with gradient, T = 2, 1 thread),
/// and a single row of V = 32000 (no thread hand-off for tiny work), plus the Half teacher against the float path.
/// </summary>
[MemoryDiagnoser]
public class ShapeBenchmarks
{
    private float[] _teacher = [];
    private float[] _student = [];
    private float[] _gradient = [];
    private TeacherDistribution _t;
    private TeacherDistribution _tHalf;
    private StudentDistribution _s;
    private DistillationLoss _one = null!;
    private DistillationLoss _all = null!;

    [Params("8192x1024", "2048x4096", "512x16384", "256x32000", "128x65536", "64x131072", "32x262144", "1x32000")]
    public string Shape { get; set; } = "256x32000";

    [GlobalSetup]
    public void Setup()
    {
        (int rows, int vocab) = Shapes.Parse(Shape);
        (_teacher, _student, _gradient) = Shapes.Data(rows, vocab);
        _t = TeacherDistribution.FromLogits(_teacher, vocab);
        var half = new System.Half[_teacher.Length];
        for (int i = 0; i < half.Length; i++)
        {
            half[i] = (System.Half)_teacher[i];
        }

        _tHalf = TeacherDistribution.FromLogits(half.AsMemory(), vocab);
        _s = StudentDistribution.FromLogits(_student, vocab);
        _one = new DistillationLoss(Divergence.ForwardKL, 2f) { MaxDegreeOfParallelism = 1 };
        _all = new DistillationLoss(Divergence.ForwardKL, 2f);
    }

    [Benchmark(Baseline = true, Description = "forward KL, float teacher, 1 thread")]
    public double FloatTeacher() => _one.Compute(_t, _s, _gradient).Value;

    [Benchmark(Description = "forward KL, Half teacher, 1 thread")]
    public double HalfTeacher() => _one.Compute(_tHalf, _s, _gradient).Value;

    [Benchmark(Description = "forward KL, float teacher, all cores")]
    public double FloatTeacherAllCores() => _all.Compute(_t, _s, _gradient).Value;
}
