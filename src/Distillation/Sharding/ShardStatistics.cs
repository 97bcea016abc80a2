using System;
using System.Buffers.Binary;
using System.Collections.Generic;
using System.IO;
using System.IO.Hashing;
using System.Linq;
using Distillation.Internal;

namespace Distillation;

/// <summary>
/// Per-row statistics of a divergence over one or more vocabulary shards, mergeable into those of the whole
/// vocabulary: the vocabulary-parallel softmax of Megatron, where workers holding slices of the vocabulary combine a
/// MAX and a SUM of their partial results and then each computes its own slice of the gradient.
/// </summary>
/// <remarks>
/// <para>For each row and each side (teacher z_t = t/T, student z_s = s/T) a shard keeps its maximum m and
/// Z = Σ exp(z − m) over its slice, and the weighted sums A = Σ e_t (z_t − m_t), B = Σ e_t (z_s − m_s),
/// C = Σ e_s (z_s − m_s), D = Σ e_s (z_t − m_t). Merging rescales each shard's sums to the common maxima
/// M = max_i m_i: Z = Σ_i e^(m_i − M) Z_i, A = Σ_i e^(m_t,i − M_t)·(A_i + (m_t,i − M_t)·Z_t,i), and so on — exact, in
/// any order and grouping. From the merged sums: E_p[log p] = A/Z_t − log Z_t, E_p[log q] = B/Z_t − log Z_s,
/// E_q[log q] = C/Z_s − log Z_s, E_q[log p] = D/Z_s − log Z_t, which give forward KL, soft CE and reverse KL.</para>
/// <para>The other divergences need the normalisers before their terms: a second round
/// (<see cref="VocabularyShardedLoss.ComputeTermSums"/>) adds each shard's Σ_j term_j and Σ_j q_j g_j under the
/// merged normalisers, and those merge by plain addition.</para>
/// <para>Immutable; <see cref="Merge"/> returns a new object. Workers in different processes exchange them as bytes
/// (<see cref="WriteTo"/>, <see cref="ToBytes"/>, <see cref="ReadFrom"/>): a versioned little-endian record with a
/// CRC-32, which reads back bit for bit.</para>
/// </remarks>
public sealed class ShardStatistics
{
    internal const int Fields = 10;
    internal const int TeacherMax = 0, TeacherSum = 1, StudentMax = 2, StudentSum = 3, A = 4, B = 5, C = 6, D = 7, Terms = 8, WeightedGradient = 9;

    private readonly VocabularyShard[] _shards;

    internal ShardStatistics(double[] values, int rows, VocabularyShard[] shards, SequenceLayout? layout, bool hasTermSums)
    {
        Values = values;
        RowCount = rows;
        _shards = shards;
        Layout = layout;
        HasTermSums = hasTermSums;
    }

    /// <summary>The number of token rows.</summary>
    public int RowCount { get; }

    /// <summary>The shards these statistics cover, ordered by start.</summary>
    public IReadOnlyList<VocabularyShard> Shards => _shards;

    /// <summary>Whether the statistics hold the second round's term sums (see <see cref="VocabularyShardedLoss.ComputeTermSums"/>).</summary>
    public bool HasTermSums { get; }

    /// <summary>The sequence layout and padding mask the statistics were computed with (masked rows are never read).</summary>
    public SequenceLayout? Layout { get; }

    /// <summary>rows × <see cref="Fields"/> doubles.</summary>
    internal double[] Values { get; }

    /// <summary>"DSTS" in the first four bytes of the serialised form.</summary>
    private const uint Magic = 0x53545344;

    /// <summary>The serialised form's version.</summary>
    private const ushort FormatVersion = 1;

    /// <summary>Magic, version, flags, rows, shard count, layout fingerprint.</summary>
    private const int HeaderBytes = 20;

    private const ushort FlagTermSums = 1, FlagLayout = 2;

    /// <summary>
    /// The number of bytes <see cref="WriteTo"/> writes: a 20-byte header, 8 bytes per shard, 80 per row
    /// (<c>10</c> doubles) and a 4-byte CRC-32.
    /// </summary>
    /// <exception cref="InvalidOperationException">The statistics hold more rows than one byte array can (about 26 million).</exception>
    public int SerializedLength
    {
        get
        {
            long length = HeaderBytes + (8L * _shards.Length) + (8L * Values.Length) + 4;
            if (length > Array.MaxLength)
            {
                throw new InvalidOperationException(ThrowHelper.Format($"Statistics of {RowCount} rows need {length} bytes, more than one array holds; exchange them in groups of rows."));
            }

            return (int)length;
        }
    }

