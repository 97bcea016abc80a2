namespace Distillation;

/// <summary>
/// What a loss call returns: the reduced value and the (sum, count) parts a caller needs to normalise over
/// several micro-batches itself.
/// </summary>
/// <param name="Value">The reduced loss (for <see cref="Reduction.None"/>, the sum). +∞ only where the true value is.</param>
/// <param name="Sum">The sum of the real rows' values, in double, with the T² factor applied when configured.</param>
/// <param name="TokenCount">The number of real rows (not padding, not an ignored label).</param>
/// <param name="SequenceCount">The number of sequences with at least one real row.</param>
public readonly record struct LossResult(double Value, double Sum, int TokenCount, int SequenceCount);
