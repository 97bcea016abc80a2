namespace Distillation;

/// <summary>
/// How a sequence-level loss −Σ_y P_t(y|x) log P_s(y|x') over all output sequences is computed or estimated from a
/// set of candidate sequences y_1 … y_K with teacher log-probabilities a_k and student log-probabilities b_k.
/// Each gives weights w_k; then CE = −Σ w_k b_k and ∂CE/∂b_k = ∂KL/∂b_k = −w_k.
/// </summary>
public enum SequenceEstimator
{
    /// <summary>
    /// Exact over an enumerable set: w_k = e^{a_k}. CE = −Σ e^{a_k} b_k, KL = Σ e^{a_k}(a_k − b_k), H(P_t) = −Σ e^{a_k} a_k.
    /// Exact when the candidates are the whole output space (Σ e^{a_k} = 1, where KL is clamped at 0 against rounding);
    /// over a smaller set it is the partial sum.
    /// </summary>
    Exact = 1,

    /// <summary>
    /// N-best / beam (Kim &amp; Rush): the teacher renormalised over the candidates, w = softmax(a).
    /// CE = −Σ w_k b_k, KL = Σ w_k (log w_k − b_k) (≥ 0: the student's mass on the candidates is at most 1), H = −Σ w_k log w_k.
    /// </summary>
    NBest = 2,

    /// <summary>
    /// Monte-Carlo with K sequences sampled from the teacher: w_k = 1/K. CE ≈ −(1/K) Σ b_k (sequence-level KD),
    /// KL ≈ (1/K) Σ (a_k − b_k), H ≈ −(1/K) Σ a_k; all unbiased.
    /// </summary>
    MonteCarlo = 3,

    /// <summary>
    /// Samples from another proposal Q with log-probabilities r_k: self-normalised importance weights
    /// w = softmax(a − r). CE ≈ −Σ w_k b_k, KL ≈ Σ w_k (a_k − b_k), H ≈ −Σ w_k a_k: biased for finite K, consistent as K → ∞.
    /// </summary>
    ImportanceSampled = 4,
}
