using System;
using Distillation.Internal;
using Distillation.Kernels;
using Distillation.Kernels.Divergences;

namespace Distillation;

/// <summary>
/// A distillation loss over a vocabulary split into shards (contiguous slices, as tensor-parallel workers hold the
/// logits of a vocabulary-parallel LM head): each shard computes mergeable per-row statistics of its slice, the
/// statistics are merged, and each shard then writes its slice of the gradient. The merged value and the gradient
/// slices equal the unsharded <see cref="DistillationLoss"/> on teacher and student logits (to rounding).
/// </summary>
/// <remarks>
/// <para><b>Protocol</b> (in one process: call it per shard; across processes: exchange the statistics).</para>
/// <list type="number">
/// <item><description><see cref="ComputeStatistics"/> on each shard → <see cref="ShardStatistics.Merge"/> (Megatron's
/// all-reduce of MAX and SUM, in one mergeable object).</description></item>
/// <item><description>Only when <see cref="NeedsTermSums"/> (every divergence except forward KL, soft CE and reverse KL,
/// and the parameters that reduce to them): <see cref="ComputeTermSums"/> on each shard with the merged statistics →
/// merge again (an all-reduce SUM).</description></item>
/// <item><description><see cref="ComputeGradient"/> on each shard with the merged statistics: its slice of
/// dL/ds, and the reduced value (the same on every shard); or <see cref="Evaluate"/> for the value alone.</description></item>
/// </list>
/// <para>Per row the value is the divergence of p = softmax(t/T) and q = softmax(s/T) over the whole vocabulary, with
/// the gradient, T², reductions (what they divide by: real rows, sequences, 1 or the caller's N), clamping at 0 and
/// infinities of <see cref="DistillationLoss"/>. Teacher and student are logits (−∞ for an impossible token); each
/// call takes the shard's slices, rows × shard length, row-major. The computation is the double-precision scalar
/// reference, O(rows × shard length) per call. Instances are immutable and thread-safe.</para>
/// </remarks>
public sealed class VocabularyShardedLoss
{
    private readonly Mode _mode;

    /// <summary>Creates the loss.</summary>
    /// <param name="divergence">The divergence.</param>
    /// <param name="temperature">T in [1e-6, 1e6], on both sides.</param>
    /// <param name="temperatureScaling">Whether value and gradient are multiplied by T².</param>
    /// <exception cref="ArgumentException"><paramref name="divergence"/> is <c>default</c>.</exception>
    /// <exception cref="ArgumentOutOfRangeException">The temperature or the scaling is out of range.</exception>
    public VocabularyShardedLoss(Divergence divergence, float temperature = 1f, TemperatureScaling temperatureScaling = TemperatureScaling.None)
    {
        if (divergence.Kind == DivergenceKind.Unspecified)
        {
            ThrowHelper.Argument(nameof(divergence), "The divergence is unspecified (default); use one of Divergence's members.");
        }

        ThrowHelper.CheckTemperature(temperature, nameof(temperature));
        if (temperatureScaling is not (TemperatureScaling.None or TemperatureScaling.Squared))
        {
            ThrowHelper.OutOfRange(nameof(temperatureScaling), temperatureScaling, "Unknown temperature scaling.");
        }

        Divergence = divergence;
        Temperature = temperature;
        TemperatureScaling = temperatureScaling;
        double x = divergence.Parameter;
        _mode = divergence.Kind switch
        {
            DivergenceKind.ForwardKL => Mode.ForwardKL,
            DivergenceKind.GeneralizedJsd when x == 0 => Mode.ForwardKL,
            DivergenceKind.SkewKL when x == 0 => Mode.ForwardKL,
            DivergenceKind.SoftCrossEntropy => Mode.SoftCrossEntropy,
            DivergenceKind.ReverseKL => Mode.ReverseKL,
            DivergenceKind.GeneralizedJsd when x == 1 => Mode.ReverseKL,
            DivergenceKind.SkewReverseKL when x == 0 => Mode.ReverseKL,
            _ => Mode.TermSums,
        };
    }

