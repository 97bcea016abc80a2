namespace Distillation;

/// <summary>What the numbers of a distribution's buffer are. Chosen by the factory method, never by a flag.</summary>
public enum DistributionKind
{
    /// <summary>Unnormalised logits z: p = softmax(z / T). Any finite value, or −∞ for an impossible token.</summary>
    Logits = 1,

    /// <summary>Log-probabilities log p (normalised or not: they are renormalised, so they act as logits).</summary>
    LogProbabilities = 2,

    /// <summary>Probabilities p ≥ 0 that sum to 1 per row (within <see cref="TeacherDistribution.ProbabilitySumTolerance"/>); 0 is an impossible token.</summary>
    Probabilities = 3,
}