    /// <summary>
    /// Writes the statistics as bytes, for another process to read with <see cref="ReadFrom"/>: "DSTS", format version 1,
    /// flags (second round; with a layout), the row and shard counts, a CRC-32 fingerprint of the sequence layout (its
    /// offsets and padding mask: the layout itself is not sent, every worker has it), each shard's start and length,
    /// rows × 10 doubles, and a CRC-32 of everything before it; all little-endian.
    /// </summary>
    /// <param name="destination">At least <see cref="SerializedLength"/> bytes.</param>
    /// <returns>The number of bytes written (<see cref="SerializedLength"/>).</returns>
    /// <exception cref="ArgumentException"><paramref name="destination"/> is shorter than <see cref="SerializedLength"/>.</exception>
    public int WriteTo(Span<byte> destination)
    {
        int length = SerializedLength;
        if (destination.Length < length)
        {
            ThrowHelper.Argument(nameof(destination), ThrowHelper.Format($"The statistics need {length} bytes; the destination has {destination.Length}."));
        }

        Span<byte> to = destination[..length];
        BinaryPrimitives.WriteUInt32LittleEndian(to, Magic);
        BinaryPrimitives.WriteUInt16LittleEndian(to[4..], FormatVersion);
        BinaryPrimitives.WriteUInt16LittleEndian(to[6..], (ushort)((HasTermSums ? FlagTermSums : 0) | (Layout is null ? 0 : FlagLayout)));
        BinaryPrimitives.WriteInt32LittleEndian(to[8..], RowCount);
        BinaryPrimitives.WriteInt32LittleEndian(to[12..], _shards.Length);
        BinaryPrimitives.WriteUInt32LittleEndian(to[16..], Layout is null ? 0 : Fingerprint(Layout));
        int at = HeaderBytes;
        foreach (VocabularyShard shard in _shards)
        {
            BinaryPrimitives.WriteInt32LittleEndian(to[at..], shard.Start);
            BinaryPrimitives.WriteInt32LittleEndian(to[(at + 4)..], shard.Length);
            at += 8;
        }

        foreach (double v in Values)
        {
            BinaryPrimitives.WriteDoubleLittleEndian(to[at..], v);
            at += 8;
        }

        BinaryPrimitives.WriteUInt32LittleEndian(to[at..], Crc32.HashToUInt32(to[..at]));
        return length;
    }

    /// <summary>The statistics as a new byte array (see <see cref="WriteTo"/>).</summary>
    /// <returns><see cref="SerializedLength"/> bytes.</returns>
    public byte[] ToBytes()
    {
        byte[] bytes = new byte[SerializedLength];
        WriteTo(bytes);
        return bytes;
    }