    private enum Mode
    {
        ForwardKL,
        SoftCrossEntropy,
        ReverseKL,
        TermSums,
    }

    /// <summary>The divergence.</summary>
    public Divergence Divergence { get; }

    /// <summary>The temperature T.</summary>
    public float Temperature { get; }

    /// <summary>Whether value and gradient are multiplied by T².</summary>
    public TemperatureScaling TemperatureScaling { get; }

    /// <summary>
    /// Whether the value needs the second round (<see cref="ComputeTermSums"/>): false for forward KL, soft CE and
    /// reverse KL, whose value follows from the first round's expectations; true for JSD(β), the skew KLs and TVD.
    /// </summary>
    public bool NeedsTermSums => _mode == Mode.TermSums;

    /// <summary>First round: the per-row statistics of one shard (maxima, Σexp and the expectation sums of its slice).</summary>
    /// <param name="shard">The slice of the vocabulary.</param>
    /// <param name="teacherLogits">Rows × shard length teacher logits.</param>
    /// <param name="studentLogits">Rows × shard length student logits.</param>
    /// <param name="layout">Optional sequence layout and padding mask (masked rows are never read); the same for every shard.</param>
    /// <returns>The shard's statistics.</returns>
    /// <exception cref="ArgumentException">The lengths differ or are not a multiple of the shard's length, the layout's row count differs, or a logit is NaN or +∞ (the message names the row and the vocabulary column).</exception>
    public ShardStatistics ComputeStatistics(VocabularyShard shard, ReadOnlySpan<float> teacherLogits, ReadOnlySpan<float> studentLogits, SequenceLayout? layout = null)
    {
        int rows = Rows(shard, teacherLogits, studentLogits, layout?.RowCount);
        int n = shard.Length;
        double invT = 1.0 / Temperature;
        var values = new double[rows * ShardStatistics.Fields];
        ReadOnlySpan<bool> mask = layout is null ? default : layout.Mask.Span;
        for (int r = 0; r < rows; r++)
        {
            Span<double> v = values.AsSpan(r * ShardStatistics.Fields, ShardStatistics.Fields);
            if (!mask.IsEmpty && !mask[r])
            {
                v[ShardStatistics.TeacherSum] = v[ShardStatistics.StudentSum] = 1; // a placeholder that merges without NaN; never read
                continue;
            }

            ReadOnlySpan<float> t = teacherLogits.Slice(r * n, n), s = studentLogits.Slice(r * n, n);
            double mt = Max(t, invT, r, shard, nameof(teacherLogits)), ms = Max(s, invT, r, shard, nameof(studentLogits));
            double zt = 0, zs = 0, a = 0, b = 0, c = 0, d = 0;
            for (int j = 0; j < n; j++)
            {
                double xt = t[j] * invT, xs = s[j] * invT;
                double et = double.IsNegativeInfinity(mt) ? 0 : Math.Exp(xt - mt), es = double.IsNegativeInfinity(ms) ? 0 : Math.Exp(xs - ms);
                zt += et;
                zs += es;
                if (et > 0)
                {
                    a += et * (xt - mt);
                    b += double.IsNegativeInfinity(xs) ? double.NegativeInfinity : et * (xs - ms);
                }

                if (es > 0)
                {
                    c += es * (xs - ms);
                    d += double.IsNegativeInfinity(xt) ? double.NegativeInfinity : es * (xt - mt);
                }
            }

            v[ShardStatistics.TeacherMax] = mt;
            v[ShardStatistics.TeacherSum] = zt;
            v[ShardStatistics.StudentMax] = ms;
            v[ShardStatistics.StudentSum] = zs;
            v[ShardStatistics.A] = a;
            v[ShardStatistics.B] = b;
            v[ShardStatistics.C] = c;
            v[ShardStatistics.D] = d;
        }

        return new ShardStatistics(values, rows, [shard], layout, hasTermSums: false);
    }

