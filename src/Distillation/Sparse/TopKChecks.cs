using System;
using System.Buffers;
using Distillation.Internal;
using Distillation.Kernels;

namespace Distillation.Sparse;

/// <summary>The value checks of a top-k teacher, made on the rows a loss will read before anything is computed.</summary>
internal static class TopKChecks
{
    /// <summary>
    /// Checks every row that <paramref name="read"/> keeps (real rows of non-zero weight): ids in [0, V) or −1 (empty, with −∞), distinct per row,
    /// log-probabilities not NaN and ≤ <see cref="TopKTeacherDistribution.MassTolerance"/>, Σ_kept p ≤ 1 + tolerance,
    /// and at least one kept token with mass under <see cref="ResidualMassPolicy.Renormalize"/>.
    /// </summary>
    public static void Values(in TopKTeacherDistribution teacher, in RowSelection read, string paramName) =>
        Values(teacher.Ids.Span, teacher.LogProbabilities.Span, teacher.HalfLogProbabilities.Span, teacher.K, teacher.VocabularySize, teacher.RowCount, teacher.Residual, read, paramName, paramName, rowOffset: 0);

    /// <summary>
    /// The same checks over raw spans (the teacher store's writer uses them): id errors name <paramref name="idsName"/>,
    /// value errors <paramref name="paramName"/>; <paramref name="rowOffset"/> is added to row numbers in messages.
    /// </summary>
    public static void Values(ReadOnlySpan<int> ids, ReadOnlySpan<float> values, ReadOnlySpan<Half> halves, int k, int vocabularySize, int rows, ResidualMassPolicy residual, in RowSelection read, string idsName, string paramName, long rowOffset)
    {
        int[] seen = ArrayPool<int>.Shared.Rent(vocabularySize);
        try
        {
            seen.AsSpan(0, vocabularySize).Fill(-1);
            for (int r = 0; r < rows; r++)
            {
                if (!read.IsReal(r) || (!read.Weights.IsEmpty && read.Weights[r] == 0))
                {
                    continue;
                }

                long shown = r + rowOffset;
                double max = double.NegativeInfinity;
                int first = r * k, kept = 0;
                for (int i = 0; i < k; i++)
                {
                    int at = first + i;
                    int id = ids[at];
                    float v = halves.IsEmpty ? values[at] : (float)halves[at];
                    if (float.IsNaN(v))
                    {
                        ThrowHelper.Argument(paramName, ThrowHelper.Format($"The top-k teacher's log-probability at row {shown}, slot {i} is NaN."));
                    }

                    if (id == TopKTeacherDistribution.EmptySlot)
                    {
                        if (!float.IsNegativeInfinity(v))
                        {
                            ThrowHelper.Argument(paramName, ThrowHelper.Format($"The top-k teacher's row {shown}, slot {i} is empty (id −1) but its log-probability is {v}; an empty slot must hold −∞."));
                        }

                        continue;
                    }

                    if ((uint)id >= (uint)vocabularySize)
                    {
                        ThrowHelper.OutOfRange(idsName, id, ThrowHelper.Format($"The top-k teacher's id at row {shown}, slot {i} is {id}: ids must lie in [0, {vocabularySize}) (or be −1 for an empty slot)."));
                    }

                    if (seen[id] >= first)
                    {
                        ThrowHelper.Argument(idsName, ThrowHelper.Format($"The top-k teacher's row {shown} repeats id {id} (slots {seen[id] - first} and {i}); ids must be distinct within a row."));
                    }

                    seen[id] = at;
                    kept++;
                    if (v > TopKTeacherDistribution.MassTolerance)
                    {
                        ThrowHelper.Argument(paramName, ThrowHelper.Format($"The top-k teacher's log-probability at row {shown}, slot {i} is {v}: log-probabilities must be ≤ 0 (tolerance {TopKTeacherDistribution.MassTolerance})."));
                    }

                    max = Math.Max(max, v);
                }

                if (double.IsNegativeInfinity(max))
                {
                    if (residual == ResidualMassPolicy.Renormalize || (residual == ResidualMassPolicy.RestBucket && kept == vocabularySize))
                    {
                        ThrowHelper.Argument(paramName, ThrowHelper.Format($"The top-k teacher's row {shown} has no possible token: every slot is −∞ or empty{(residual == ResidualMassPolicy.Renormalize ? " (Renormalize needs at least one kept token with mass)" : " and no token is left for the rest")}."));
                    }

                    continue;
                }

                double sum = 0;
                for (int i = 0; i < k; i++)
                {
                    if (ids[first + i] != TopKTeacherDistribution.EmptySlot)
                    {
                        sum += Math.Exp((halves.IsEmpty ? values[first + i] : (float)halves[first + i]) - max);
                    }
                }

                double mass = Math.Exp(max) * sum;
                if (mass > 1 + TopKTeacherDistribution.MassTolerance)
                {
                    ThrowHelper.Argument(paramName, ThrowHelper.Format($"The top-k teacher's kept probabilities of row {shown} sum to {mass:R}, more than 1 + {TopKTeacherDistribution.MassTolerance}."));
                }
            }
        }
        finally
        {
            ArrayPool<int>.Shared.Return(seen);
        }
    }

    /// <summary>The exception for a row a top-k kernel rejected (the teacher was checked before, so the student's).</summary>
    public static ArgumentException RowFailure(RowFailure failure, ReadOnlySpan<float> student, int vocabularySize, string teacherName, string studentName) =>
        failure.Status is RowStatus.StudentInvalidValue or RowStatus.StudentNoMass
            ? InputChecks.RowFailure(failure, default, DistributionKind.Logits, student.Slice(failure.Row * vocabularySize, vocabularySize), DistributionKind.Logits, teacherName, studentName)
            : new ArgumentException(ThrowHelper.Format($"The top-k teacher's row {failure.Row} has no usable mass."), teacherName);
}
