using System.Runtime.Intrinsics;

namespace Distillation.Kernels.Divergences;

/// <summary>
/// The row math of one divergence: its per-element term and q_j · ∂L/∂q_j, from which the shared drivers build
/// the value L = Σ_j term_j and the gradient dL/ds_j = (1/T) · (qg_j − q_j · Σ_k qg_k).
/// </summary>
/// <remarks>
/// Each implementation has a double-precision scalar form (the reference) and a vector form (the fused kernels);
/// both receive p, q (probabilities) and log p, log q of the softened distributions. They must return an exact
/// 0 for a term whose weight (p or q) is 0, never 0 · ∞ = NaN. The vector form receives its logs floored at
/// −float.MaxValue (a −∞ logit, or a finite one whose gap ÷ T leaves float's range), so a product weight · (log
/// difference) is always finite and a weight of 0 gives 0 without a select.
/// </remarks>
internal interface IDivergenceOp
{
    /// <summary>Whether the value is a divergence (≥ 0, so rounding below 0 is clamped to 0).</summary>
    static abstract bool IsDivergence { get; }

    /// <summary>Where the value is +∞, decided exactly from the raw logits (never from underflowed exponentials).</summary>
    static virtual InfinityRule Infinity => InfinityRule.Never;

    /// <summary>
    /// For ops whose value is E_p[f] of the softened logits alone, with gradient (q − p)/T (forward KL, soft CE, the
    /// teacher's entropy): which teacher-weighted sum the single-pass <see cref="FusedKernels.TeacherWeightedRow{TS, TV, TOp}"/>
    /// accumulates. <see cref="TeacherWeightedSum.None"/> for the others, which run the general kernel.
    /// </summary>
    static virtual TeacherWeightedSum WeightedSum => TeacherWeightedSum.None;

    /// <summary>
    /// Whether the op's gradient jumps where p = q (TVD's sign), so that both sides must be computed alike: identical
    /// rows then give exactly equal p and q (a tie, gradient 0). The first pass then takes both sides relative to the
    /// maxima before a chunk or neither, each in the same form.
    /// </summary>
    static virtual bool SidesAlike => false;

    /// <summary>Whether the vector term reads log p and log q (the general kernel then forms them from the logits).</summary>
    static virtual bool UsesLogs => true;

    /// <summary>
    /// Whether the fused kernels compute the op as <see cref="FusedKernels.StudentWeightedRow{TS, TV}"/> (reverse KL:
    /// E_q of the logit difference, one pass over memory like the teacher-weighted ops).
    /// </summary>
    static virtual bool StudentWeighted => false;

    /// <summary>
    /// For the first pass of <see cref="FusedKernels.StudentWeightedRow{TS, TV}"/>: store the first side's exponentials
    /// and the base-2 log-ratio y_first − y_second (instead of the second side's exponentials).
    /// </summary>
    static virtual bool StoresLogRatio => false;

    /// <summary>For teacher-weighted ops: the row value from the mean of the weighted sum under p (the row's reference points subtracted: its maxima, or points below them) and log Z of both sides, relative to the same points.</summary>
    static virtual double FromWeightedMean(double mean, double logZT, double logZS) => double.NaN;

    /// <summary>The scalar reference: term_j and qg_j = q_j ∂L/∂q_j in double precision.</summary>
    double Element(double p, double q, double logP, double logQ, out double qg);

    /// <summary>
    /// The factors (σ_p, σ_q) the general kernel folds into its per-chunk factors, in double, before the vector form
    /// sees the probabilities: it receives σ_p · p and σ_q · q (a mixture weight or TVD's ½ then costs no
    /// multiplication per element, and the product is rounded once). (1, 1) for the ops that do not run the general kernel.
    /// </summary>
    (double P, double Q) VectorScales { get; }

    /// <summary>
    /// The vector form: term_j for each lane, and qg_j in <paramref name="qg"/>, from <paramref name="p"/> = σ_p · p
    /// and <paramref name="q"/> = σ_q · q (see <see cref="VectorScales"/>) and the unscaled logs.
    /// </summary>
    TV Element<TS, TV>(TV p, TV q, TV logP, TV logQ, out TV qg)
        where TS : ISimd<TV>
        where TV : struct;
}

/// <summary>Small helpers shared by the divergence ops.</summary>
internal static class OpMath
{
    /// <summary>The smallest normal float: mixtures are floored here so that a log never sees an underflowed 0.</summary>
    public const float MixtureFloor = 1.17549435e-38f;

    /// <summary>log(e^a + e^b), exact at −∞ (used by the reference to build mixtures in log space).</summary>
    public static double LogAddExp(double a, double b)
    {
        if (double.IsNegativeInfinity(a))
        {
            return b;
        }

        if (double.IsNegativeInfinity(b))
        {
            return a;
        }

        double m = System.Math.Max(a, b);
        return m + System.Math.Log(1 + System.Math.Exp(-System.Math.Abs(a - b)));
    }
}

/// <summary>Where a divergence is +∞.</summary>
internal enum InfinityRule
{
    /// <summary>Always finite.</summary>
    Never = 0,

    /// <summary>+∞ where some teacher logit is finite and the student's is −∞ (p &gt; 0 = q): forward KL, soft CE.</summary>
    TeacherMassWithoutStudent = 1,

    /// <summary>+∞ where some student logit is finite and the teacher's is −∞ (q &gt; 0 = p): reverse KL.</summary>
    StudentMassWithoutTeacher = 2,
}

/// <summary>The teacher-weighted sum Σ e_t · f a single-pass op needs, with x_t = (t − m_t)/T and x_s = (s − m_s)/T for the row's reference points m (its maxima, or points below them).</summary>
internal enum TeacherWeightedSum
{
    /// <summary>Not a single-pass op.</summary>
    None = 0,

    /// <summary>f = x_t − x_s: E_p[log p − log q] = mean − log Z_t + log Z_s.</summary>
    LogRatio = 1,

    /// <summary>f = x_s: E_p[log q] = mean − log Z_s.</summary>
    StudentLogit = 2,

    /// <summary>f = x_t: E_p[log p] = mean − log Z_t.</summary>
    TeacherLogit = 3,
}
