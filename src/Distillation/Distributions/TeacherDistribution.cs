using System;

namespace Distillation;

/// <summary>
/// The teacher's output distributions P_t(y | x, z): one categorical distribution over a vocabulary of
/// <see cref="VocabularySize"/> tokens per row, rows stored row-major in one float32 buffer (no copy is made).
/// </summary>
/// <remarks>
/// <para>The buffer holds raw numbers; the temperature belongs to the loss, which computes
/// p_t = softmax(z / T) from logits or log-probabilities and p_t ∝ p^(1/T) from probabilities.</para>
/// <para>−∞ logits or log-probabilities, and zero probabilities, mean "impossible token" and are handled exactly
/// (0 · log 0 = 0). NaN and +∞ are rejected by the loss with the row and column in the message.</para>
/// <para><b>Context distillation.</b> The teacher may see a richer input than the student — instructions,
/// demonstrations, a latent z — as long as its rows are aligned with the student's: row i of both buffers is the
/// distribution of the same output token. Run the teacher on (x, z), the student on x', keep the rows that predict
/// the same target tokens (drop the teacher's extra context rows), and pass both with the same layout.</para>
/// <para>The caller must not change the buffer while a loss that reads it is running. The struct is a cheap view:
/// creating one allocates nothing.</para>
/// </remarks>
public readonly struct TeacherDistribution
{
    /// <summary>The tolerance on a probability row's sum: |Σ p − 1| must not exceed it.</summary>
    public const float ProbabilitySumTolerance = 1e-3f;

    private TeacherDistribution(ReadOnlyMemory<float> values, DistributionKind kind, int vocabularySize, int rows, SequenceLayout? layout, ReadOnlyMemory<Half> halfValues = default)
    {
        Values = values;
        HalfValues = halfValues;
        Kind = kind;
        VocabularySize = vocabularySize;
        RowCount = rows;
        Layout = layout;
    }

    /// <summary>The raw numbers, <see cref="RowCount"/> × <see cref="VocabularySize"/>, row-major; empty when the teacher is stored as <see cref="Half"/>.</summary>
    public ReadOnlyMemory<float> Values { get; }

    /// <summary>The raw numbers when the teacher was created from half-precision storage (offline teachers often are); empty otherwise.</summary>
    public ReadOnlyMemory<Half> HalfValues { get; }

    /// <summary>Whether the numbers are stored as <see cref="Half"/> (read from <see cref="HalfValues"/>, 2 bytes each, widened to float as they are read).</summary>
    public bool IsHalfPrecision => !HalfValues.IsEmpty;

    /// <summary>What the numbers are: logits, log-probabilities or probabilities.</summary>
    public DistributionKind Kind { get; }

    /// <summary>The vocabulary size V (columns per row).</summary>
    public int VocabularySize { get; }

    /// <summary>The number of token rows.</summary>
    public int RowCount { get; }

    /// <summary>The sequence layout and padding mask, or <see langword="null"/> (every row its own sequence, none masked).</summary>
    public SequenceLayout? Layout { get; }

    /// <summary>A teacher given as logits: p_t = softmax(logits / T).</summary>
    /// <param name="logits">Rows × V logits, row-major. −∞ marks an impossible token.</param>
    /// <param name="vocabularySize">V, at least 1.</param>
    /// <param name="layout">Optional sequence layout and padding mask; its row count must match.</param>
    /// <returns>A view over <paramref name="logits"/>.</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="vocabularySize"/> is less than 1.</exception>
    /// <exception cref="ArgumentException">The length is not a multiple of V, or the layout's row count differs.</exception>
    public static TeacherDistribution FromLogits(ReadOnlyMemory<float> logits, int vocabularySize, SequenceLayout? layout = null) =>
        new(logits, DistributionKind.Logits, vocabularySize, DistributionShape.Rows(logits.Length, vocabularySize, layout, nameof(logits)), layout);

    /// <summary>
    /// A teacher given as half-precision logits, as an offline teacher stores them: 2 bytes per value are read and
    /// widened to float exactly (every Half is a float); the loss is then the same as for the widened float logits.
    /// </summary>
    /// <param name="logits">Rows × V logits, row-major. −∞ marks an impossible token.</param>
    /// <param name="vocabularySize">V, at least 1.</param>
    /// <param name="layout">Optional sequence layout and padding mask; its row count must match.</param>
    /// <returns>A view over <paramref name="logits"/>.</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="vocabularySize"/> is less than 1.</exception>
    /// <exception cref="ArgumentException">The length is not a multiple of V, or the layout's row count differs.</exception>
    public static TeacherDistribution FromLogits(ReadOnlyMemory<Half> logits, int vocabularySize, SequenceLayout? layout = null) =>
        new(default, DistributionKind.Logits, vocabularySize, DistributionShape.Rows(logits.Length, vocabularySize, layout, nameof(logits)), layout, logits);

    /// <summary>A teacher given as half-precision log-probabilities (widened to float exactly as they are read).</summary>
    /// <param name="logProbabilities">Rows × V log-probabilities, row-major. −∞ marks an impossible token.</param>
    /// <param name="vocabularySize">V, at least 1.</param>
    /// <param name="layout">Optional sequence layout and padding mask; its row count must match.</param>
    /// <returns>A view over <paramref name="logProbabilities"/>.</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="vocabularySize"/> is less than 1.</exception>
    /// <exception cref="ArgumentException">The length is not a multiple of V, or the layout's row count differs.</exception>
    public static TeacherDistribution FromLogProbabilities(ReadOnlyMemory<Half> logProbabilities, int vocabularySize, SequenceLayout? layout = null) =>
        new(default, DistributionKind.LogProbabilities, vocabularySize, DistributionShape.Rows(logProbabilities.Length, vocabularySize, layout, nameof(logProbabilities)), layout, logProbabilities);

    /// <summary>A teacher row widened to float: the row itself, or its Half values converted into <paramref name="buffer"/>.</summary>
    internal ReadOnlySpan<float> Row(int row, Span<float> buffer)
    {
        if (!IsHalfPrecision)
        {
            return Values.Span.Slice(row * VocabularySize, VocabularySize);
        }

        System.Numerics.Tensors.TensorPrimitives.ConvertToSingle(HalfValues.Span.Slice(row * VocabularySize, VocabularySize), buffer[..VocabularySize]);
        return buffer[..VocabularySize];
    }

    /// <summary>A teacher given as log-probabilities (for example log_softmax output or an inference server's log-probabilities): p_t ∝ exp(logp / T).</summary>
    /// <param name="logProbabilities">Rows × V log-probabilities, row-major. −∞ marks an impossible token.</param>
    /// <param name="vocabularySize">V, at least 1.</param>
    /// <param name="layout">Optional sequence layout and padding mask; its row count must match.</param>
    /// <returns>A view over <paramref name="logProbabilities"/>.</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="vocabularySize"/> is less than 1.</exception>
    /// <exception cref="ArgumentException">The length is not a multiple of V, or the layout's row count differs.</exception>
    public static TeacherDistribution FromLogProbabilities(ReadOnlyMemory<float> logProbabilities, int vocabularySize, SequenceLayout? layout = null) =>
        new(logProbabilities, DistributionKind.LogProbabilities, vocabularySize, DistributionShape.Rows(logProbabilities.Length, vocabularySize, layout, nameof(logProbabilities)), layout);

    /// <summary>
    /// A teacher given as probabilities: p_t ∝ p^(1/T). Each row must be ≥ 0 and sum to 1 within
    /// <see cref="ProbabilitySumTolerance"/> (checked by the loss; a row is renormalised after the check).
    /// </summary>
    /// <param name="probabilities">Rows × V probabilities, row-major. 0 marks an impossible token.</param>
    /// <param name="vocabularySize">V, at least 1.</param>
    /// <param name="layout">Optional sequence layout and padding mask; its row count must match.</param>
    /// <returns>A view over <paramref name="probabilities"/>.</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="vocabularySize"/> is less than 1.</exception>
    /// <exception cref="ArgumentException">The length is not a multiple of V, or the layout's row count differs.</exception>
    public static TeacherDistribution FromProbabilities(ReadOnlyMemory<float> probabilities, int vocabularySize, SequenceLayout? layout = null) =>
        new(probabilities, DistributionKind.Probabilities, vocabularySize, DistributionShape.Rows(probabilities.Length, vocabularySize, layout, nameof(probabilities)), layout);
}
