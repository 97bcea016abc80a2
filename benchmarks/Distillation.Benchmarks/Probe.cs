using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Linq;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using System.Threading.Tasks;
using Distillation.Kernels;

namespace Distillation.Benchmarks;

/// <summary>
/// A quick probe for kernel work (`-- --probe [rows] [vocab]`): median ns per element of the floor and the fused
/// kernels, measured in one process. BenchmarkDotNet remains the source of published figures.
/// </summary>
internal static class Probe
{
    public static void Run(int rows, int vocab, string? only = null)
    {
        int n = rows * vocab;
        var random = new Random(1);
        // XPAD (floats) moves the gradient within its buffer, to look at 4K aliasing between the streams.
        int pad = int.Parse(Environment.GetEnvironmentVariable("XPAD") ?? "0", System.Globalization.CultureInfo.InvariantCulture);
        float[] t = new float[n], s = new float[n], g = new float[n + pad];
        for (int i = 0; i < n; i++)
        {
            t[i] = (float)((random.NextDouble() * 8) - 4);
            s[i] = (float)((random.NextDouble() * 8) - 4);
        }

        var teacher = TeacherDistribution.FromLogits(t, vocab);
        var student = StudentDistribution.FromLogits(s, vocab);
        var cases = new List<(string Name, Action Body)>
        {
            ("floor 1 thread", () => Floor.Add(t, s, g, 0, n)),
            ("floor all cores", () => Floor.AddParallel(t, s, g)),
        };
        foreach (Divergence d in new[] { Divergence.ForwardKL, Divergence.SoftCrossEntropy, Divergence.ReverseKL, Divergence.GeneralizedJsd(0.5), Divergence.SkewKL(0.1), Divergence.SkewKL(0.5), Divergence.SkewReverseKL(0.1), Divergence.TotalVariation })
        {
            var one = new DistillationLoss(d, 2f) { MaxDegreeOfParallelism = 1 };
            var all = new DistillationLoss(d, 2f);
            cases.Add(($"{d} 1 thread", () => one.Compute(teacher, student, g.AsSpan(pad, n))));
            cases.Add(($"{d} all cores", () => all.Compute(teacher, student, g.AsSpan(pad, n))));
            cases.Add(($"{d} 1 thread V256", () => one.ComputeCore(teacher, student, g.AsSpan(pad, n), true, default, default, default, KernelPath.Vector256)));
            cases.Add(($"{d} 1 thread value only", () => one.Evaluate(teacher, student)));
        }

        {
            // Two threads of our own, each a 1-thread call on half the rows: the pool's hand-off against none.
            int half = rows / 2 * vocab;
            var oneA = new DistillationLoss(Divergence.ForwardKL, 2f) { MaxDegreeOfParallelism = 1 };
            var oneB = new DistillationLoss(Divergence.ForwardKL, 2f) { MaxDegreeOfParallelism = 1 };
            var tA = TeacherDistribution.FromLogits(t.AsMemory(0, half), vocab);
            var sA = StudentDistribution.FromLogits(s.AsMemory(0, half), vocab);
            var tB = TeacherDistribution.FromLogits(t.AsMemory(half, n - half), vocab);
            var sB = StudentDistribution.FromLogits(s.AsMemory(half, n - half), vocab);
            cases.Add(("ForwardKL own 2 threads", () =>
            {
                var other = System.Threading.Tasks.Task.Run(() => oneB.Compute(tB, sB, g.AsSpan(pad + half, n - half)));
                oneA.Compute(tA, sA, g.AsSpan(pad, half));
                other.Wait();
            }));
            cases.Add(("ForwardKL half rows 1 thread", () => oneA.Compute(tA, sA, g.AsSpan(pad, half))));
        }

        foreach (int k in new[] { 20, 128 })
        {
            // A top-k teacher cut from the dense one (binary16 log-probabilities, rest bucket), as SparseBenchmarks;
            // cut at a case's first (warm-up) call, so that a probe of other cases does not wait for it.
            var topK = new Lazy<TopKTeacherDistribution>(() => Shapes.TopK(t, rows, vocab, k));
            foreach (Divergence d in new[] { Divergence.ForwardKL, Divergence.GeneralizedJsd(0.5) })
            {
                var one = new DistillationLoss(d, 2f) { MaxDegreeOfParallelism = 1 };
                cases.Add(($"top-{k} {d} 1 thread", () => one.Compute(topK.Value, student, g.AsSpan(pad, n))));
                cases.Add(($"top-{k} {d} 1 thread value only", () => one.Evaluate(topK.Value, student)));
            }
        }

        if (only is not null)
        {
            // A filter starting with '=' names one case exactly; otherwise every case whose name contains it runs.
            cases.RemoveAll(c => only.StartsWith('=') ? c.Name != only[1..] : !c.Name.Contains(only, StringComparison.Ordinal));
        }

        // Three rounds over all cases, each case's best median kept: a busy moment on a shared machine spoils one round.
        var best = new double[cases.Count];
        Array.Fill(best, double.MaxValue);
        for (int round = 0; round < 3; round++)
        {
            for (int c = 0; c < cases.Count; c++)
            {
                Action body = cases[c].Body;
                for (int i = 0; i < 3; i++)
                {
                    body();
                }

                var times = new List<double>();
                for (int i = 0; i < 11; i++)
                {
                    long start = Stopwatch.GetTimestamp();
                    body();
                    times.Add(Stopwatch.GetElapsedTime(start).TotalNanoseconds / n);
                }

                times.Sort();
                best[c] = Math.Min(best[c], times[times.Count / 2]);
            }
        }

        for (int c = 0; c < cases.Count; c++)
        {
            Console.WriteLine($"{cases[c].Name,-40} {best[c],6:F3} ns/element");
        }
    }
}

/// <summary>The memory floor: read two float arrays, write one (12 bytes per element), with non-temporal stores.</summary>
internal static class Floor
{
    public static unsafe void Add(float[] a, float[] b, float[] c, int start, int end)
    {
        fixed (float* pa = a, pb = b, pc = c)
        {
            int i = start;
            // Scalar head up to a 64-byte boundary of the destination, then aligned non-temporal stores.
            while (i < end && ((nuint)(pc + i) & 63) != 0)
            {
                pc[i] = pa[i] + pb[i];
                i++;
            }

            if (Avx512F.IsSupported)
            {
                for (; i + 16 <= end; i += 16)
                {
                    Avx512F.StoreAlignedNonTemporal(pc + i, Vector512.Load(pa + i) + Vector512.Load(pb + i));
                }
            }

            for (; i < end; i++)
            {
                pc[i] = pa[i] + pb[i];
            }
        }
    }

    public static void AddParallel(float[] a, float[] b, float[] c)
    {
        int threads = Environment.ProcessorCount, n = a.Length;
        Parallel.For(0, threads, k => Add(a, b, c, (int)((long)n * k / threads), (int)((long)n * (k + 1) / threads)));
    }
}
