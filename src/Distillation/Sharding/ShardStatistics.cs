using System;
using System.Collections.Generic;
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
/// <para>Immutable; <see cref="Merge"/> returns a new object.</para>
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
