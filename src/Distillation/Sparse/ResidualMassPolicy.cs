namespace Distillation;

/// <summary>
/// What a top-k teacher (<see cref="TopKTeacherDistribution"/>) means by the probability mass it did not keep:
/// R = 1 − Σ_kept p. Chosen when the teacher is created; every loss, the objective and the metrics read it from there.
/// </summary>
/// <remarks>
/// <para>Notation: K is the set of kept ids of a row, p_j (j ∈ K) the teacher's kept probabilities, q = softmax(s/T) the
/// dense student over the whole vocabulary and Q_out = Σ_{j∉K} q_j = 1 − Σ_{j∈K} q_j the student's mass outside K. Every
/// divergence D is evaluated on the distributions below; its gradient is exact with respect to the student's logits s.</para>
/// <list type="table">
/// <listheader><term>policy</term><description>teacher; what D is computed over</description></listheader>
/// <item><term><see cref="Renormalize"/></term><description>p_j ∝ p_j over K (Σ = 1), 0 elsewhere: D over the whole
/// vocabulary. A token outside K has p = 0, so reverse KL is +∞ unless the student also has no mass outside K; the
/// other divergences are finite (their terms at p = 0 are linear in q, so the V − k of them are added up from
/// Q_out in O(1)).</description></item>
/// <item><term><see cref="RestBucket"/></term><description>k + 1 categories: the kept ids and one "rest" bucket, with
/// p_rest = R = 1 − Σ_kept p computed as exp(log(−expm1(lse_kept log p))) (Megatron/ModelOpt's ghost bucket) and
/// q_rest = Q_out summed over the tokens outside K (never 1 − Σ_kept q, which cancels). D is the divergence of these
/// two (k + 1)-category distributions (DistillKit's <c>symmetric_uniform</c>).</description></item>
/// <item><term><see cref="MissingAsZero"/></term><description>the kept p_j as given, not renormalised (Σ ≤ 1), 0
/// elsewhere: the terms of the kept ids and the (zero-teacher) terms of the rest. For forward KL this is
/// Σ_K p_j (log p_j − log q_j) on raw top-k log-probabilities. The teacher is then not a distribution, so the value
/// is not clamped at 0 and can be negative.</description></item>
/// </list>
/// <para><b>Temperature.</b> The stored log-probabilities were produced at a generation temperature T_gen
/// (<see cref="TopKTeacherDistribution.GenerationTemperature"/>, default 1); the loss distils at T. Since
/// log p_gen = z/T_gen − const, the teacher at T is p ∝ exp(log p_gen · T_gen / T). Over the kept ids that is exact for
/// <see cref="Renormalize"/>. The other two need the unseen tokens' tempered mass: with T = T_gen it is R itself
/// (exact); otherwise the rest is tempered as if it were one token, p_j = p_gen,j^a / (Σ_K p_gen^a + R^a) and
/// p_rest = R^a / (…) with a = T_gen/T (DistillKit's rule) — an approximation, exact only when T = T_gen.
/// A dense teacher given as log-probabilities is the case T_gen = 1 with every id kept.</para>
/// <para><b>Note on DistillKit.</b> DistillKit's <c>zero</c> mode renormalises the kept log-probabilities over the
/// top-k before its sparse KL (read from its source), so it is our <see cref="Renormalize"/>; <see cref="MissingAsZero"/>
/// is the un-renormalised variant.</para>
/// </remarks>
public enum ResidualMassPolicy
{
    /// <summary>Renormalise the kept probabilities to sum to 1; the missing tokens get probability 0 (DistillKit's <c>zero</c> mode). Exact under a temperature change.</summary>
    Renormalize = 1,

    /// <summary>One extra "rest" category on both sides: p_rest = 1 − Σ_kept p (computed with expm1), q_rest = the student's mass outside the kept ids.</summary>
    RestBucket = 2,

    /// <summary>Keep the kept probabilities as given (their sum may be below 1) and give the missing tokens probability 0; the value is not clamped at 0.</summary>
    MissingAsZero = 3,
}
