using System;

namespace Distillation;

/// <summary>
/// The student's output distributions P_s(y | x'): one categorical distribution over <see cref="VocabularySize"/>
/// tokens per row, given as logits or log-probabilities (no copy is made). Every gradient the library computes is
/// with respect to these numbers — what the student's backward pass needs.
/// </summary>
/// <remarks>
/// <para>p_s = softmax(s / T) at the loss's temperature T. Log-probabilities are logits up to a per-row constant,
/// so the gradient with respect to them is the same expression.</para>
/// <para>−∞ marks an impossible token and is handled exactly; NaN and +∞ are rejected by the loss with the row and
/// column in the message. The struct is a cheap view: creating one allocates nothing.</para>
/// </remarks>
public readonly struct StudentDistribution
{
    private StudentDistribution(ReadOnlyMemory<float> values, DistributionKind kind, int vocabularySize, int rows, SequenceLayout? layout)
    {
        Values = values;
        Kind = kind;
        VocabularySize = vocabularySize;
        RowCount = rows;
        Layout = layout;
    }

    /// <summary>The raw numbers, <see cref="RowCount"/> × <see cref="VocabularySize"/>, row-major.</summary>
    public ReadOnlyMemory<float> Values { get; }

    /// <summary>What the numbers are: logits or log-probabilities.</summary>
    public DistributionKind Kind { get; }

    /// <summary>The vocabulary size V (columns per row).</summary>
    public int VocabularySize { get; }

    /// <summary>The number of token rows.</summary>
    public int RowCount { get; }

    /// <summary>The sequence layout and padding mask, or <see langword="null"/> (every row its own sequence, none masked).</summary>
    public SequenceLayout? Layout { get; }

    /// <summary>A student given as logits s: p_s = softmax(s / T); gradients are dL/ds.</summary>
    /// <param name="logits">Rows × V logits, row-major. −∞ marks an impossible token.</param>
    /// <param name="vocabularySize">V, at least 1.</param>
    /// <param name="layout">Optional sequence layout and padding mask; its row count must match.</param>
    /// <returns>A view over <paramref name="logits"/>.</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="vocabularySize"/> is less than 1.</exception>
    /// <exception cref="ArgumentException">The length is not a multiple of V, or the layout's row count differs.</exception>
    public static StudentDistribution FromLogits(ReadOnlyMemory<float> logits, int vocabularySize, SequenceLayout? layout = null) =>
        new(logits, DistributionKind.Logits, vocabularySize, DistributionShape.Rows(logits.Length, vocabularySize, layout, nameof(logits)), layout);

    /// <summary>A student given as log-probabilities (log_softmax output); gradients are with respect to them.</summary>
    /// <param name="logProbabilities">Rows × V log-probabilities, row-major. −∞ marks an impossible token.</param>
    /// <param name="vocabularySize">V, at least 1.</param>
    /// <param name="layout">Optional sequence layout and padding mask; its row count must match.</param>
    /// <returns>A view over <paramref name="logProbabilities"/>.</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="vocabularySize"/> is less than 1.</exception>
    /// <exception cref="ArgumentException">The length is not a multiple of V, or the layout's row count differs.</exception>
    public static StudentDistribution FromLogProbabilities(ReadOnlyMemory<float> logProbabilities, int vocabularySize, SequenceLayout? layout = null) =>
        new(logProbabilities, DistributionKind.LogProbabilities, vocabularySize, DistributionShape.Rows(logProbabilities.Length, vocabularySize, layout, nameof(logProbabilities)), layout);
}
