using System;
using Distillation.Internal;

namespace Distillation;

/// <summary>
/// One block of consecutive token rows of a chunked loss (<see cref="ChunkedDistillationLoss"/>): its teacher (dense or
/// top-k), its student and optional labels. A cheap view; the buffers are the caller's.
/// </summary>
public readonly struct RowBlock
{
    /// <summary>A block with a dense teacher.</summary>
    /// <param name="teacher">The block's teacher rows.</param>
    /// <param name="student">The block's student rows (same rows and vocabulary).</param>
    /// <param name="labels">Optional labels of the block's rows (the ignore index excludes a row).</param>
    public RowBlock(TeacherDistribution teacher, StudentDistribution student, TokenLabels labels = default)
    {
        Teacher = teacher;
        Student = student;
        Labels = labels;
    }

    /// <summary>A block with a top-k teacher.</summary>
    /// <param name="teacher">The block's top-k teacher rows.</param>
    /// <param name="student">The block's student rows (same rows and vocabulary).</param>
    /// <param name="labels">Optional labels of the block's rows (the ignore index excludes a row).</param>
    public RowBlock(TopKTeacherDistribution teacher, StudentDistribution student, TokenLabels labels = default)
    {
        TopKTeacher = teacher;
        IsTopK = true;
        Student = student;
        Labels = labels;
    }

    /// <summary>The dense teacher (default when the block has a top-k teacher).</summary>
    public TeacherDistribution Teacher { get; }

    /// <summary>The top-k teacher (default when the block has a dense teacher).</summary>
    public TopKTeacherDistribution TopKTeacher { get; }

    /// <summary>Whether the teacher is <see cref="TopKTeacher"/>.</summary>
    public bool IsTopK { get; }

    /// <summary>The student's rows.</summary>
    public StudentDistribution Student { get; }

    /// <summary>The labels (empty for none).</summary>
    public TokenLabels Labels { get; }

    /// <summary>The number of rows.</summary>
    public int RowCount => Student.RowCount;

    /// <summary>
    /// The real rows (kept by the padding mask and not labelled with the ignore index) and the sequences with at least
    /// one real row of a block's layout and labels — what the reductions of one call over all blocks divide by. Reads
    /// no logits, so a trainer can count a whole corpus before its first chunk.
    /// </summary>
    /// <param name="rows">The block's row count.</param>
    /// <param name="layout">The block's layout, or null (each row its own sequence, none masked).</param>
    /// <param name="labels">The block's labels, or default for none.</param>
    /// <returns>The real rows and the sequences with at least one real row.</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="rows"/> is negative.</exception>
    /// <exception cref="ArgumentException">The layout or the labels do not have <paramref name="rows"/> rows.</exception>
    public static (int Tokens, int Sequences) CountRealRows(int rows, SequenceLayout? layout, TokenLabels labels = default)
    {
        if (rows < 0)
        {
            ThrowHelper.OutOfRange(nameof(rows), rows, "The row count must be 0 or more.");
        }

        if (layout is not null && layout.RowCount != rows)
        {
            ThrowHelper.Argument(nameof(layout), ThrowHelper.Format($"The layout has {layout.RowCount} rows, not {rows}."));
        }

        if (labels.Length != 0 && labels.Length != rows)
        {
            ThrowHelper.Argument(nameof(labels), ThrowHelper.Format($"There are {labels.Length} labels for {rows} rows."));
        }

        var selection = new Kernels.RowSelection(rows, layout is null ? default : layout.Mask.Span, labels.Ids.Span, labels.IgnoreIndex, layout);
        int tokens = 0, sequences = 0;
        if (layout is null)
        {
            for (int r = 0; r < rows; r++)
            {
                tokens += selection.IsReal(r) ? 1 : 0;
            }

            return (tokens, tokens);
        }

        ReadOnlySpan<int> offsets = layout.Offsets;
        for (int b = 0; b + 1 < offsets.Length; b++)
        {
            int before = tokens;
            for (int r = offsets[b]; r < offsets[b + 1]; r++)
            {
                tokens += selection.IsReal(r) ? 1 : 0;
            }

            sequences += tokens > before ? 1 : 0;
        }

        return (tokens, sequences);
    }
}
