using System;
using System.Runtime.Intrinsics;

namespace Distillation.Kernels;

/// <summary>Small per-row statistics for the objective's token rules and metrics.</summary>
internal static unsafe class RowStatistics
{
    /// <summary>The first index of the row's maximum (the most likely token; logits, log-probabilities and probabilities alike).</summary>
    public static int ArgMax(ReadOnlySpan<float> row)
    {
        float max;
        fixed (float* x = row)
        {
            max = row.Length >= Vector512<float>.Count && Vector512.IsHardwareAccelerated ? FusedKernels.MaxOf<Simd512, Vector512<float>>(x, row.Length)
                : row.Length >= Vector256<float>.Count && Vector256.IsHardwareAccelerated ? FusedKernels.MaxOf<Simd256, Vector256<float>>(x, row.Length)
                : MaxScalarFallback(row, x);
        }

        int at = row.IndexOf(max);
        return at < 0 ? 0 : at;
    }

    /// <summary>max_j p_j at T = 1 for a row of the given kind.</summary>
    public static double MaxProbability(ReadOnlySpan<float> row, DistributionKind kind)
    {
        if (kind == DistributionKind.Probabilities)
        {
            double sum = 0;
            float max = 0;
            foreach (float p in row)
            {
                sum += p;
                max = Math.Max(max, p);
            }

            return sum > 0 ? max / sum : 0;
        }

        // max p = e^{max} / Σ e^{x} = 1 / Σ e^{x − max}: no log, so nothing is lost to huge logits.
        fixed (float* x = row)
        {
            double z;
            float max;
            if (row.Length >= Vector512<float>.Count && Vector512.IsHardwareAccelerated)
            {
                z = FusedKernels.SumExpBelowMax<Simd512, Vector512<float>>(x, row.Length, out max);
            }
            else if (row.Length >= Vector256<float>.Count && Vector256.IsHardwareAccelerated)
            {
                z = FusedKernels.SumExpBelowMax<Simd256, Vector256<float>>(x, row.Length, out max);
            }
            else
            {
                max = MaxScalarFallback(row, x);
                z = 0;
                foreach (float v in row)
                {
                    z += Math.Exp(v - max);
                }
            }

            return float.IsFinite(max) && z >= 1 ? 1 / z : 0;
        }
    }

    private static float MaxScalarFallback(ReadOnlySpan<float> row, float* x)
    {
        float max = float.NegativeInfinity;
        for (int j = 0; j < row.Length; j++)
        {
            max = Math.Max(max, x[j]);
        }

        return max;
    }
}
