using System;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using Distillation.Kernels;
using Distillation.Kernels.Divergences;

namespace Distillation.Sparse;

/// <summary>
/// One row of a divergence between a top-k teacher and a dense student, in O(k + V): the teacher's k (+ 1 rest)
/// categories from <see cref="TopKTeacherRow"/>, the student's log-normaliser and its mass outside the kept ids from
/// one exp per vocabulary entry, the k + 1 terms of the divergence op, and the gradient as one rescaling pass over the
/// stored exponentials plus k corrections.
/// </summary>
/// <remarks>
/// <para>With K the kept ids, Q_out = Σ_{j∉K} q_j and S = Σ_b q_b g_b over the categories b (kept ids and the rest):
/// L = Σ_{j∈K} term(p_j, q_j) + term(p_rest, Q_out), dL/ds_j = (1/T)·(qg_j − q_j·S) for j ∈ K and
/// (1/T)·q_j·(qg_rest/Q_out − S) for j ∉ K — the chain rule through Q_out = Σ_{j∉K} q_j. Under
/// <see cref="ResidualMassPolicy.Renormalize"/> and <see cref="ResidualMassPolicy.MissingAsZero"/> p_rest = 0: every
/// op's term at p = 0 is linear in q, so the one rest term is exactly the sum of the V − k per-token terms.</para>
/// <para>Q_out is summed over the tokens outside K (the kept exponentials zeroed), never formed as 1 − Σ_K q, so it
/// keeps its relative precision when the student puts almost all its mass on K; when the float exponentials
/// underflow it is recomputed in double with its own maximum.</para>
/// </remarks>
internal readonly unsafe struct TopKRowKernel<TOp>(TOp op, int* ids, float* values, Half* halves, int k, ResidualMassPolicy policy, double ratio, float* student, int vocabularySize, float temperature, KernelPath path, bool streaming = true) : IRowKernel
    where TOp : struct, IDivergenceOp
{
    /// <summary>Below this fraction of Z, Z − Σ_K e is recomputed as a sum over the tokens outside K.</summary>
    private const double CancellationGuard = 0.5;

    /// <summary>Below this fraction of Z the float exponentials outside K may have underflowed: recomputed in double.</summary>
    private const double UnderflowGuard = 1e-20;

    public int VocabularySize => vocabularySize;

    // The student's exponentials (V floats, first, so that they start on a 64-byte boundary), the kept gradient values
    // by column (V floats) and a bit per column marking them (V/8 bytes and 8 more), logP and logQ (k doubles each), p, q
    // and qg per slot (3k doubles, kept from the terms for the gradient), saved exponentials (k floats).
    public long ScratchFloats(int n) => (2 * FusedKernels.RoundUp(n)) + KeptBitFloats(n) + (11L * k) + 4;

    /// <summary>Floats holding a bit per column and 8 bytes more (a multiple of 16, so that what follows stays aligned).</summary>
    private static long KeptBitFloats(int n) => FusedKernels.RoundUp((((long)n + 7) / 8 + 8 + 3) / 4);

    public void Finish(in DeferredGradient deferred)
    {
    }

    public RowStatus Row(int row, float* gradient, double numerator, double divisor, float* scratch, ref DeferredGradient deferred, out double value)
    {
        int n = vocabularySize;
        double coef = (double)(float)(numerator / divisor) / temperature;
        return KernelPaths.ForRow(path, n) switch
        {
            KernelPath.Vector512 => VectorRow<Simd512, Vector512<float>>(row, gradient, coef, scratch, out value),
            KernelPath.Vector256 => VectorRow<Simd256, Vector256<float>>(row, gradient, coef, scratch, out value),
            _ => ReferenceRow(row, gradient, coef, scratch, out value),
        };
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private RowStatus VectorRow<TS, TV>(int row, float* gradient, double coef, float* scratch, out double value)
        where TS : ISimd<TV>
        where TV : struct
    {
        value = 0;
        int n = vocabularySize;
        int* id = ids + ((nint)row * k);
        float* expS = scratch, keptValues = expS + FusedKernels.RoundUp(n);
        byte* keptBits = (byte*)(keptValues + FusedKernels.RoundUp(n));
        double* logP = (double*)(keptValues + FusedKernels.RoundUp(n) + KeptBitFloats(n)), logQ = logP + k;
        double* slots = logQ + k;
        float* saved = (float*)(slots + (3 * k));
        if (!TopKTeacherRow.Compute(id, values == null ? null : values + ((nint)row * k), halves == null ? null : halves + ((nint)row * k), k, n, policy, ratio, logP, out double logPRest))
        {
            return RowStatus.TeacherNoMass;
        }

        float* s = student + ((nint)row * n);
        float max = FusedKernels.MaxOf<TS, TV>(s, n);
        if (float.IsNegativeInfinity(max))
        {
            return RowStatus.StudentNoMass;
        }

        float invT = 1f / temperature;
        double z = TopKKernels.ExpAndSum<TS, TV>(s, n, max, (float)(invT * FusedKernels.Log2E), expS);
        if (!double.IsFinite(z) || !float.IsFinite(max))
        {
            return RowStatus.StudentInvalidValue;
        }

        // log q_j = (s_j − max)/T − log Z for the kept ids, in double.
        double logZ = Math.Log(z), keptE = 0;
        int kept = 0;
        for (int i = 0; i < k; i++)
        {
            int j = id[i];
            if (j == TopKTeacherDistribution.EmptySlot)
            {
                logQ[i] = double.NegativeInfinity;
                continue;
            }

            kept++;
            keptE += expS[j];
            logQ[i] = (((double)s[j] - max) * invT) - logZ;
        }

        double logQRest = double.NegativeInfinity;
        bool exactRest = false;
        if (kept < n)
        {
            double zOut = z - keptE;
            if (!(zOut >= CancellationGuard * z))
            {
                // Most of the mass is on K: sum the exponentials outside K instead of subtracting.
                for (int i = 0; i < k; i++)
                {
                    if (id[i] >= 0)
                    {
                        saved[i] = expS[id[i]];
                        expS[id[i]] = 0;
                    }
                }

                zOut = TopKKernels.Sum<TS, TV>(expS, n);
                Restore(id, saved, expS);
            }

            exactRest = !(zOut > UnderflowGuard * z);
            logQRest = exactRest ? ExactLogRest(s, n, id, saved, expS, max, invT) - logZ : Math.Log(zOut) - logZ;
        }

        value = Terms(logP, logQ, logPRest, logQRest, slots, out double sumQg, out double qgRest, out bool infinite);
        if (gradient == null)
        {
            return RowStatus.Ok;
        }

        if (exactRest)
        {
            // The exponentials outside K underflowed: q_j · g_rest = (q_j / Q_out) · qg_rest may still be large. In double.
            ExactOffGradient(s, n, max, invT, logZ, logQRest, qgRest, sumQg, infinite, coef, gradient);
        }
        else
        {
            // Outside K: dL/ds_j = coef · q_j · (g_rest − S) = e_j · coef · (qg_rest / Q_out − S) / Z. The k kept entries,
            // marked by a bit per column, are patched in as the row is written, so that the row can be streamed.
            double off = infinite ? coef : coef * ((double.IsNegativeInfinity(logQRest) ? 0 : qgRest / Math.Exp(logQRest)) - sumQg);
            new Span<byte>(keptBits, (int)(KeptBitFloats(n) * 4)).Clear();
            for (int i = 0; i < k; i++)
            {
                int j = id[i];
                if (j >= 0)
                {
                    keptValues[j] = KeptGradient(i, slots, sumQg, infinite, coef);
                    keptBits[j >> 3] |= (byte)(1 << (j & 7));
                }
            }

            TopKKernels.ScaleWithKept<TS, TV>(expS, (float)(off / z), gradient, n, keptBits, keptValues, id, k, streaming);
            return RowStatus.Ok;
        }

        WriteKept(id, slots, sumQg, infinite, coef, gradient);
        return RowStatus.Ok;
    }

    /// <summary>The double-precision reference: the same row written as the formula reads, one Math.Exp per entry.</summary>
    private RowStatus ReferenceRow(int row, float* gradient, double coef, float* scratch, out double value)
    {
        value = 0;
        int n = vocabularySize;
        int* id = ids + ((nint)row * k);
        double* logP = (double*)scratch, logQ = logP + k;
        float* saved = (float*)(logQ + k), kept = saved + k;
        if (!TopKTeacherRow.Compute(id, values == null ? null : values + ((nint)row * k), halves == null ? null : halves + ((nint)row * k), k, n, policy, ratio, logP, out double logPRest))
        {
            return RowStatus.TeacherNoMass;
        }

        float* s = student + ((nint)row * n);
        double invT = 1.0 / temperature, max = double.NegativeInfinity;
        for (int j = 0; j < n; j++)
        {
            if (float.IsNaN(s[j]) || float.IsPositiveInfinity(s[j]))
            {
                return RowStatus.StudentInvalidValue;
            }

            max = Math.Max(max, s[j] * invT);
        }

        if (double.IsNegativeInfinity(max))
        {
            return RowStatus.StudentNoMass;
        }

        double sum = 0;
        for (int j = 0; j < n; j++)
        {
            sum += Math.Exp((s[j] * invT) - max);
        }

        double lse = max + Math.Log(sum);

        // Flags: 1 on the kept ids, 0 elsewhere; Q_out summed over the 0s with their own maximum.
        new Span<float>(kept, n).Clear();
        for (int i = 0; i < k; i++)
        {
            logQ[i] = id[i] >= 0 ? (s[id[i]] * invT) - lse : double.NegativeInfinity;
            if (id[i] >= 0)
            {
                kept[id[i]] = 1;
            }
        }

        double maxOut = double.NegativeInfinity, sumOut = 0;
        for (int j = 0; j < n; j++)
        {
            maxOut = kept[j] == 0 ? Math.Max(maxOut, s[j] * invT) : maxOut;
        }

        for (int j = 0; j < n && !double.IsNegativeInfinity(maxOut); j++)
        {
            sumOut += kept[j] == 0 ? Math.Exp((s[j] * invT) - maxOut) : 0;
        }

        double logQRest = double.IsNegativeInfinity(maxOut) ? maxOut : maxOut + Math.Log(sumOut) - lse;
        double* slots = (double*)(((nuint)(kept + n) + 7) & ~(nuint)7);
        value = Terms(logP, logQ, logPRest, logQRest, slots, out double sumQg, out double qgRest, out bool infinite);
        if (gradient == null)
        {
            return RowStatus.Ok;
        }

        // Outside K: coef · (q_j · (−S) + (q_j / Q_out) · qg_rest), each factor formed in log space.
        for (int j = 0; j < n; j++)
        {
            double logQj = (s[j] * invT) - lse;
            double g = infinite ? Math.Exp(logQj) : (-Math.Exp(logQj) * sumQg) + (qgRest == 0 ? 0 : Math.Exp(logQj - logQRest) * qgRest);
            gradient[j] = kept[j] == 0 ? (float)(coef * g) : 0f;
        }

        WriteKept(id, slots, sumQg, infinite, coef, gradient);
        return RowStatus.Ok;
    }

    /// <summary>
    /// L = Σ_K term + term_rest and S = Σ qg, with qg_rest = Q_out · ∂L/∂Q_out.
    /// Clamped at 0 for divergences unless the teacher is not normalised (<see cref="ResidualMassPolicy.MissingAsZero"/>).
    /// p, q and qg of each slot are kept in the 3k doubles at slots for <see cref="KeptGradient"/> (0 for a slot without a term).
    /// </summary>
    private double Terms(double* logP, double* logQ, double logPRest, double logQRest, double* slots, out double sumQg, out double qgRest, out bool infinite)
    {
        double loss = 0;
        sumQg = 0;
        for (int i = 0; i < k; i++)
        {
            if (double.IsNegativeInfinity(logP[i]) && double.IsNegativeInfinity(logQ[i]))
            {
                // An empty slot, or a kept id neither side can produce: no term, no gradient.
                slots[i] = slots[k + i] = slots[(2 * k) + i] = 0;
                continue;
            }

            double p = Math.Exp(logP[i]), q = Math.Exp(logQ[i]);
            loss += op.Element(p, q, logP[i], logQ[i], out double qg);
            sumQg += qg;
            slots[i] = p;
            slots[k + i] = q;
            slots[(2 * k) + i] = qg;
        }

        double qRest = Math.Exp(logQRest);
        loss += op.Element(Math.Exp(logPRest), qRest, logPRest, logQRest, out qgRest);
        sumQg += qgRest;
        infinite = double.IsPositiveInfinity(loss);
        return TOp.IsDivergence && policy != ResidualMassPolicy.MissingAsZero ? Math.Max(loss, 0) : loss;
    }

    /// <summary>dL/ds_j = coef · (qg_j − q_j · S) at the kept ids (coef · (q_j − p_j) when L = +∞).</summary>
    private void WriteKept(int* id, double* slots, double sumQg, bool infinite, double coef, float* gradient)
    {
        for (int i = 0; i < k; i++)
        {
            if (id[i] >= 0)
            {
                gradient[id[i]] = KeptGradient(i, slots, sumQg, infinite, coef);
            }
        }
    }

    /// <summary>
    /// The gradient at kept slot <paramref name="i"/> from the p, q and qg <see cref="Terms"/> kept: coef · (qg − q · S),
    /// or coef · (q − p) when L = +∞ (a slot without a term has p = q = qg = 0, so 0).
    /// </summary>
    private float KeptGradient(int i, double* slots, double sumQg, bool infinite, double coef)
    {
        double p = slots[i], q = slots[k + i];
        double g = infinite ? q - p : slots[(2 * k) + i] - (q * sumQg);
        return (float)(coef * g);
    }

    private void Restore(int* id, float* saved, float* expS)
    {
        for (int i = 0; i < k; i++)
        {
            if (id[i] >= 0)
            {
                expS[id[i]] = saved[i];
            }
        }
    }

    /// <summary>The gradient outside K in double (the float exponentials underflowed); the kept entries are written afterwards.</summary>
    private static void ExactOffGradient(float* s, int n, float max, float invT, double logZ, double logQRest, double qgRest, double sumQg, bool infinite, double coef, float* gradient)
    {
        for (int j = 0; j < n; j++)
        {
            double logQj = (((double)s[j] - max) * invT) - logZ;
            double g = infinite ? Math.Exp(logQj) : (-Math.Exp(logQj) * sumQg) + (qgRest == 0 ? 0 : Math.Exp(logQj - logQRest) * qgRest);
            gradient[j] = (float)(coef * g);
        }
    }

    /// <summary>
    /// log Σ_{j∉K} exp((s_j − max)/T) in double with its own maximum (the float exponentials underflowed). The kept
    /// exponentials are marked −1 while the row is scanned, then restored. −∞ when every student logit outside K is −∞.
    /// </summary>
    private double ExactLogRest(float* s, int n, int* id, float* saved, float* expS, float max, float invT)
    {
        for (int i = 0; i < k; i++)
        {
            if (id[i] >= 0)
            {
                saved[i] = expS[id[i]];
                expS[id[i]] = -1;
            }
        }

        double top = double.NegativeInfinity, sum = 0;
        for (int j = 0; j < n; j++)
        {
            top = expS[j] >= 0 ? Math.Max(top, ((double)s[j] - max) * invT) : top;
        }

        for (int j = 0; j < n && !double.IsNegativeInfinity(top); j++)
        {
            sum += expS[j] >= 0 ? Math.Exp((((double)s[j] - max) * invT) - top) : 0;
        }

        Restore(id, saved, expS);
        return double.IsNegativeInfinity(top) ? top : top + Math.Log(sum);
    }
}