    /// <summary>
    /// Second round (only when <see cref="NeedsTermSums"/>): Σ_j term_j and Σ_j q_j g_j of the divergence over the shard's
    /// slice, with p and q normalised by the merged first-round statistics. Merge them with <see cref="ShardStatistics.Merge"/>.
    /// </summary>
    /// <param name="shard">The slice of the vocabulary.</param>
    /// <param name="teacherLogits">Rows × shard length teacher logits (the same as in the first round).</param>
    /// <param name="studentLogits">Rows × shard length student logits (the same as in the first round).</param>
    /// <param name="merged">The first-round statistics merged over the whole vocabulary.</param>
    /// <returns>The shard's term sums (with the merged normalisers).</returns>
    /// <exception cref="ArgumentNullException"><paramref name="merged"/> is null.</exception>
    /// <exception cref="ArgumentException">The statistics are not a merged first round covering the vocabulary from 0 past the shard, the lengths do not fit, or a row has no possible token.</exception>
    public ShardStatistics ComputeTermSums(VocabularyShard shard, ReadOnlySpan<float> teacherLogits, ReadOnlySpan<float> studentLogits, ShardStatistics merged)
    {
        CheckMerged(merged, shard, secondRound: false);
        Rows(shard, teacherLogits, studentLogits, merged.RowCount);
        var values = (double[])merged.Values.Clone();
        var pass = new ShardPass(teacherLogits, studentLogits, shard.Length, merged, 1.0 / Temperature, values, default, null);
        LossEngine.Dispatch<ShardPass, bool>(Divergence, ref pass);
        return new ShardStatistics(values, merged.RowCount, [shard], merged.Layout, hasTermSums: true);
    }

    /// <summary>The reduced value from merged statistics (every shard would return the same), without a gradient.</summary>
    /// <param name="merged">The merged statistics of the whole vocabulary: first round, or second round when <see cref="NeedsTermSums"/>.</param>
    /// <param name="reduction">How rows are combined (default <see cref="Reduction.MeanOverTokens"/>: ÷ real rows); not <see cref="Reduction.None"/>.</param>
    /// <returns>The value, the sum and the counts.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="merged"/> is null.</exception>
    /// <exception cref="ArgumentException">The statistics are incomplete (see above), <see cref="Reduction.None"/> was asked for, or a row has no possible token.</exception>
    public LossResult Evaluate(ShardStatistics merged, Reduction reduction = default)
    {
        CheckMerged(merged, null, NeedsTermSums);
        CheckReduction(reduction);
        return Reduce(merged, reduction, RowValues(merged));
    }

