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
        Measure("vfmadd (FMA)", Chains<FmaOp>, 8);
        Measure("vaddps", Chains<AddOp>, 8);
        Measure("vmaxps", Chains<MaxOp>, 8);
        Measure("FMA + add, 8 each", Mixed<FmaOp, AddOp>, 16);
        Measure("vreduceps", Chains<ReduceOp>, 8);
        Measure("vscalefps", Chains<ScaleOp>, 8);
        Measure("vgetexpps", Chains<GetExponentOp>, 8);
        Measure("vgetmantps", Chains<GetMantissaOp>, 8);
        Measure("vpermps", Chains<PermuteOp>, 8);
        Measure("vdivps", Chains<DivideOp>, 8);
        Console.WriteLine("pairs, 8 chains each: separate pipes finish in the slower one's time alone (twice the slower rate), shared ones in the two times added");
        Measure("FMA + vreduceps", Mixed<FmaOp, ReduceOp>, 16);
        Measure("FMA + vscalefps", Mixed<FmaOp, ScaleOp>, 16);
        Measure("add + vreduceps", Mixed<AddOp, ReduceOp>, 16);
        Measure("add + vscalefps", Mixed<AddOp, ScaleOp>, 16);
        Measure("vreduceps + vscalefps", Mixed<ReduceOp, ScaleOp>, 16);
        Measure("FMA + vgetmantps", Mixed<FmaOp, GetMantissaOp>, 16);
        Measure("add + vgetmantps", Mixed<AddOp, GetMantissaOp>, 16);
        Measure("FMA + vpermps", Mixed<FmaOp, PermuteOp>, 16);
        Measure("add + vpermps", Mixed<AddOp, PermuteOp>, 16);
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

        // The sink is kept alive, so the loops are not removed.
        GC.KeepAlive(sink);
        Console.WriteLine($"{name,-26} {best,8:F3} {1 / best,16:F2}");
    }

    /// <summary>Eight independent chains of <typeparamref name="TOp"/> (specialised per op by the JIT, so each is one instruction).</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static V Chains<TOp>()
        where TOp : struct, IOp
    {
        V a = TOp.Start, b = a, c = a, d = a, e = a, f = a, g = a, h = a;
        for (int i = 0; i < Iterations; i++)
        {
            a = TOp.Apply(a);
            b = TOp.Apply(b);
            c = TOp.Apply(c);
            d = TOp.Apply(d);
            e = TOp.Apply(e);
            f = TOp.Apply(f);
            g = TOp.Apply(g);
            h = TOp.Apply(h);
        }

        return a + b + c + d + e + f + g + h;
    }

    /// <summary>Eight chains of <typeparamref name="TA"/> interleaved with eight of <typeparamref name="TB"/>: whether the two share a pipe.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static V Mixed<TA, TB>()
        where TA : struct, IOp
        where TB : struct, IOp
    {
        V a = TA.Start, b = a, c = a, d = a, e = a, f = a, g = a, h = a;
        V a2 = TB.Start, b2 = a2, c2 = a2, d2 = a2, e2 = a2, f2 = a2, g2 = a2, h2 = a2;
        for (int i = 0; i < Iterations; i++)
        {
            a = TA.Apply(a);
            a2 = TB.Apply(a2);
            b = TA.Apply(b);
            b2 = TB.Apply(b2);
            c = TA.Apply(c);
            c2 = TB.Apply(c2);
            d = TA.Apply(d);
            d2 = TB.Apply(d2);
            e = TA.Apply(e);
            e2 = TB.Apply(e2);
            f = TA.Apply(f);
            f2 = TB.Apply(f2);
            g = TA.Apply(g);
            g2 = TB.Apply(g2);
            h = TA.Apply(h);
            h2 = TB.Apply(h2);
        }

        return a + b + c + d + e + f + g + h + a2 + b2 + c2 + d2 + e2 + f2 + g2 + h2;
    }

    /// <summary>One instruction applied to a chain's value, and the chain's start.</summary>
    private interface IOp
    {
        static abstract V Start { get; }

        static abstract V Apply(V x);
    }

    private readonly struct FmaOp : IOp
    {
        public static V Start => V.One;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static V Apply(V x) => Avx512F.FusedMultiplyAdd(x, Vector512.Create(0.9999f), Vector512.Create(1e-7f));
    }

    private readonly struct AddOp : IOp
    {
        public static V Start => V.One;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static V Apply(V x) => Avx512F.Add(x, Vector512.Create(1e-7f));
    }

    private readonly struct MaxOp : IOp
    {
        public static V Start => V.One;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static V Apply(V x) => Avx512F.Max(x, Vector512.Create(1e-7f));
    }

    private readonly struct ReduceOp : IOp
    {
        public static V Start => Vector512.Create(1.3f);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static V Apply(V x) => Avx512DQ.Reduce(x, 9);
    }

    private readonly struct ScaleOp : IOp
    {
        public static V Start => Vector512.Create(1.3f);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static V Apply(V x) => Avx512F.Scale(x, V.Zero);
    }

    private readonly struct GetExponentOp : IOp
    {
        public static V Start => Vector512.Create(1.3f);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static V Apply(V x) => Avx512F.GetExponent(x);
    }

    private readonly struct GetMantissaOp : IOp
    {
        public static V Start => Vector512.Create(1.3f);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static V Apply(V x) => Avx512F.GetMantissa(x, 0);
    }

    private readonly struct PermuteOp : IOp
    {
        public static V Start => Vector512.Create(1.3f);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static V Apply(V x) => Avx512F.PermuteVar16x32(x, Vector512<int>.Zero);
    }

    private readonly struct DivideOp : IOp
    {
        public static V Start => Vector512.Create(1.3f);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static V Apply(V x) => Avx512F.Divide(x, Vector512.Create(1.0000001f));
    }
}
