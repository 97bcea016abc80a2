using System;
using System.Runtime.CompilerServices;
using Distillation.Kernels;

namespace Distillation.Sparse;

/// <summary>The vector passes over a student row that the top-k and sharded kernels need, written once over <see cref="ISimd{TV}"/>.</summary>
internal static unsafe class TopKKernels
{
    /// <summary>Vectors accumulated in float before a partial sum is added in double.</summary>
    private const int FlushEvery = 64;

    /// <summary>e_j = exp((x_j − max) · invT) stored in <paramref name="exps"/>; returns Σ_j e_j in double (NaN if any x_j is NaN). n ≥ TS.Count.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static double ExpAndSum<TS, TV>(float* x, int n, float max, float invT, float* exps)
        where TS : ISimd<TV>
        where TV : struct
    {
        TV vMax = TS.Splat(max), vInvT = TS.Splat(invT), acc0 = TS.Zero, acc1 = TS.Zero;
        double total = 0;
        int w = TS.Count, i = 0, block = 0;
        for (; i + (2 * w) <= n; i += 2 * w)
        {
            TV e0 = SimdMath.Exp<TS, TV>(TS.Multiply(TS.Subtract(TS.Load(x + i), vMax), vInvT));
            TV e1 = SimdMath.Exp<TS, TV>(TS.Multiply(TS.Subtract(TS.Load(x + i + w), vMax), vInvT));
            TS.Store(e0, exps + i);
            TS.Store(e1, exps + i + w);
            acc0 = TS.Add(acc0, e0);
            acc1 = TS.Add(acc1, e1);
            if (++block == FlushEvery)
            {
                total += TS.SumAcross(TS.Add(acc0, acc1));
                acc0 = acc1 = TS.Zero;
                block = 0;
            }
        }

        for (; i < n; i += w)
        {
            // The last vector overlaps what was done: its lanes already summed are masked out.
            int at = Math.Min(i, n - w);
            TV e = SimdMath.Exp<TS, TV>(TS.Multiply(TS.Subtract(TS.Load(x + at), vMax), vInvT));
            TS.Store(e, exps + at);
            acc0 = TS.Add(acc0, TS.Select(TS.TailMask(Math.Min(w, n - i)), e, TS.Zero));
        }

        return total + TS.SumAcross(TS.Add(acc0, acc1));
    }

    /// <summary>Σ_j x_j in double (the fused kernels' sum). n ≥ TS.Count.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static double Sum<TS, TV>(float* x, int n)
        where TS : ISimd<TV>
        where TV : struct => FusedKernels.SumOf<TS, TV>(x, n);

    /// <summary>destination_j = x_j · c. n ≥ TS.Count; the overlapping last vector rewrites equal values.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Scale<TS, TV>(float* x, float c, float* destination, int n)
        where TS : ISimd<TV>
        where TV : struct
    {
        TV vc = TS.Splat(c);
        int w = TS.Count;
        for (int i = 0; i < n; i += w)
        {
            int at = Math.Min(i, n - w);
            TS.Store(TS.Multiply(TS.Load(x + at), vc), destination + at);
        }
    }
}
