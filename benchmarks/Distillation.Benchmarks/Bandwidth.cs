using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Distillation.Benchmarks;

/// <summary>
/// What one core's memory traffic costs per element, apart from any arithmetic (`-- --bandwidth`): streaming stores
/// alone (4 bytes per element), one and two float streams read, the floor (two read, one streamed: 12 bytes), the same
/// traffic in two phases (read both rows, then stream the third), and two reads with a chain of FMAs per vector (the
/// arithmetic hides the reads once it is the longer of the two). Medians of 15 passes over 8 M elements (32 MB per
/// array, far beyond L3). The evidence behind "What each element costs" in docs/KERNELS.md.
/// </summary>
internal static unsafe class Bandwidth
{
    private const int N = 8_192_000;

    public static void Run()
    {
        if (!Avx512F.IsSupported)
        {
            Console.WriteLine("--bandwidth measures 512-bit loads and streaming stores; this machine has no AVX-512.");
            return;
        }

        float* a = (float*)NativeMemory.AlignedAlloc(N * sizeof(float), 64);
        float* b = (float*)NativeMemory.AlignedAlloc(N * sizeof(float), 64);
        float* c = (float*)NativeMemory.AlignedAlloc(N * sizeof(float), 64);
        try
        {
            for (int i = 0; i < N; i++)
            {
                a[i] = i % 97;
                b[i] = 1;
                c[i] = 0;
            }

            Console.WriteLine("traffic (1 thread)                          ns per element");
            Measure("stream 4 B (streaming stores only)", () => StreamOnly(c));
            Measure("read 4 B (one row)", () => ReadOne(a));
            Measure("read 8 B (two rows)", () => ReadTwo(a, b));
            Measure("floor: read 8 B, stream 4 B, one loop", () => Floor(a, b, c));
            Measure("read 8 B, then stream 4 B (two loops)", () => ReadTwo(a, b) + StreamOnly(c));
            foreach (int k in new[] { 4, 8, 12 })
            {
                Measure($"FMA chains of {k} per vector, in cache", () => Arithmetic(a, b, k, inCache: true));
                Measure($"the same, reading 8 B from memory", () => Arithmetic(a, b, k, inCache: false));
            }
        }
        finally
        {
            NativeMemory.AlignedFree(a);
            NativeMemory.AlignedFree(b);
            NativeMemory.AlignedFree(c);
        }
    }

    private static void Measure(string name, Func<float> body)
    {
        var times = new List<double>();
        float sink = 0;
        for (int r = 0; r < 15; r++)
        {
            long start = Stopwatch.GetTimestamp();
            sink += body();
            times.Add(Stopwatch.GetElapsedTime(start).TotalNanoseconds / N);
        }

        times.Sort();
        Console.WriteLine($"{name,-44} {times[times.Count / 2],6:F3}{(float.IsNaN(sink) ? " (NaN)" : string.Empty)}");
    }

    private static float StreamOnly(float* c)
    {
        Vector512<float> v = Vector512.Create(1f);
        for (int i = 0; i < N; i += 16)
        {
            Avx512F.StoreAlignedNonTemporal(c + i, v);
        }

        Sse.StoreFence();
        return 0;
    }

    private static float ReadOne(float* a)
    {
        Vector512<float> acc = Vector512<float>.Zero;
        for (int i = 0; i < N; i += 16)
        {
            acc += Vector512.LoadAligned(a + i);
        }

        return Vector512.Sum(acc);
    }

    private static float ReadTwo(float* a, float* b)
    {
        Vector512<float> acc = Vector512<float>.Zero;
        for (int i = 0; i < N; i += 16)
        {
            acc += Vector512.LoadAligned(a + i) + Vector512.LoadAligned(b + i);
        }

        return Vector512.Sum(acc);
    }

    private static float Floor(float* a, float* b, float* c)
    {
        for (int i = 0; i < N; i += 16)
        {
            Avx512F.StoreAlignedNonTemporal(c + i, Vector512.LoadAligned(a + i) + Vector512.LoadAligned(b + i));
        }

        Sse.StoreFence();
        return 0;
    }

    /// <summary>Per vector of each row a dependent chain of <paramref name="k"/> FMAs (chains of different vectors are independent).</summary>
    private static float Arithmetic(float* a, float* b, int k, bool inCache)
    {
        Vector512<float> accA = Vector512<float>.Zero, accB = Vector512<float>.Zero, m = Vector512.Create(0.999f), d = Vector512.Create(0.001f);
        int mask = inCache ? 4095 : int.MaxValue;
        for (int i = 0; i < N; i += 16)
        {
            Vector512<float> x = Vector512.LoadAligned(a + (i & mask)), y = Vector512.LoadAligned(b + (i & mask));
            for (int j = 0; j < k; j++)
            {
                x = Vector512.FusedMultiplyAdd(x, m, d);
                y = Vector512.FusedMultiplyAdd(y, m, d);
            }

            accA += x;
            accB += y;
        }

        return Vector512.Sum(accA + accB);
    }
}