    /// <summary>
    /// Writes the shard's slice of d(reduced loss)/ds and returns the reduced value (the same on every shard). Per
    /// element dL/ds_j = (1/T)·(q_j g_j − q_j Σ_k q_k g_k) with the merged normalisers and sums — (q − p)/T for forward KL
    /// and soft CE — times T² when configured, ÷ the reduction's divisor; masked rows get zeros.
    /// </summary>
    /// <param name="shard">The slice of the vocabulary.</param>
    /// <param name="teacherLogits">Rows × shard length teacher logits (the same as for the statistics).</param>
    /// <param name="studentLogits">Rows × shard length student logits (the same as for the statistics).</param>
    /// <param name="merged">The merged statistics of the whole vocabulary: first round, or second round when <see cref="NeedsTermSums"/>.</param>
    /// <param name="studentGradient">Rows × shard length floats, overwritten with the gradient slice.</param>
    /// <param name="reduction">How rows are combined (default <see cref="Reduction.MeanOverTokens"/>); not <see cref="Reduction.None"/>.</param>
    /// <returns>The value, the sum and the counts.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="merged"/> is null.</exception>
    /// <exception cref="ArgumentException">The statistics are incomplete, the lengths do not fit, the gradient overlaps an input, <see cref="Reduction.None"/> was asked for, or a row has no possible token.</exception>
    public LossResult ComputeGradient(VocabularyShard shard, ReadOnlySpan<float> teacherLogits, ReadOnlySpan<float> studentLogits, ShardStatistics merged, Span<float> studentGradient, Reduction reduction = default)
    {
        CheckMerged(merged, shard, NeedsTermSums);
        CheckReduction(reduction);
        int rows = Rows(shard, teacherLogits, studentLogits, merged.RowCount);
        InputChecks.Output(studentGradient, rows * shard.Length, nameof(studentGradient), teacherLogits, studentLogits, "gradient");
        RowValue[] values = RowValues(merged);
        LossResult result = Reduce(merged, reduction, values);
        double divisor = Divisor(reduction, result);
        double scale = TemperatureScaling == TemperatureScaling.Squared ? (double)Temperature * Temperature : 1;
        var pass = new ShardPass(teacherLogits, studentLogits, shard.Length, merged, 1.0 / Temperature, null, studentGradient, values) { Coefficient = scale / divisor / Temperature };
        LossEngine.Dispatch<ShardPass, bool>(Divergence, ref pass);
        return result;
    }

    /// <summary>The row value and Σ q g of every real row, from merged statistics.</summary>
    private RowValue[] RowValues(ShardStatistics merged)
    {
        var rows = new RowValue[merged.RowCount];
        ReadOnlySpan<bool> mask = merged.Layout is null ? default : merged.Layout.Mask.Span;
        for (int r = 0; r < rows.Length; r++)
        {
            if (!mask.IsEmpty && !mask[r])
            {
                continue;
            }

            ReadOnlySpan<double> v = merged.Values.AsSpan(r * ShardStatistics.Fields, ShardStatistics.Fields);
            if (double.IsNegativeInfinity(v[ShardStatistics.TeacherMax]) || double.IsNegativeInfinity(v[ShardStatistics.StudentMax]))
            {
                string side = double.IsNegativeInfinity(v[ShardStatistics.TeacherMax]) ? "teacher" : "student";
                ThrowHelper.Argument(side == "teacher" ? "teacherLogits" : "studentLogits", ThrowHelper.Format($"The {side} row {r} has no possible token: every logit of every shard is −∞."));
            }

            double logZt = Math.Log(v[ShardStatistics.TeacherSum]), logZs = Math.Log(v[ShardStatistics.StudentSum]);
            double ePlogP = (v[ShardStatistics.A] / v[ShardStatistics.TeacherSum]) - logZt;
            double ePlogQ = (v[ShardStatistics.B] / v[ShardStatistics.TeacherSum]) - logZs;
            double eQlogQ = (v[ShardStatistics.C] / v[ShardStatistics.StudentSum]) - logZs;
            double eQlogP = (v[ShardStatistics.D] / v[ShardStatistics.StudentSum]) - logZt;
            (double value, double sumQg) = _mode switch
            {
                Mode.ForwardKL => (ePlogP - ePlogQ, -1.0),
                Mode.SoftCrossEntropy => (-ePlogQ, -1.0),
                Mode.ReverseKL => (eQlogQ - eQlogP, eQlogQ - eQlogP + 1),
                _ => (v[ShardStatistics.Terms], v[ShardStatistics.WeightedGradient]),
            };
            rows[r] = new RowValue
            {
                Real = true,
                Value = Divergence.IsDivergence ? Math.Max(value, 0) : value,
                SumQg = sumQg,
                Infinite = double.IsPositiveInfinity(value),
                LogZt = v[ShardStatistics.TeacherMax] + logZt,
                LogZs = v[ShardStatistics.StudentMax] + logZs,
            };
        }

        return rows;
    }

