using System;

namespace Distillation.Sparse;

/// <summary>
/// The teacher side of a top-k row: the log-probabilities of its categories at the loss's temperature under its
/// residual policy (see <see cref="ResidualMassPolicy"/>), in double precision. O(k).
/// </summary>
internal static unsafe class TopKTeacherRow
{
    /// <summary>
    /// Writes log p of each slot into <paramref name="logP"/> (−∞ for an empty slot) and returns log p_rest (−∞ unless
    /// the policy is <see cref="ResidualMassPolicy.RestBucket"/> and mass is missing). <paramref name="ratio"/> is
    /// a = T_gen / T. Returns <see langword="false"/> when <see cref="ResidualMassPolicy.Renormalize"/> finds no mass
    /// (the checks reject such rows first).
    /// </summary>
    /// <param name="ids">The row's k ids.</param>
    /// <param name="values">The row's k float log-probabilities, or null when <paramref name="halves"/> holds them.</param>
    /// <param name="halves">The row's k Half log-probabilities, or null.</param>
    /// <param name="k">Slots.</param>
    /// <param name="vocabularySize">V: a row that keeps all V ids has an empty rest.</param>
    /// <param name="policy">The residual policy.</param>
    /// <param name="ratio">a = T_gen / T.</param>
    /// <param name="logP">k doubles, written.</param>
    /// <param name="logRest">log p_rest.</param>
    public static bool Compute(int* ids, float* values, Half* halves, int k, int vocabularySize, ResidualMassPolicy policy, double ratio, double* logP, out double logRest)
    {
        logRest = double.NegativeInfinity;
        int kept = 0;
        double max = double.NegativeInfinity;
        for (int i = 0; i < k; i++)
        {
            if (ids[i] == TopKTeacherDistribution.EmptySlot)
            {
                logP[i] = double.NegativeInfinity;
                continue;
            }

            kept++;
            logP[i] = halves != null ? (float)halves[i] : values[i];
            max = Math.Max(max, logP[i]);
        }

        if (policy == ResidualMassPolicy.Renormalize)
        {
            // p_j ∝ exp(a · log p_gen,j) over the kept ids: exact at any temperature.
            if (double.IsNegativeInfinity(max))
            {
                return false;
            }

            double lse = LogSumExpScaled(logP, k, ratio, ratio * max);
            for (int i = 0; i < k; i++)
            {
                logP[i] = (ratio * logP[i]) - lse;
            }

            return true;
        }

        // The kept mass and the rest R = 1 − Σ_kept p = −expm1(lse_kept), no cancellation: log R = log(−expm1(lse)) (log1p(−e^lse) far from 0).
        double lseKept = double.IsNegativeInfinity(max) ? max : LogSumExpScaled(logP, k, 1, max);
        double logR;
        if (kept == vocabularySize || lseKept >= 0)
        {
            // Every id kept (the rest holds no token) or Σ_kept ≥ 1 within the tolerance: no rest; renormalise over the kept.
            logR = double.NegativeInfinity;
            if (lseKept > 0)
            {
                for (int i = 0; i < k; i++)
                {
                    logP[i] -= lseKept;
                }
            }
        }
        else
        {
            logR = StableMath.Log1MinusExp(lseKept);
        }

        if (ratio != 1)
        {
            // Temper the k + 1 categories, the rest as if it were one token: p_j = p_j^a / (Σ p^a + R^a) (DistillKit's rule).
            double top = ratio * logR;
            for (int i = 0; i < k; i++)
            {
                top = Math.Max(top, ratio * logP[i]);
            }

            if (double.IsNegativeInfinity(top))
            {
                return true; // no mass at all (MissingAsZero only): every p is 0
            }

            double sum = Math.Exp((ratio * logR) - top);
            for (int i = 0; i < k; i++)
            {
                sum += Math.Exp((ratio * logP[i]) - top);
            }

            double norm = top + Math.Log(sum);
            for (int i = 0; i < k; i++)
            {
                logP[i] = (ratio * logP[i]) - norm;
            }

            logR = (ratio * logR) - norm;
        }

        logRest = policy == ResidualMassPolicy.RestBucket ? logR : double.NegativeInfinity;
        return true;
    }

    /// <summary>log Σ_i exp(a · x_i) given m = max_i a · x_i (finite).</summary>
    private static double LogSumExpScaled(double* x, int k, double a, double m)
    {
        double sum = 0;
        for (int i = 0; i < k; i++)
        {
            sum += Math.Exp((a * x[i]) - m);
        }

        return m + Math.Log(sum);
    }
}
