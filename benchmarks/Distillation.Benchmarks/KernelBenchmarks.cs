using System;
using System.Runtime.Intrinsics;
using System.Threading.Tasks;
using BenchmarkDotNet.Attributes;

namespace Distillation.Benchmarks;

/// <summary>
/// Fused forward KL with gradient against the memory floor (a streaming kernel that reads two float arrays and
/// writes one: the 12 bytes per element a fused loss must move), in the same run.
/// </summary>
[MemoryDiagnoser]
public class KernelBenchmarks
{
    /// <summary>Set by <c>--smoke</c>: tiny sizes so a dry run is quick.</summary>
    public static bool SmokeSizes { get; set; }

    private float[] _teacher = [];
    private float[] _student = [];
    private float[] _gradient = [];
    private DistillationLoss _oneThread = null!;
    private DistillationLoss _allCores = null!;
    private TeacherDistribution _t;
    private StudentDistribution _s;

    [Params("256x32000")]
    public string Shape { get; set; } = "256x32000";

    private int Rows => SmokeSizes ? 4 : int.Parse(Shape.Split('x')[0], System.Globalization.CultureInfo.InvariantCulture);

    private int Vocab => SmokeSizes ? 1000 : int.Parse(Shape.Split('x')[1], System.Globalization.CultureInfo.InvariantCulture);

    [GlobalSetup]
    public void Setup()
    {
        int n = Rows * Vocab;
        var random = new Random(1);
        _teacher = new float[n];
        _student = new float[n];
        _gradient = new float[n];
        for (int i = 0; i < n; i++)
        {
            _teacher[i] = (float)(random.NextDouble() * 8 - 4);
            _student[i] = (float)(random.NextDouble() * 8 - 4);
        }

        _t = TeacherDistribution.FromLogits(_teacher, Vocab);
        _s = StudentDistribution.FromLogits(_student, Vocab);
        _oneThread = new DistillationLoss(Divergence.ForwardKL, 2f) { MaxDegreeOfParallelism = 1 };
        _allCores = new DistillationLoss(Divergence.ForwardKL, 2f);
    }

    [Benchmark(Baseline = true, Description = "floor c=a+b, 1 thread")]
    public void FloorOneThread() => Add(_teacher, _student, _gradient, 0, _teacher.Length);

    [Benchmark(Description = "floor c=a+b, all cores")]
    public void FloorAllCores()
    {
        int threads = Environment.ProcessorCount, n = _teacher.Length;
        Parallel.For(0, threads, k => Add(_teacher, _student, _gradient, (int)((long)n * k / threads), (int)((long)n * (k + 1) / threads)));
    }

    [Benchmark(Description = "forward KL fused, 1 thread")]
    public double ForwardKLOneThread() => _oneThread.Compute(_t, _s, _gradient).Value;

    [Benchmark(Description = "forward KL fused, all cores")]
    public double ForwardKLAllCores() => _allCores.Compute(_t, _s, _gradient).Value;

    private static unsafe void Add(float[] a, float[] b, float[] c, int start, int end)
    {
        fixed (float* pa = a, pb = b, pc = c)
        {
            int i = start;
            for (; i + 16 <= end; i += 16)
            {
                (Vector512.Load(pa + i) + Vector512.Load(pb + i)).Store(pc + i);
            }

            for (; i < end; i++)
            {
                pc[i] = pa[i] + pb[i];
            }
        }
    }
}
