using System;
using System.Runtime.CompilerServices;
using Distillation.Kernels;

namespace Distillation.Sparse;

/// <summary>The vector passes over a student row that the top-k and sharded kernels need, written once over <see cref="ISimd{TV}"/>.</summary>
internal static unsafe class TopKKernels
{
    /// <summary>Vectors accumulated in float before a partial sum is added in double.</summary>
    private const int FlushEvery = 64;

    /// <summary>
    /// e_j = 2^((x_j − max) · c) with c = fl(log2(e)/T), as the dense kernels take their exponentials (seven vector
    /// instructions against thirteen for the natural base), stored in <paramref name="exps"/>; returns Σ_j e_j in double
    /// (NaN if any x_j is NaN; −∞ gives exactly 0). n ≥ TS.Count.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static double ExpAndSum<TS, TV>(float* x, int n, float max, float c, float* exps)
        where TS : ISimd<TV>
        where TV : struct
    {
        TV vMax = TS.Splat(max), vC = TS.Splat(c), acc0 = TS.Zero, acc1 = TS.Zero;
        Exp2Constants<TS, TV> exp2 = Exp2Constants<TS, TV>.Create();
        double total = 0;
        int w = TS.Count, i = 0, block = 0;
        for (; i + (2 * w) <= n; i += 2 * w)
        {
            TV e0 = SimdMath.Exp2<TS, TV>(TS.AtLeastLowest(TS.Multiply(TS.Subtract(TS.Load(x + i), vMax), vC)), exp2);
            TV e1 = SimdMath.Exp2<TS, TV>(TS.AtLeastLowest(TS.Multiply(TS.Subtract(TS.Load(x + i + w), vMax), vC)), exp2);
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
            TV e = SimdMath.Exp2<TS, TV>(TS.AtLeastLowest(TS.Multiply(TS.Subtract(TS.Load(x + at), vMax), vC)), exp2);
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

    /// <summary>
    /// destination_j = x_j · c for every column except the kept ones (bit j of <paramref name="keptBits"/> set, their ids
    /// also listed in <paramref name="ids"/>, −1 for an empty slot), which get <paramref name="keptValues"/>[j], all in one
    /// pass: with <paramref name="streaming"/>, streaming stores from the first 64-byte boundary of the destination (a
    /// kept value is patched into its vector before the store) and ordinary stores, element by element, for the partial
    /// lines at either end, as the dense kernels write (never a store into a line being streamed). n ≥ TS.Count;
    /// <paramref name="keptBits"/> holds n bits and 4 bytes more.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void ScaleWithKept<TS, TV>(float* x, float c, float* destination, int n, byte* keptBits, float* keptValues, int* ids, int k, bool streaming)
        where TS : ISimd<TV>
        where TV : struct
    {
        TV vc = TS.Splat(c);
        int w = TS.Count;
        if (!streaming || !TS.HasNonTemporalStore || n < 4 * w || !FusedKernels.CanStream(destination))
        {
            for (int i = 0; i < n; i += w)
            {
                int at = Math.Min(i, n - w);
                TS.Store(TS.Multiply(TS.Load(x + at), vc), destination + at);
            }

            for (int i = 0; i < k; i++)
            {
                if (ids[i] >= 0)
                {
                    destination[ids[i]] = keptValues[ids[i]];
                }
            }

            return;
        }

        int head = FusedKernels.StreamedHead(destination, n), j = 0, end = head + FusedKernels.StreamedFloats(n, head);
        for (; j < head; j++)
        {
            destination[j] = IsKept(keptBits, j) ? keptValues[j] : x[j] * c;
        }

        uint lanesMask = (1u << w) - 1;
        float* lanes = stackalloc float[TS.Count];
        for (; j < end; j += w)
        {
            TV v = TS.Multiply(TS.Load(x + j), vc);

            // The w bits of columns j … j + w − 1 (an unaligned 4-byte window: j need not be a multiple of 8).
            uint bits = (Unsafe.ReadUnaligned<uint>(keptBits + (j >> 3)) >> (j & 7)) & lanesMask;
            if (bits != 0)
            {
                TS.Store(v, lanes);
                do
                {
                    int lane = System.Numerics.BitOperations.TrailingZeroCount(bits);
                    lanes[lane] = keptValues[j + lane];
                    bits &= bits - 1;
                }
                while (bits != 0);
                v = TS.Load(lanes);
            }

            TS.StoreNonTemporal(v, destination + j);
        }

        for (; j < n; j++)
        {
            destination[j] = IsKept(keptBits, j) ? keptValues[j] : x[j] * c;
        }
    }

    private static bool IsKept(byte* bits, int j) => (bits[j >> 3] & (1 << (j & 7))) != 0;
}
