using System;
using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using V = System.Runtime.Intrinsics.Vector512<float>;

namespace Distillation.Benchmarks;

/// <summary>
/// What one core issues per nanosecond of each 512-bit instruction the kernels are made of
/// (`-- --throughput`): eight independent chains per loop (sixteen for the FMA + add mix), so that latency is hidden
/// and the figure is the throughput. The evidence behind the cost model in docs/KERNELS.md ("What bounds one core").
/// </summary>
internal static class Throughput
{
    private const int Iterations = 50_000_000;

    public static void Run()
    {
        if (!Avx512F.IsSupported || !Avx512DQ.IsSupported)
        {
            Console.WriteLine("--throughput measures AVX-512 instructions; this machine has none.");
            return;
        }

        Console.WriteLine("instruction (512-bit)      ns per instruction   per ns");
        Measure("vfmadd (FMA)", Fma, 8);
        Measure("vaddps", Add, 8);
        Measure("vmaxps", Max, 8);
        Measure("FMA + add, 8 each", FmaAndAdd, 16);
        Measure("vreduceps", Reduce, 8);
        Measure("vscalefps", Scale, 8);
        Measure("vgetexpps", GetExponent, 8);
        Measure("vgetmantps", GetMantissa, 8);
        Measure("vpermps", Permute, 8);
        Measure("vdivps", Divide, 8);
    }

