using System;
using Distillation.Internal;

namespace Distillation;

/// <summary>
/// Adds up the (sum, count) parts of several loss results — micro-batches, chunks of a batch larger than memory,
/// shards of a data-parallel step — so that the mean over all of them is computed once, with the global counts
/// (the gradient-accumulation normalisation of TRL and Liger-Kernel). Counts are 64-bit.
/// </summary>
public sealed class LossAccumulator
{
    /// <summary>Σ of the added results' <see cref="LossResult.Sum"/> (T² included when configured).</summary>
    public double Sum { get; private set; }

    /// <summary>Σ of the added results' real rows.</summary>
    public long TokenCount { get; private set; }

    /// <summary>Σ of the added results' sequences with a real row (a sequence split across two results counts twice).</summary>
    public long SequenceCount { get; private set; }

    /// <summary>The number of results added.</summary>
    public int Count { get; private set; }

    /// <summary>Adds one result's sum and counts.</summary>
    /// <param name="result">A loss result (its <see cref="LossResult.Value"/> is not used).</param>
    public void Add(LossResult result)
    {
        Sum += result.Sum;
        TokenCount += result.TokenCount;
        SequenceCount += result.SequenceCount;
        Count++;
    }

    /// <summary>The reduced value over everything added: Sum ÷ what <paramref name="reduction"/> divides by (0 when there are no real rows).</summary>
    /// <param name="reduction"><see cref="Reduction.Sum"/> (÷ 1), <see cref="Reduction.MeanOverTokens"/> (÷ tokens), <see cref="Reduction.MeanOverSequences"/> (÷ sequences) or <see cref="Reduction.SumDividedBy"/> (÷ N).</param>
    /// <returns>The value.</returns>
    /// <exception cref="ArgumentException"><see cref="Reduction.None"/> was asked for.</exception>
    public double Value(Reduction reduction) => reduction.Kind switch
    {
        ReductionKind.None => throw new ArgumentException("Reduction.None has no single value.", nameof(reduction)),
        ReductionKind.Sum => Sum,
        _ when TokenCount == 0 => 0,
        ReductionKind.MeanOverTokens => Sum / TokenCount,
        ReductionKind.MeanOverSequences => Sum / Math.Max(SequenceCount, 1),
        _ => Sum / reduction.Divisor,
    };

    /// <inheritdoc />
    public override string ToString() => ThrowHelper.Format($"Sum = {Sum}, tokens = {TokenCount}, sequences = {SequenceCount}, results = {Count}");
}
