using System;
using Distillation.Internal;

namespace Distillation;

/// <summary>
/// How the token rows of a batch belong to sequences, and which rows are padding.
/// </summary>
/// <remarks>
/// <para>Rows are stored sequence after sequence: rows <c>Offsets[b] .. Offsets[b + 1] − 1</c> belong to sequence
/// <c>b</c>. A rectangular batch of <c>B</c> sequences of length <c>T</c> flattened row-major has
/// <c>Offsets[b] = b·T</c>; packed variable-length sequences give their offsets (or lengths) directly.</para>
/// <para>An optional padding mask (one <see cref="bool"/> per row, <see langword="true"/> = a real token) removes rows
/// from every loss: a masked row contributes 0 to the value, is not counted by any reduction, its gradient row is
/// written as zeros and its numbers are never read (so padding may hold anything, NaN included).</para>
/// <para>A layout is immutable; it keeps a reference to the mask's memory, which the caller must not change while a
/// loss is being computed.</para>
/// </remarks>
public sealed class SequenceLayout
{
    private readonly int[] _offsets;

    private SequenceLayout(int[] offsets, ReadOnlyMemory<bool> mask)
    {
        _offsets = offsets;
        Mask = mask;
    }

    /// <summary>The number of token rows the layout describes.</summary>
    public int RowCount => _offsets[^1];

    /// <summary>The number of sequences (the batch size B).</summary>
    public int SequenceCount => _offsets.Length - 1;

    /// <summary>Row offsets, <see cref="SequenceCount"/> + 1 of them: sequence b owns rows [Offsets[b], Offsets[b+1]).</summary>
    public ReadOnlySpan<int> Offsets => _offsets;

    /// <summary>The padding mask, one entry per row (<see langword="true"/> = real token), or empty when every row is real.</summary>
    public ReadOnlyMemory<bool> Mask { get; }

    /// <summary>
    /// A batch of <paramref name="batch"/> sequences of <paramref name="length"/> rows each, flattened row-major
    /// (row = b·length + position), with an optional padding mask of <c>batch·length</c> entries.
    /// </summary>
    /// <param name="batch">The number of sequences B (0 or more).</param>
    /// <param name="length">The rows per sequence T (0 or more).</param>
    /// <param name="paddingMask">One entry per row, <see langword="true"/> for a real token; empty for no padding.</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="batch"/> or <paramref name="length"/> is negative, or their product overflows.</exception>
    /// <exception cref="ArgumentException"><paramref name="paddingMask"/> is neither empty nor of length batch·length.</exception>
    public static SequenceLayout Rectangular(int batch, int length, ReadOnlyMemory<bool> paddingMask = default)
    {
        if (batch < 0)
        {
            ThrowHelper.OutOfRange(nameof(batch), batch, "The batch size must be 0 or more.");
        }

        if (length < 0)
        {
            ThrowHelper.OutOfRange(nameof(length), length, "The sequence length must be 0 or more.");
        }

        long rows = (long)batch * length;
        if (rows > int.MaxValue)
        {
            ThrowHelper.OutOfRange(nameof(length), length, ThrowHelper.Format($"batch × length = {rows} rows exceeds {int.MaxValue}."));
        }

        CheckMask(paddingMask, (int)rows, nameof(paddingMask));
        var offsets = new int[batch + 1];
        for (int b = 0; b <= batch; b++)
        {
            offsets[b] = b * length;
        }

        return new SequenceLayout(offsets, paddingMask);
    }

    /// <summary>
    /// A rectangular batch padded to <paramref name="maxLength"/>: sequence b has <c>lengths[b]</c> real rows
    /// followed by padding. Equivalent to <see cref="Rectangular"/> with the padding mask these lengths imply.
    /// </summary>
    /// <param name="lengths">The real length of each sequence, each in [0, <paramref name="maxLength"/>].</param>
    /// <param name="maxLength">The padded length T of every sequence.</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="maxLength"/> is negative, or a length is outside [0, maxLength].</exception>
    public static SequenceLayout Padded(ReadOnlySpan<int> lengths, int maxLength)
    {
        if (maxLength < 0)
        {
            ThrowHelper.OutOfRange(nameof(maxLength), maxLength, "The padded length must be 0 or more.");
        }

        long rows = (long)lengths.Length * maxLength;
        if (rows > int.MaxValue)
        {
            ThrowHelper.OutOfRange(nameof(maxLength), maxLength, ThrowHelper.Format($"batch × maxLength = {rows} rows exceeds {int.MaxValue}."));
        }

        var mask = new bool[rows];
        for (int b = 0; b < lengths.Length; b++)
        {
            int n = lengths[b];
            if ((uint)n > (uint)maxLength)
            {
                ThrowHelper.OutOfRange(nameof(lengths), n, ThrowHelper.Format($"lengths[{b}] = {n} is outside [0, {maxLength}]."));
            }

            mask.AsSpan(b * maxLength, n).Fill(true);
        }

        return Rectangular(lengths.Length, maxLength, mask);
    }

