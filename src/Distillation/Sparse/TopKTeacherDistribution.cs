using System;
using Distillation.Internal;

namespace Distillation;

/// <summary>
/// A top-k teacher: per token row, k token ids and their log-probabilities (k ≪ V), as an offline teacher or an
/// inference server returns them, with a <see cref="ResidualMassPolicy"/> that says what the missing mass means.
/// A view over the caller's buffers (no copy); creating one allocates nothing.
/// </summary>
/// <remarks>
/// <para><b>Layout.</b> <see cref="Ids"/> and the log-probabilities hold <see cref="RowCount"/> × <see cref="K"/> entries,
/// row-major: slot i of row r is entry r·k + i. The order of the slots within a row does not matter.</para>
/// <para><b>Values.</b> Each id lies in [0, V) and appears at most once per row; each log-probability is ≤ 0 (up to
/// <see cref="MassTolerance"/>), not NaN, and −∞ for a token kept with no mass; Σ_kept p ≤ 1 + <see cref="MassTolerance"/>.
/// An id of <see cref="EmptySlot"/> (−1) marks an unused slot (a row with fewer than k candidates, for example after a
/// top-p cut or a dropped vocabulary id): its log-probability must be −∞ and it is skipped. The loss checks all of
/// this on the real rows before anything is computed and throws <see cref="ArgumentException"/> or
/// <see cref="ArgumentOutOfRangeException"/> naming the row and slot; masked rows are never read.</para>
/// <para><b>Temperature.</b> The log-probabilities are those of the teacher at <see cref="GenerationTemperature"/>
/// T_gen (default 1, the raw model); a loss at T uses p ∝ exp(log p · T_gen / T) — see
/// <see cref="ResidualMassPolicy"/> for what that means under each policy.</para>
/// <para><b>Size.</b> A row costs k·(4 + 4) bytes with float log-probabilities and k·(4 + 2) with <see cref="Half"/>
/// (<see cref="BytesPerToken"/>), against 4·V for a dense float row (<see cref="DenseBytesPerToken"/>): at k = 20 and
/// V = 32000, 120 bytes instead of 128000.</para>
/// </remarks>
public readonly struct TopKTeacherDistribution
{
    /// <summary>The id that marks an unused slot (its log-probability must be −∞).</summary>
    public const int EmptySlot = -1;

    /// <summary>The tolerance on the kept mass: each log p ≤ this value and Σ_kept p ≤ 1 + this value.</summary>
    public const float MassTolerance = 1e-3f;

    private TopKTeacherDistribution(ReadOnlyMemory<int> ids, ReadOnlyMemory<float> values, ReadOnlyMemory<Half> halfValues, int k, int vocabularySize, int rows, ResidualMassPolicy residual, float generationTemperature, SequenceLayout? layout)
    {
        Ids = ids;
        LogProbabilities = values;
        HalfLogProbabilities = halfValues;
        K = k;
        VocabularySize = vocabularySize;
        RowCount = rows;
        Residual = residual;
        GenerationTemperature = generationTemperature;
        Layout = layout;
    }

    /// <summary>The kept token ids, <see cref="RowCount"/> × <see cref="K"/>, row-major.</summary>
    public ReadOnlyMemory<int> Ids { get; }

    /// <summary>The kept log-probabilities as float, <see cref="RowCount"/> × <see cref="K"/>; empty when stored as <see cref="Half"/>.</summary>
    public ReadOnlyMemory<float> LogProbabilities { get; }

    /// <summary>The kept log-probabilities as <see cref="Half"/> (2 bytes each, widened exactly as they are read); empty when stored as float.</summary>
    public ReadOnlyMemory<Half> HalfLogProbabilities { get; }

    /// <summary>Whether the log-probabilities are stored as <see cref="Half"/>.</summary>
    public bool IsHalfPrecision => !HalfLogProbabilities.IsEmpty;

    /// <summary>The number of slots per row, k (1 ≤ k ≤ V).</summary>
    public int K { get; }

    /// <summary>The vocabulary size V of the distribution the ids index (the student's).</summary>
    public int VocabularySize { get; }

    /// <summary>The number of token rows.</summary>
    public int RowCount { get; }

    /// <summary>What the missing mass means (see <see cref="ResidualMassPolicy"/>).</summary>
    public ResidualMassPolicy Residual { get; }

    /// <summary>The temperature T_gen at which the log-probabilities were produced (default 1).</summary>
    public float GenerationTemperature { get; }

    /// <summary>The sequence layout and padding mask, or <see langword="null"/> (every row its own sequence, none masked).</summary>
    public SequenceLayout? Layout { get; }

    /// <summary>The bytes one row of this teacher occupies: k·(4 + 2) with Half log-probabilities, k·(4 + 4) with float.</summary>
    public int BytesPerToken => K * (sizeof(int) + (IsHalfPrecision ? 2 : sizeof(float)));

    /// <summary>The bytes one dense float row of the same vocabulary occupies: 4·V (2·V as Half).</summary>
    public long DenseBytesPerToken => (long)VocabularySize * sizeof(float);

    /// <summary>
    /// A top-k teacher from float log-probabilities.
    /// </summary>
    /// <param name="ids">Rows × k token ids, row-major; each in [0, V) and distinct within its row, or <see cref="EmptySlot"/>.</param>
    /// <param name="logProbabilities">Rows × k log-probabilities at <paramref name="generationTemperature"/>, aligned with <paramref name="ids"/>.</param>
    /// <param name="k">Slots per row, in [1, V].</param>
    /// <param name="vocabularySize">V, the size of the (student's) vocabulary the ids index, at least 1.</param>
    /// <param name="residual">What the missing mass means.</param>
    /// <param name="layout">Optional sequence layout and padding mask; its row count must match.</param>
    /// <param name="generationTemperature">T_gen in [1e-6, 1e6], the temperature the log-probabilities were produced at (default 1).</param>
    /// <returns>A view over the two buffers.</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="vocabularySize"/> &lt; 1, <paramref name="k"/> outside [1, V], <paramref name="residual"/> undefined, or the temperature out of range.</exception>
    /// <exception cref="ArgumentException">The buffers' lengths differ or are not a multiple of k, or the layout's row count differs.</exception>
    public static TopKTeacherDistribution FromLogProbabilities(ReadOnlyMemory<int> ids, ReadOnlyMemory<float> logProbabilities, int k, int vocabularySize, ResidualMassPolicy residual, SequenceLayout? layout = null, float generationTemperature = 1f) =>
        Create(ids, logProbabilities, default, logProbabilities.Length, k, vocabularySize, residual, layout, generationTemperature, nameof(logProbabilities));

    /// <summary>
    /// A top-k teacher from half-precision log-probabilities (2 bytes each, widened to float exactly as they are read).
    /// </summary>
    /// <param name="ids">Rows × k token ids, row-major; each in [0, V) and distinct within its row, or <see cref="EmptySlot"/>.</param>
    /// <param name="logProbabilities">Rows × k log-probabilities at <paramref name="generationTemperature"/>, aligned with <paramref name="ids"/>.</param>
    /// <param name="k">Slots per row, in [1, V].</param>
    /// <param name="vocabularySize">V, the size of the (student's) vocabulary the ids index, at least 1.</param>
    /// <param name="residual">What the missing mass means.</param>
    /// <param name="layout">Optional sequence layout and padding mask; its row count must match.</param>
    /// <param name="generationTemperature">T_gen in [1e-6, 1e6], the temperature the log-probabilities were produced at (default 1).</param>
    /// <returns>A view over the two buffers.</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="vocabularySize"/> &lt; 1, <paramref name="k"/> outside [1, V], <paramref name="residual"/> undefined, or the temperature out of range.</exception>
    /// <exception cref="ArgumentException">The buffers' lengths differ or are not a multiple of k, or the layout's row count differs.</exception>
    public static TopKTeacherDistribution FromLogProbabilities(ReadOnlyMemory<int> ids, ReadOnlyMemory<Half> logProbabilities, int k, int vocabularySize, ResidualMassPolicy residual, SequenceLayout? layout = null, float generationTemperature = 1f) =>
        Create(ids, default, logProbabilities, logProbabilities.Length, k, vocabularySize, residual, layout, generationTemperature, nameof(logProbabilities));

    /// <summary>The same teacher with another residual policy (the buffers are shared).</summary>
    /// <param name="residual">The policy.</param>
    /// <returns>A view over the same buffers.</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="residual"/> is not a defined value.</exception>
    public TopKTeacherDistribution WithResidual(ResidualMassPolicy residual)
    {
        CheckPolicy(residual);
        return new(Ids, LogProbabilities, HalfLogProbabilities, K, VocabularySize, RowCount, residual, GenerationTemperature, Layout);
    }

    /// <summary>The log-probability of slot <paramref name="index"/> (row·k + slot), widened to float.</summary>
    internal float LogProbabilityAt(int index) => IsHalfPrecision ? (float)HalfLogProbabilities.Span[index] : LogProbabilities.Span[index];

    private static TopKTeacherDistribution Create(ReadOnlyMemory<int> ids, ReadOnlyMemory<float> values, ReadOnlyMemory<Half> halfValues, int length, int k, int vocabularySize, ResidualMassPolicy residual, SequenceLayout? layout, float generationTemperature, string valuesName)
    {
        if (vocabularySize <= 0)
        {
            ThrowHelper.OutOfRange(nameof(vocabularySize), vocabularySize, "The vocabulary size must be at least 1.");
        }

        if (k < 1 || k > vocabularySize)
        {
            ThrowHelper.OutOfRange(nameof(k), k, ThrowHelper.Format($"k must lie in [1, V] = [1, {vocabularySize}]."));
        }

        CheckPolicy(residual);
        ThrowHelper.CheckTemperature(generationTemperature, nameof(generationTemperature));
        if (ids.Length != length)
        {
            ThrowHelper.Argument(valuesName, ThrowHelper.Format($"There are {ids.Length} ids and {length} log-probabilities; they must be the same (rows × k)."));
        }

        if (length % k != 0)
        {
            ThrowHelper.Argument(nameof(ids), ThrowHelper.Format($"The buffers hold {length} entries, which is not a multiple of k = {k}."));
        }

        int rows = length / k;
        if (layout is not null && layout.RowCount != rows)
        {
            ThrowHelper.Argument(nameof(layout), ThrowHelper.Format($"The layout has {layout.RowCount} rows but the buffers hold {rows} rows of k = {k}."));
        }

        return new(ids, values, halfValues, k, vocabularySize, rows, residual, generationTemperature, layout);
    }

    private static void CheckPolicy(ResidualMassPolicy residual)
    {
        if (residual is not (ResidualMassPolicy.Renormalize or ResidualMassPolicy.RestBucket or ResidualMassPolicy.MissingAsZero))
        {
            ThrowHelper.OutOfRange(nameof(residual), residual, "Unknown residual-mass policy.");
        }
    }
}
