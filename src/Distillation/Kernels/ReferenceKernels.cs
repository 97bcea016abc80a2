using System;
using Distillation.Kernels.Divergences;

namespace Distillation.Kernels;

/// <summary>
/// The scalar reference: each row computed as the formula reads, in double precision. It is the source of truth
/// the fused kernels are tested against, and the path for rows too short for a vector.
/// </summary>
internal static unsafe class ReferenceKernels
{
    /// <summary>
    /// One row of a divergence: L = Σ_j term(p_j, q_j), dL/ds_j = coef · (qg_j − q_j Σ_k qg_k) with coef = scale/T;
    /// where L = +∞ the gradient is coef · (q − p).
    /// </summary>
    public static RowStatus DivergenceRow<TOp>(in TOp op, float* teacher, DistributionKind teacherKind, float* student, int n, double invT, float* gradient, double coef, out double value)
        where TOp : struct, IDivergenceOp
    {
        value = 0;
        RowStatus status = LogNormalizer(teacher, teacherKind, n, invT, isTeacher: true, out double maxT, out double logZT);
        if (status != RowStatus.Ok)
        {
            return status;
        }

        status = LogNormalizer(student, DistributionKind.Logits, n, invT, isTeacher: false, out double maxS, out double logZS);
        if (status != RowStatus.Ok)
        {
            return status;
        }

        // log p_j = (z_j − max) − log Z: the maximum is subtracted before log Z is added, so log Z survives huge logits.
        double loss = 0, sumQg = 0;
        for (int j = 0; j < n; j++)
        {
            double logP = Softened(teacher[j], teacherKind, invT) - maxT - logZT;
            double logQ = (student[j] * invT) - maxS - logZS;
            loss += op.Element(Math.Exp(logP), Math.Exp(logQ), logP, logQ, out double qg);
            sumQg += qg;
        }

        // +∞ exactly where the op's support rule says so (the same rule the vector kernels apply).
        bool infinite = TOp.Infinity switch
        {
            InfinityRule.TeacherMassWithoutStudent => MassWithoutOther(teacher, teacherKind, student, DistributionKind.Logits, n),
            InfinityRule.StudentMassWithoutTeacher => MassWithoutOther(student, DistributionKind.Logits, teacher, teacherKind, n),
            _ => false,
        };
        value = infinite ? double.PositiveInfinity : TOp.IsDivergence ? Math.Max(loss, 0) : loss;
        if (gradient == null)
        {
            return RowStatus.Ok;
        }

        for (int j = 0; j < n; j++)
        {
            double logP = Softened(teacher[j], teacherKind, invT) - maxT - logZT;
            double logQ = (student[j] * invT) - maxS - logZS;
            double p = Math.Exp(logP), q = Math.Exp(logQ);
            op.Element(p, q, logP, logQ, out double qg);
            gradient[j] = (float)(coef * (infinite ? q - p : qg - (q * sumQg)));
        }

        return RowStatus.Ok;
    }

    /// <summary>Whether some column is possible for <paramref name="mass"/> and impossible for <paramref name="other"/>.</summary>
    private static bool MassWithoutOther(float* mass, DistributionKind massKind, float* other, DistributionKind otherKind, int n)
    {
        for (int j = 0; j < n; j++)
        {
            if (Possible(mass[j], massKind) && !Possible(other[j], otherKind))
            {
                return true;
            }
        }

        return false;
    }

    private static bool Possible(float x, DistributionKind kind) => kind == DistributionKind.Probabilities ? x > 0 : !float.IsNegativeInfinity(x);

    /// <summary>
    /// One row of the label loss at temperature T with label smoothing ε: q = softmax(s/T), target = (1 − ε)·onehot(y) + ε/V,
    /// L = −Σ target_j log q_j, dL/ds = coef · (q − target) with coef = scale/T; added to the gradient when
    /// <paramref name="accumulate"/>. (The hard-label LM loss is T = 1; a sequence's log-probability at T is −Σ of its rows at ε = 0.)
    /// </summary>
    public static RowStatus LabelRow(float* student, int n, int label, double smoothing, double invT, float* gradient, double coef, bool accumulate, out double value)
    {
        value = 0;
        RowStatus status = LogNormalizer(student, DistributionKind.Logits, n, invT, isTeacher: false, out double max, out double logZ);
        if (status != RowStatus.Ok)
        {
            return status;
        }

        // −log q_j = (max − z_j) + log Z, with the maximum subtracted first.
        double sumNegLogQ = 0;
        if (smoothing > 0)
        {
            for (int j = 0; j < n; j++)
            {
                sumNegLogQ += (max - (student[j] * invT)) + logZ;
            }
        }

        // With ε = 1 the label carries no weight: skip its term so that a −∞ label logit never gives 0 · ∞.
        double labelTerm = smoothing < 1 ? (1 - smoothing) * ((max - (student[label] * invT)) + logZ) : 0;
        value = labelTerm + (smoothing / n * sumNegLogQ);
        if (gradient == null)
        {
            return RowStatus.Ok;
        }

        for (int j = 0; j < n; j++)
        {
            double target = (smoothing / n) + (j == label ? 1 - smoothing : 0);
            float g = (float)(coef * (Math.Exp((student[j] * invT) - max - logZ) - target));
            gradient[j] = accumulate ? gradient[j] + g : g;
        }

        return RowStatus.Ok;
    }

    /// <summary>z_j = x_j / T for logits and log-probabilities, log(p_j) / T for probabilities.</summary>
    private static double Softened(float x, DistributionKind kind, double invT) =>
        (kind == DistributionKind.Probabilities ? Math.Log(x) : x) * invT;

    /// <summary>Validates a row and returns its maximum z and log Σ_j exp(z_j − max), kept apart so that log Z survives huge logits.</summary>
    private static RowStatus LogNormalizer(float* x, DistributionKind kind, int n, double invT, bool isTeacher, out double max, out double logZ)
    {
        logZ = 0;
        max = double.NegativeInfinity;
        RowStatus invalid = isTeacher ? RowStatus.TeacherInvalidValue : RowStatus.StudentInvalidValue;
        double sum = 0;
        for (int j = 0; j < n; j++)
        {
            float v = x[j];
            if (float.IsNaN(v) || float.IsPositiveInfinity(v) || (kind == DistributionKind.Probabilities && v < 0))
            {
                return invalid;
            }

            sum += v;
            max = Math.Max(max, Softened(v, kind, invT));
        }

        if (kind == DistributionKind.Probabilities && Math.Abs(sum - 1) > TeacherDistribution.ProbabilitySumTolerance)
        {
            return double.IsFinite(sum) ? RowStatus.TeacherBadSum : invalid;
        }

        if (double.IsNegativeInfinity(max))
        {
            return isTeacher ? RowStatus.TeacherNoMass : RowStatus.StudentNoMass;
        }

        double z = 0;
        for (int j = 0; j < n; j++)
        {
            z += Math.Exp(Softened(x[j], kind, invT) - max);
        }

        logZ = Math.Log(z);
        return RowStatus.Ok;
    }
}