    private LossResult Reduce(ShardStatistics merged, Reduction reduction, RowValue[] values)
    {
        int tokens = 0, sequences = 0;
        double sum = 0;
        for (int r = 0; r < values.Length; r++)
        {
            tokens += values[r].Real ? 1 : 0;
            sum += values[r].Real ? values[r].Value : 0;
        }

        if (merged.Layout is { } layout)
        {
            ReadOnlySpan<int> offsets = layout.Offsets;
            for (int b = 0; b + 1 < offsets.Length; b++)
            {
                bool any = false;
                for (int r = offsets[b]; r < offsets[b + 1] && !any; r++)
                {
                    any = values[r].Real;
                }

                sequences += any ? 1 : 0;
            }
        }
        else
        {
            sequences = tokens;
        }

        sum *= TemperatureScaling == TemperatureScaling.Squared ? (double)Temperature * Temperature : 1;
        var counts = new LossResult(0, sum, tokens, sequences);
        double value = reduction.Kind == ReductionKind.Sum ? sum : tokens == 0 ? 0 : sum / Divisor(reduction, counts);
        return counts with { Value = value };
    }

    private static double Divisor(Reduction reduction, LossResult counts) => reduction.Kind switch
    {
        ReductionKind.MeanOverTokens => Math.Max(counts.TokenCount, 1),
        ReductionKind.MeanOverSequences => Math.Max(counts.SequenceCount, 1),
        ReductionKind.SumDividedBy => reduction.Divisor,
        _ => 1,
    };

    private static void CheckReduction(Reduction reduction)
    {
        if (reduction.Kind == ReductionKind.None)
        {
            ThrowHelper.Argument(nameof(reduction), "Reduction.None is not available for sharded losses; use Reduction.Sum and the per-row values of DistillationLoss if needed.");
        }
    }

    private static void CheckMerged(ShardStatistics merged, VocabularyShard? shard, bool secondRound)
    {
        ArgumentNullException.ThrowIfNull(merged);
        int end = merged.CoveredEnd();
        if (end < 0 || (shard is { } s && s.End > end))
        {
            ThrowHelper.Argument(nameof(merged), ThrowHelper.Format($"The statistics cover {string.Join(", ", merged.Shards)}; merge the statistics of every shard of the vocabulary (contiguous from 0{(shard is { } t ? ThrowHelper.Format($", past {t.End}") : string.Empty)}) first."));
        }

        if (merged.HasTermSums != secondRound)
        {
            ThrowHelper.Argument(nameof(merged), secondRound
                ? "This divergence needs the second round: merge the shards' ComputeTermSums results and pass those."
                : "Pass the merged first-round statistics (from ComputeStatistics) here.");
        }
    }

    private static int Rows(VocabularyShard shard, ReadOnlySpan<float> teacher, ReadOnlySpan<float> student, int? expectedRows)
    {
        if (shard.Length < 1)
        {
            ThrowHelper.Argument(nameof(shard), "The shard is uninitialised (default); create it with its constructor or VocabularyShard.Split.");
        }

        if (teacher.Length % shard.Length != 0)
        {
            ThrowHelper.Argument("teacherLogits", ThrowHelper.Format($"The teacher slice has {teacher.Length} values, not a multiple of the shard's length {shard.Length}."));
        }

        if (student.Length != teacher.Length)
        {
            ThrowHelper.Argument("studentLogits", ThrowHelper.Format($"The student slice has {student.Length} values and the teacher's {teacher.Length}; they must be the same."));
        }

        int rows = teacher.Length / shard.Length;
        if (expectedRows is { } expected && expected != rows)
        {
            ThrowHelper.Argument("teacherLogits", ThrowHelper.Format($"The slices hold {rows} rows of {shard.Length}, but {expected} rows are expected."));
        }

        return rows;
    }