    /// <summary>
    /// Reads statistics written by <see cref="WriteTo"/> (in this or another process), bit for bit as they were written.
    /// </summary>
    /// <param name="source">Exactly the bytes <see cref="WriteTo"/> wrote.</param>
    /// <param name="layout">The sequence layout the statistics were computed with (not part of the bytes: every worker has it); null when they were computed without one.</param>
    /// <returns>The statistics, carrying <paramref name="layout"/>.</returns>
    /// <exception cref="InvalidDataException">The bytes are not shard statistics, are of another format version, are truncated or too long, fail their CRC-32, or describe impossible shards.</exception>
    /// <exception cref="ArgumentException"><paramref name="layout"/> is missing, superfluous, or not the layout the statistics were computed with (its row count or fingerprint differs).</exception>
    public static ShardStatistics ReadFrom(ReadOnlySpan<byte> source, SequenceLayout? layout = null)
    {
        if (source.Length < HeaderBytes + 4 || BinaryPrimitives.ReadUInt32LittleEndian(source) != Magic)
        {
            throw new InvalidDataException("These bytes are not shard statistics (no \"DSTS\" header).");
        }

        ushort version = BinaryPrimitives.ReadUInt16LittleEndian(source[4..]);
        if (version != FormatVersion)
        {
            throw new InvalidDataException(ThrowHelper.Format($"Shard statistics of format version {version}; this library reads version {FormatVersion}."));
        }

        ushort flags = BinaryPrimitives.ReadUInt16LittleEndian(source[6..]);
        int rows = BinaryPrimitives.ReadInt32LittleEndian(source[8..]), count = BinaryPrimitives.ReadInt32LittleEndian(source[12..]);
        long expected = HeaderBytes + (8L * Math.Max(count, 0)) + (8L * Fields * Math.Max(rows, 0)) + 4;
        if (rows < 0 || count < 1 || (flags & ~(FlagTermSums | FlagLayout)) != 0 || source.Length != expected)
        {
            throw new InvalidDataException(ThrowHelper.Format($"Shard statistics header says {rows} rows and {count} shards (flags {flags}), which needs {expected} bytes; {source.Length} were given."));
        }

        uint stored = BinaryPrimitives.ReadUInt32LittleEndian(source[^4..]), computed = Crc32.HashToUInt32(source[..^4]);
        if (stored != computed)
        {
            throw new InvalidDataException(ThrowHelper.Format($"Shard statistics fail their CRC-32 (stored {stored:x8}, computed {computed:x8}): the bytes were changed on the way."));
        }

        bool hasLayout = (flags & FlagLayout) != 0;
        if (!hasLayout && BinaryPrimitives.ReadUInt32LittleEndian(source[16..]) != 0)
        {
            throw new InvalidDataException("Shard statistics without a sequence layout carry a layout fingerprint; the record is malformed.");
        }

        if (hasLayout != layout is not null)
        {
            ThrowHelper.Argument(nameof(layout), hasLayout
                ? "These statistics were computed with a sequence layout; pass the same layout to read them."
                : "These statistics were computed without a sequence layout; pass none.");
        }

        if (layout is not null && (layout.RowCount != rows || Fingerprint(layout) != BinaryPrimitives.ReadUInt32LittleEndian(source[16..])))
        {
            ThrowHelper.Argument(nameof(layout), ThrowHelper.Format($"This layout ({layout.RowCount} rows) is not the one the statistics ({rows} rows) were computed with: its offsets or padding mask differ."));
        }

        var shards = new VocabularyShard[count];
        int at = HeaderBytes;
        for (int i = 0; i < count; i++, at += 8)
        {
            int start = BinaryPrimitives.ReadInt32LittleEndian(source[at..]), length = BinaryPrimitives.ReadInt32LittleEndian(source[(at + 4)..]);
            if (start < 0 || length < 1 || start > int.MaxValue - length || (i > 0 && start < shards[i - 1].End))
            {
                throw new InvalidDataException(ThrowHelper.Format($"Shard {i} of the statistics, start {start} and length {length}, is empty, out of range, or not after the shard before it."));
            }

            shards[i] = new VocabularyShard(start, length);
        }

        var values = new double[rows * Fields];
        for (int i = 0; i < values.Length; i++, at += 8)
        {
            values[i] = BinaryPrimitives.ReadDoubleLittleEndian(source[at..]);
        }

        return new ShardStatistics(values, rows, shards, layout, (flags & FlagTermSums) != 0);
    }

    /// <summary>A CRC-32 of a layout's offsets and padding mask (little-endian int32s, then one byte per row), so that a reader can tell a different layout.</summary>
    private static uint Fingerprint(SequenceLayout layout)
    {
        var crc = new Crc32();
        Span<byte> buffer = stackalloc byte[256];
        int used = 0;
        foreach (int offset in layout.Offsets)
        {
            if (used + 4 > buffer.Length)
            {
                crc.Append(buffer[..used]);
                used = 0;
            }

            BinaryPrimitives.WriteInt32LittleEndian(buffer[used..], offset);
            used += 4;
        }

        crc.Append(buffer[..used]);
        used = 0;
        buffer[used++] = layout.Mask.IsEmpty ? (byte)0 : (byte)1;
        foreach (bool real in layout.Mask.Span)
        {
            if (used == buffer.Length)
            {
                crc.Append(buffer);
                used = 0;
            }

            buffer[used++] = real ? (byte)1 : (byte)0;
        }

        crc.Append(buffer[..used]);
        return crc.GetCurrentHashAsUInt32();
    }

    /// <summary>Whether the shards are disjoint and cover [0, <paramref name="vocabularySize"/>) with no gap.</summary>
    /// <param name="vocabularySize">V.</param>
    /// <returns><see langword="true"/> when the merged shards are exactly the whole vocabulary.</returns>
    public bool Covers(int vocabularySize) => CoveredEnd() == vocabularySize;

