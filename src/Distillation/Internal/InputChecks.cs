using System;
using Distillation.Kernels;

namespace Distillation.Internal;

/// <summary>Structural checks made before anything is written, and the messages for rows a kernel rejected.</summary>
internal static class InputChecks
{
    public static void Labels(TokenLabels labels, int rows, int vocabularySize, string paramName)
    {
        if (labels.Length != rows)
        {
            ThrowHelper.Argument(paramName, ThrowHelper.Format($"There are {labels.Length} labels for {rows} rows."));
        }

        if ((uint)labels.IgnoreIndex < (uint)vocabularySize)
        {
            ThrowHelper.OutOfRange(paramName, labels.IgnoreIndex, ThrowHelper.Format($"The ignore index {labels.IgnoreIndex} is a token id of this vocabulary [0, {vocabularySize}); choose one outside it (PyTorch's −100 is the default)."));
        }

        ReadOnlySpan<int> ids = labels.Ids.Span;
        for (int r = 0; r < ids.Length; r++)
        {
            if (ids[r] != labels.IgnoreIndex && (uint)ids[r] >= (uint)vocabularySize)
            {
                ThrowHelper.OutOfRange(paramName, ids[r], ThrowHelper.Format($"The label of row {r} is {ids[r]}: labels must lie in [0, {vocabularySize}) or equal the ignore index {labels.IgnoreIndex}."));
            }
        }
    }

    /// <summary>The failing row of the teacher, widened to float when it is stored as Half (that row only).</summary>
    public static ReadOnlySpan<float> TeacherRowForMessage(in LossCall call, RowFailure failure)
    {
        int v = call.VocabularySize;
        if (call.TeacherHalf.IsEmpty)
        {
            return call.Teacher.IsEmpty ? default : call.Teacher.Slice(failure.Row * v, v);
        }

        var widened = new float[v];
        System.Numerics.Tensors.TensorPrimitives.ConvertToSingle(call.TeacherHalf.Slice(failure.Row * v, v), widened);
        return widened;
    }

    public static void Output(Span<float> output, int expected, string paramName, ReadOnlySpan<float> teacher, ReadOnlySpan<float> student, string what, ReadOnlySpan<Half> teacherHalf = default)
    {
        if (output.Length != expected)
        {
            ThrowHelper.Argument(paramName, ThrowHelper.Format($"The {what} buffer has {output.Length} entries; it must have exactly {expected}."));
        }

        if (output.Overlaps(teacher) || output.Overlaps(student) || System.Runtime.InteropServices.MemoryMarshal.AsBytes(output).Overlaps(System.Runtime.InteropServices.MemoryMarshal.AsBytes(teacherHalf)))
        {
            ThrowHelper.Argument(paramName, ThrowHelper.Format($"The {what} buffer overlaps an input buffer; inputs are never overwritten, so give it its own memory."));
        }
    }

    public static void RowLosses(Span<float> rowLosses, Reduction reduction, int rows, Span<float> gradient, ReadOnlySpan<float> teacher, ReadOnlySpan<float> student, string paramName)
    {
        if (reduction.Kind == ReductionKind.None && rowLosses.Length != rows)
        {
            ThrowHelper.Argument(paramName, ThrowHelper.Format($"Reduction.None writes one value per row: the row-loss buffer must have {rows} entries, not {rowLosses.Length}."));
        }

        if (!rowLosses.IsEmpty)
        {
            Output(rowLosses, rows, paramName, teacher, student, "row-loss");
            if (rowLosses.Overlaps(gradient))
            {
                ThrowHelper.Argument(paramName, "The row-loss buffer overlaps the gradient buffer.");
            }
        }
    }

    public static void RowWeights(ReadOnlySpan<float> weights, int rows, string paramName)
    {
        if (weights.IsEmpty)
        {
            return;
        }

        if (weights.Length != rows)
        {
            ThrowHelper.Argument(paramName, ThrowHelper.Format($"There are {weights.Length} row weights for {rows} rows."));
        }

        for (int r = 0; r < weights.Length; r++)
        {
            if (!(weights[r] >= 0) || float.IsPositiveInfinity(weights[r]))
            {
                ThrowHelper.OutOfRange(paramName, weights[r], ThrowHelper.Format($"The weight of row {r} is {weights[r]}; row weights must be finite and ≥ 0."));
            }
        }
    }