    private static double Max(ReadOnlySpan<float> x, double invT, int row, VocabularyShard shard, string paramName)
    {
        double max = double.NegativeInfinity;
        for (int j = 0; j < x.Length; j++)
        {
            if (float.IsNaN(x[j]) || float.IsPositiveInfinity(x[j]))
            {
                ThrowHelper.Argument(paramName, ThrowHelper.Format($"The logit at row {row}, column {shard.Start + j} (shard {shard}, position {j}) is {(float.IsNaN(x[j]) ? "NaN" : "+∞")}; NaN and +∞ are not valid (use −∞ for an impossible token)."));
            }

            max = Math.Max(max, x[j] * invT);
        }

        return max;
    }

    /// <summary>What the gradient pass needs of a row.</summary>
    internal struct RowValue
    {
        public bool Real;
        public double Value;
        public double SumQg;
        public bool Infinite;
        public double LogZt;
        public double LogZs;
    }

    /// <summary>
    /// The per-element pass over a shard with merged normalisers: the second round's Σ term and Σ q g (into
    /// <c>termSums</c>), or the gradient slice (into <c>gradient</c>).
    /// </summary>
    private ref struct ShardPass(ReadOnlySpan<float> teacher, ReadOnlySpan<float> student, int width, ShardStatistics merged, double invT, double[]? termSums, Span<float> gradient, RowValue[]? values) : IDivergenceVisitor<bool>
    {
        private readonly ReadOnlySpan<float> _teacher = teacher;
        private readonly ReadOnlySpan<float> _student = student;
        private readonly Span<float> _gradient = gradient;

        public double Coefficient { get; init; }

        public readonly bool Visit<TOp>(TOp op)
            where TOp : struct, IDivergenceOp
        {
            ReadOnlySpan<bool> mask = merged.Layout is null ? default : merged.Layout.Mask.Span;
            for (int r = 0; r < merged.RowCount; r++)
            {
                ReadOnlySpan<double> v = merged.Values.AsSpan(r * ShardStatistics.Fields, ShardStatistics.Fields);
                bool real = mask.IsEmpty || mask[r];
                if (termSums is not null)
                {
                    termSums[(r * ShardStatistics.Fields) + ShardStatistics.Terms] = 0;
                    termSums[(r * ShardStatistics.Fields) + ShardStatistics.WeightedGradient] = 0;
                    if (!real)
                    {
                        continue;
                    }

                    double lseT = v[ShardStatistics.TeacherMax] + Math.Log(v[ShardStatistics.TeacherSum]);
                    double lseS = v[ShardStatistics.StudentMax] + Math.Log(v[ShardStatistics.StudentSum]);
                    double terms = 0, weighted = 0;
                    for (int j = 0; j < width; j++)
                    {
                        double logP = (_teacher[(r * width) + j] * invT) - lseT, logQ = (_student[(r * width) + j] * invT) - lseS;
                        terms += op.Element(Math.Exp(logP), Math.Exp(logQ), logP, logQ, out double qg);
                        weighted += qg;
                    }

                    termSums[(r * ShardStatistics.Fields) + ShardStatistics.Terms] = terms;
                    termSums[(r * ShardStatistics.Fields) + ShardStatistics.WeightedGradient] = weighted;
                    continue;
                }

                Span<float> g = _gradient.Slice(r * width, width);
                RowValue row = values![r];
                if (!row.Real)
                {
                    g.Clear();
                    continue;
                }

                for (int j = 0; j < width; j++)
                {
                    double logP = (_teacher[(r * width) + j] * invT) - row.LogZt, logQ = (_student[(r * width) + j] * invT) - row.LogZs;
                    double p = Math.Exp(logP), q = Math.Exp(logQ);
                    double d;
                    if (row.Infinite)
                    {
                        d = q - p;
                    }
                    else
                    {
                        op.Element(p, q, logP, logQ, out double qg);
                        d = qg - (q * row.SumQg);
                    }

                    g[j] = (float)(Coefficient * d);
                }
            }

            return true;
        }
    }
}