    /// <summary>Packed sequences of the given lengths, stored one after another with no padding.</summary>
    /// <param name="lengths">The number of rows of each sequence (each 0 or more).</param>
    /// <exception cref="ArgumentOutOfRangeException">A length is negative, or the total overflows.</exception>
    public static SequenceLayout FromLengths(ReadOnlySpan<int> lengths)
    {
        var offsets = new int[lengths.Length + 1];
        long total = 0;
        for (int b = 0; b < lengths.Length; b++)
        {
            if (lengths[b] < 0)
            {
                ThrowHelper.OutOfRange(nameof(lengths), lengths[b], ThrowHelper.Format($"lengths[{b}] = {lengths[b]} is negative."));
            }

            total += lengths[b];
            if (total > int.MaxValue)
            {
                ThrowHelper.OutOfRange(nameof(lengths), total, ThrowHelper.Format($"The total length exceeds {int.MaxValue} rows."));
            }

            offsets[b + 1] = (int)total;
        }

        return new SequenceLayout(offsets, default);
    }

    /// <summary>
    /// Packed sequences given by their row offsets: sequence b owns rows [offsets[b], offsets[b+1]).
    /// </summary>
    /// <param name="offsets">At least one entry; offsets[0] = 0 and non-decreasing. The last entry is the row count.</param>
    /// <param name="paddingMask">Optional: one entry per row, <see langword="true"/> for a real token.</param>
    /// <exception cref="ArgumentException"><paramref name="offsets"/> is empty, does not start at 0, or decreases; or the mask has the wrong length.</exception>
    public static SequenceLayout FromOffsets(ReadOnlySpan<int> offsets, ReadOnlyMemory<bool> paddingMask = default)
    {
        if (offsets.IsEmpty)
        {
            ThrowHelper.Argument(nameof(offsets), "The offsets must have at least one entry (0 for an empty batch).");
        }

        if (offsets[0] != 0)
        {
            ThrowHelper.Argument(nameof(offsets), ThrowHelper.Format($"offsets[0] must be 0, not {offsets[0]}."));
        }

        for (int b = 1; b < offsets.Length; b++)
        {
            if (offsets[b] < offsets[b - 1])
            {
                ThrowHelper.Argument(nameof(offsets), ThrowHelper.Format($"The offsets must be non-decreasing: offsets[{b}] = {offsets[b]} < offsets[{b - 1}] = {offsets[b - 1]}."));
            }
        }

        CheckMask(paddingMask, offsets[^1], nameof(paddingMask));
        return new SequenceLayout(offsets.ToArray(), paddingMask);
    }

    /// <summary>Each of <paramref name="rows"/> rows is its own sequence of length 1, with no padding (the layout used when none is given).</summary>
    /// <param name="rows">The number of rows (0 or more).</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="rows"/> is negative.</exception>
    public static SequenceLayout Independent(int rows)
    {
        if (rows < 0)
        {
            ThrowHelper.OutOfRange(nameof(rows), rows, "The number of rows must be 0 or more.");
        }

        return Rectangular(rows, 1);
    }

    /// <summary>Whether row <paramref name="row"/> is a real token (not padding).</summary>
    /// <param name="row">A row index in [0, <see cref="RowCount"/>).</param>
    /// <returns><see langword="true"/> unless the padding mask marks the row as padding.</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="row"/> is outside [0, RowCount).</exception>
    public bool IsRowReal(int row)
    {
        if ((uint)row >= (uint)RowCount)
        {
            ThrowHelper.OutOfRange(nameof(row), row, ThrowHelper.Format($"The row must be in [0, {RowCount})."));
        }

        return Mask.IsEmpty || Mask.Span[row];
    }

    private static void CheckMask(ReadOnlyMemory<bool> mask, int rows, string paramName)
    {
        if (!mask.IsEmpty && mask.Length != rows)
        {
            ThrowHelper.Argument(paramName, ThrowHelper.Format($"The padding mask has {mask.Length} entries but the layout has {rows} rows."));
        }
    }
}