    /// <summary>
    /// Merges the statistics of disjoint shards (first round) or of the second round computed from the same merged
    /// first round. The result is exact whatever the order and grouping (up to double rounding).
    /// </summary>
    /// <param name="shards">Statistics of disjoint shards, with the same rows and layout, all of the same round.</param>
    /// <returns>The merged statistics.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="shards"/> or an element is null.</exception>
    /// <exception cref="ArgumentException">No statistics were given; the row counts, layouts or rounds differ; two shards overlap; or second-round statistics come from different first rounds.</exception>
    public static ShardStatistics Merge(IEnumerable<ShardStatistics> shards)
    {
        ArgumentNullException.ThrowIfNull(shards);
        ShardStatistics[] parts = shards.ToArray();
        if (parts.Length == 0)
        {
            ThrowHelper.Argument(nameof(shards), "Merging needs at least one shard's statistics.");
        }

        ShardStatistics first = parts[0] ?? throw new ArgumentNullException(nameof(shards));
        int rows = first.RowCount;
        foreach (ShardStatistics part in parts)
        {
            ArgumentNullException.ThrowIfNull(part, nameof(shards));
            if (part.RowCount != rows)
            {
                ThrowHelper.Argument(nameof(shards), ThrowHelper.Format($"The statistics have {part.RowCount} and {rows} rows; they must be the same."));
            }

            if (part.HasTermSums != first.HasTermSums)
            {
                ThrowHelper.Argument(nameof(shards), "First-round statistics and second-round term sums cannot be merged together.");
            }

            InputChecks.Layouts(part.Layout, first.Layout, nameof(shards));
        }

        VocabularyShard[] all = parts.SelectMany(p => p._shards).OrderBy(s => s.Start).ToArray();
        for (int i = 1; i < all.Length; i++)
        {
            if (all[i].Start < all[i - 1].End)
            {
                ThrowHelper.Argument(nameof(shards), ThrowHelper.Format($"The shards {all[i - 1]} and {all[i]} overlap; each token id must be counted once."));
            }
        }

        var merged = new double[rows * Fields];
        for (int r = 0; r < rows; r++)
        {
            if (first.HasTermSums)
            {
                MergeTermSums(parts, r, merged.AsSpan(r * Fields, Fields));
            }
            else
            {
                MergeRow(parts, r, merged.AsSpan(r * Fields, Fields));
            }
        }

        return new ShardStatistics(merged, rows, all, first.Layout, first.HasTermSums);
    }

    /// <summary>One past the last id of the coverage when it is contiguous from 0; −1 otherwise.</summary>
    internal int CoveredEnd()
    {
        int end = 0;
        foreach (VocabularyShard s in _shards)
        {
            if (s.Start != end)
            {
                return -1;
            }

            end = s.End;
        }

        return end;
    }

    private static void MergeRow(ShardStatistics[] parts, int r, Span<double> to)
    {
        double mt = double.NegativeInfinity, ms = double.NegativeInfinity;
        foreach (ShardStatistics p in parts)
        {
            mt = Math.Max(mt, p.Values[(r * Fields) + TeacherMax]);
            ms = Math.Max(ms, p.Values[(r * Fields) + StudentMax]);
        }

        double zt = 0, zs = 0, a = 0, b = 0, c = 0, d = 0;
        foreach (ShardStatistics p in parts)
        {
            ReadOnlySpan<double> v = p.Values.AsSpan(r * Fields, Fields);
            if (!double.IsNegativeInfinity(v[TeacherMax]))
            {
                // The shard's teacher-weighted sums, rescaled from its own maxima to the common ones.
                double w = Math.Exp(v[TeacherMax] - mt);
                zt += w * v[TeacherSum];
                a += w * (v[A] + ((v[TeacherMax] - mt) * v[TeacherSum]));
                b += w * (v[B] + (double.IsNegativeInfinity(v[StudentMax]) ? double.NegativeInfinity : (v[StudentMax] - ms) * v[TeacherSum]));
            }

            if (!double.IsNegativeInfinity(v[StudentMax]))
            {
                double u = Math.Exp(v[StudentMax] - ms);
                zs += u * v[StudentSum];
                c += u * (v[C] + ((v[StudentMax] - ms) * v[StudentSum]));
                d += u * (v[D] + (double.IsNegativeInfinity(v[TeacherMax]) ? double.NegativeInfinity : (v[TeacherMax] - mt) * v[StudentSum]));
            }
        }

        to[TeacherMax] = mt;
        to[TeacherSum] = zt;
        to[StudentMax] = ms;
        to[StudentSum] = zs;
        to[A] = a;
        to[B] = b;
        to[C] = c;
        to[D] = d;
    }

    private static void MergeTermSums(ShardStatistics[] parts, int r, Span<double> to)
    {
        ReadOnlySpan<double> normalisers = parts[0].Values.AsSpan(r * Fields, Terms);
        normalisers.CopyTo(to);
        double terms = 0, weighted = 0;
        foreach (ShardStatistics p in parts)
        {
            ReadOnlySpan<double> v = p.Values.AsSpan(r * Fields, Fields);
            if (!v[..Terms].SequenceEqual(normalisers) && !(double.IsNaN(v[0]) && double.IsNaN(normalisers[0])))
            {
                ThrowHelper.Argument("shards", ThrowHelper.Format($"Row {r}: these term sums were computed from different merged first-round statistics; compute every shard's second round from the same merged statistics."));
            }

            terms += v[Terms];
            weighted += v[WeightedGradient];
        }

        to[Terms] = terms;
        to[WeightedGradient] = weighted;
    }
}