    private static void Measure(string name, Func<V> body, int perIteration)
    {
        V sink = body();
        double best = double.MaxValue;
        for (int round = 0; round < 5; round++)
        {
            long start = Stopwatch.GetTimestamp();
            sink += body();
            best = Math.Min(best, Stopwatch.GetElapsedTime(start).TotalNanoseconds / Iterations / perIteration);
        }

        // The sink's lane is printed nowhere but kept alive, so the loops are not removed.
        GC.KeepAlive(sink);
        Console.WriteLine($"{name,-26} {best,8:F3} {1 / best,16:F2}");
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static V Fma()
    {
        V a = V.One, b = a, c = a, d = a, e = a, f = a, g = a, h = a, m = Vector512.Create(0.9999f), k = Vector512.Create(1e-7f);
        for (int i = 0; i < Iterations; i++)
        {
            a = Avx512F.FusedMultiplyAdd(a, m, k);
            b = Avx512F.FusedMultiplyAdd(b, m, k);
            c = Avx512F.FusedMultiplyAdd(c, m, k);
            d = Avx512F.FusedMultiplyAdd(d, m, k);
            e = Avx512F.FusedMultiplyAdd(e, m, k);
            f = Avx512F.FusedMultiplyAdd(f, m, k);
            g = Avx512F.FusedMultiplyAdd(g, m, k);
            h = Avx512F.FusedMultiplyAdd(h, m, k);
        }

        return a + b + c + d + e + f + g + h;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static V Add()
    {
        V a = V.One, b = a, c = a, d = a, e = a, f = a, g = a, h = a, k = Vector512.Create(1e-7f);
        for (int i = 0; i < Iterations; i++)
        {
            a = Avx512F.Add(a, k);
            b = Avx512F.Add(b, k);
            c = Avx512F.Add(c, k);
            d = Avx512F.Add(d, k);
            e = Avx512F.Add(e, k);
            f = Avx512F.Add(f, k);
            g = Avx512F.Add(g, k);
            h = Avx512F.Add(h, k);
        }

        return a + b + c + d + e + f + g + h;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static V Max()
    {
        V a = V.One, b = a, c = a, d = a, e = a, f = a, g = a, h = a, k = Vector512.Create(1e-7f);
        for (int i = 0; i < Iterations; i++)
        {
            a = Avx512F.Max(a, k);
            b = Avx512F.Max(b, k);
            c = Avx512F.Max(c, k);
            d = Avx512F.Max(d, k);
            e = Avx512F.Max(e, k);
            f = Avx512F.Max(f, k);
            g = Avx512F.Max(g, k);
            h = Avx512F.Max(h, k);
        }

        return a + b + c + d + e + f + g + h;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static V FmaAndAdd()
    {
        V a = V.One, b = a, c = a, d = a, e = a, f = a, g = a, h = a, m = Vector512.Create(0.9999f), k = Vector512.Create(1e-7f);
        V a2 = a, b2 = a, c2 = a, d2 = a, e2 = a, f2 = a, g2 = a, h2 = a;
        for (int i = 0; i < Iterations; i++)
        {
            a = Avx512F.FusedMultiplyAdd(a, m, k);
            a2 = Avx512F.Add(a2, k);
            b = Avx512F.FusedMultiplyAdd(b, m, k);
            b2 = Avx512F.Add(b2, k);
            c = Avx512F.FusedMultiplyAdd(c, m, k);
            c2 = Avx512F.Add(c2, k);
            d = Avx512F.FusedMultiplyAdd(d, m, k);
            d2 = Avx512F.Add(d2, k);
            e = Avx512F.FusedMultiplyAdd(e, m, k);
            e2 = Avx512F.Add(e2, k);
            f = Avx512F.FusedMultiplyAdd(f, m, k);
            f2 = Avx512F.Add(f2, k);
            g = Avx512F.FusedMultiplyAdd(g, m, k);
            g2 = Avx512F.Add(g2, k);
            h = Avx512F.FusedMultiplyAdd(h, m, k);
            h2 = Avx512F.Add(h2, k);
        }

        return a + b + c + d + e + f + g + h + a2 + b2 + c2 + d2 + e2 + f2 + g2 + h2;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static V Reduce()
    {
        V a = Vector512.Create(1.3f), b = a, c = a, d = a, e = a, f = a, g = a, h = a;
        for (int i = 0; i < Iterations; i++)
        {
            a = Avx512DQ.Reduce(a, 9);
            b = Avx512DQ.Reduce(b, 9);
            c = Avx512DQ.Reduce(c, 9);
            d = Avx512DQ.Reduce(d, 9);
            e = Avx512DQ.Reduce(e, 9);
            f = Avx512DQ.Reduce(f, 9);
            g = Avx512DQ.Reduce(g, 9);
            h = Avx512DQ.Reduce(h, 9);
        }

        return a + b + c + d + e + f + g + h;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static V Scale()
    {
        V a = Vector512.Create(1.3f), b = a, c = a, d = a, e = a, f = a, g = a, h = a, k = V.Zero;
        for (int i = 0; i < Iterations; i++)
        {
            a = Avx512F.Scale(a, k);
            b = Avx512F.Scale(b, k);
            c = Avx512F.Scale(c, k);
            d = Avx512F.Scale(d, k);
            e = Avx512F.Scale(e, k);
            f = Avx512F.Scale(f, k);
            g = Avx512F.Scale(g, k);
            h = Avx512F.Scale(h, k);
        }

        return a + b + c + d + e + f + g + h;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static V GetExponent()
    {
        V a = Vector512.Create(1.3f), b = a, c = a, d = a, e = a, f = a, g = a, h = a;
        for (int i = 0; i < Iterations; i++)
        {
            a = Avx512F.GetExponent(a);
            b = Avx512F.GetExponent(b);
            c = Avx512F.GetExponent(c);
            d = Avx512F.GetExponent(d);
            e = Avx512F.GetExponent(e);
            f = Avx512F.GetExponent(f);
            g = Avx512F.GetExponent(g);
            h = Avx512F.GetExponent(h);
        }

        return a + b + c + d + e + f + g + h;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static V GetMantissa()
    {
        V a = Vector512.Create(1.3f), b = a, c = a, d = a, e = a, f = a, g = a, h = a;
        for (int i = 0; i < Iterations; i++)
        {
            a = Avx512F.GetMantissa(a, 0);
            b = Avx512F.GetMantissa(b, 0);
            c = Avx512F.GetMantissa(c, 0);
            d = Avx512F.GetMantissa(d, 0);
            e = Avx512F.GetMantissa(e, 0);
            f = Avx512F.GetMantissa(f, 0);
            g = Avx512F.GetMantissa(g, 0);
            h = Avx512F.GetMantissa(h, 0);
        }

        return a + b + c + d + e + f + g + h;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static V Permute()
    {
        V a = Vector512.Create(1.3f), b = a, c = a, d = a, e = a, f = a, g = a, h = a;
        Vector512<int> index = Vector512<int>.Zero;
        for (int i = 0; i < Iterations; i++)
        {
            a = Avx512F.PermuteVar16x32(a, index);
            b = Avx512F.PermuteVar16x32(b, index);
            c = Avx512F.PermuteVar16x32(c, index);
            d = Avx512F.PermuteVar16x32(d, index);
            e = Avx512F.PermuteVar16x32(e, index);
            f = Avx512F.PermuteVar16x32(f, index);
            g = Avx512F.PermuteVar16x32(g, index);
            h = Avx512F.PermuteVar16x32(h, index);
        }

        return a + b + c + d + e + f + g + h;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static V Divide()
    {
        V a = Vector512.Create(1.3f), b = a, c = a, d = a, e = a, f = a, g = a, h = a, k = Vector512.Create(1.0000001f);
        for (int i = 0; i < Iterations; i++)
        {
            a = Avx512F.Divide(a, k);
            b = Avx512F.Divide(b, k);
            c = Avx512F.Divide(c, k);
            d = Avx512F.Divide(d, k);
            e = Avx512F.Divide(e, k);
            f = Avx512F.Divide(f, k);
            g = Avx512F.Divide(g, k);
            h = Avx512F.Divide(h, k);
        }

        return a + b + c + d + e + f + g + h;
    }
}