    /// <summary>Both distributions initialised, with the same vocabulary, row count and layout.</summary>
    public static void Pair(TeacherDistribution teacher, StudentDistribution student, string teacherName, string studentName)
    {
        DistributionShape.CheckInitialized(teacher.VocabularySize, teacherName);
        DistributionShape.CheckInitialized(student.VocabularySize, studentName);
        if (teacher.VocabularySize != student.VocabularySize)
        {
            ThrowHelper.Argument(studentName, ThrowHelper.Format($"The teacher's vocabulary has {teacher.VocabularySize} tokens and the student's {student.VocabularySize}; they must be the same."));
        }

        if (teacher.RowCount != student.RowCount)
        {
            ThrowHelper.Argument(studentName, ThrowHelper.Format($"The teacher has {teacher.RowCount} rows and the student {student.RowCount}; they must be the same."));
        }

        Layouts(teacher.Layout, student.Layout, studentName);
    }

    public static void Layouts(SequenceLayout? teacherLayout, SequenceLayout? studentLayout, string paramName)
    {
        if (teacherLayout is null || studentLayout is null || ReferenceEquals(teacherLayout, studentLayout))
        {
            return;
        }

        if (!teacherLayout.Offsets.SequenceEqual(studentLayout.Offsets) || !teacherLayout.Mask.Span.SequenceEqual(studentLayout.Mask.Span))
        {
            ThrowHelper.Argument(paramName, "The teacher and student have different sequence layouts; give both the same layout (or one of them none).");
        }
    }

    /// <summary>The exception for a row a kernel rejected, with the column of the offending value where there is one.</summary>
    public static ArgumentException RowFailure(RowFailure failure, ReadOnlySpan<float> teacherRow, DistributionKind teacherKind, ReadOnlySpan<float> studentRow, DistributionKind studentKind, string teacherName, string studentName)
    {
        int r = failure.Row;
        bool isTeacher = failure.Status is RowStatus.TeacherInvalidValue or RowStatus.TeacherNoMass or RowStatus.TeacherBadSum;
        ReadOnlySpan<float> row = isTeacher ? teacherRow : studentRow;
        DistributionKind kind = isTeacher ? teacherKind : studentKind;
        string name = isTeacher ? teacherName : studentName;
        string side = isTeacher ? "teacher" : "student";
        string values = kind == DistributionKind.Probabilities ? "probabilities" : kind == DistributionKind.LogProbabilities ? "log-probabilities" : "logits";
        // A NaN or +∞ is reported as such whatever the kernel concluded first (a hardware max may hide a NaN).
        RowStatus status = failure.Status;
        foreach (float v in row)
        {
            if (float.IsNaN(v) || float.IsPositiveInfinity(v))
            {
                status = isTeacher ? RowStatus.TeacherInvalidValue : RowStatus.StudentInvalidValue;
                break;
            }
        }

        switch (status)
        {
            case RowStatus.TeacherInvalidValue or RowStatus.StudentInvalidValue:
                for (int j = 0; j < row.Length; j++)
                {
                    float v = row[j];
                    string? what = float.IsNaN(v) ? "NaN" : float.IsPositiveInfinity(v) ? "+∞"
                        : kind == DistributionKind.Probabilities && v < 0 ? ThrowHelper.Format($"negative ({v})") : null;
                    if (what is not null)
                    {
                        return new ArgumentException(ThrowHelper.Format($"The {side} {values} at row {r}, column {j} is {what}; NaN and +∞ are not valid (use −∞ for an impossible token)."), name);
                    }
                }

                return new ArgumentException(ThrowHelper.Format($"The {side} {values} of row {r} sum to +∞."), name);
            case RowStatus.TeacherNoMass or RowStatus.StudentNoMass:
                return new ArgumentException(ThrowHelper.Format($"The {side} row {r} has no possible token: every value is {(kind == DistributionKind.Probabilities ? "0" : "−∞")}."), name);
            default:
                double sum = 0;
                foreach (float v in row)
                {
                    sum += v;
                }

                return new ArgumentException(ThrowHelper.Format($"The {side} probabilities of row {r} sum to {sum:R}, not 1 (tolerance {TeacherDistribution.ProbabilitySumTolerance})."), name);
        }
    }
}
