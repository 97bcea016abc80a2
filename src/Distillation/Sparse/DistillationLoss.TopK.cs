using System;
using Distillation.Kernels;
using Distillation.Sparse;

namespace Distillation;

/// <summary>The distillation loss with a top-k teacher (see <see cref="TopKTeacherDistribution"/> and <see cref="ResidualMassPolicy"/>).</summary>
public sealed partial class DistillationLoss
{
    /// <summary>
    /// Computes the loss between a top-k teacher and the dense student, and writes its gradient with respect to the
    /// student's logits (or log-probabilities) into <paramref name="studentGradient"/>, in O(k + V) per row.
    /// </summary>
    /// <remarks>
    /// <para>The teacher's categories at T follow its <see cref="TopKTeacherDistribution.Residual"/> policy and generation
    /// temperature (see <see cref="ResidualMassPolicy"/>); q = softmax(s/T) over the whole vocabulary. The row value is
    /// the divergence of those distributions, with the gradient dL/ds_j = (1/T)·(q_j g_j − q_j Σ_b q_b g_b) over the
    /// categories b, g = ∂L/∂q — for forward KL and soft CE under <see cref="ResidualMassPolicy.Renormalize"/>, (q − p)/T.
    /// A row that keeps every id is the dense row (k = V gives the dense loss to rounding under every policy).
    /// T², reductions (what they divide by), masks, labels, row weights and threading are exactly as for a dense
    /// teacher (<see cref="Compute(TeacherDistribution, StudentDistribution, Span{float}, Reduction, TokenLabels, Span{float}, ReadOnlySpan{float})"/>).</para>
    /// <para>Divergences are clamped at 0 against rounding, except under <see cref="ResidualMassPolicy.MissingAsZero"/>
    /// where the teacher is not normalised and the value may be negative. A value is +∞ only where the true value is
    /// (forward KL where the teacher has mass the student lacks; reverse KL under <see cref="ResidualMassPolicy.Renormalize"/>
    /// or <see cref="ResidualMassPolicy.MissingAsZero"/> whenever the student has mass outside the kept ids); such a
    /// row gets the finite gradient (q − p)/T with p = 0 outside the kept ids.</para>
    /// </remarks>
    /// <param name="teacher">The top-k teacher; its ids index the student's vocabulary.</param>
    /// <param name="student">The student's rows: V = the teacher's vocabulary size, the same row count and layout (or none).</param>
    /// <param name="studentGradient">Rows × V floats, overwritten with d(reduced loss)/ds; excluded rows get zeros. Must not overlap the inputs.</param>
    /// <param name="reduction">How rows are combined (default <see cref="Reduction.MeanOverTokens"/>: ÷ real rows).</param>
    /// <param name="labels">Optional labels: rows whose label is the ignore index are excluded.</param>
    /// <param name="rowLosses">Per-row values before row weights: required with <see cref="Reduction.None"/>, optional otherwise.</param>
    /// <param name="rowWeights">Optional per-row weights (finite, ≥ 0) on value and gradient; a row of weight 0 is never read.</param>
    /// <returns>The value, the sum and the counts.</returns>
    /// <exception cref="ArgumentException">
    /// A distribution is default; the vocabularies, row counts or layouts differ; a buffer has the wrong length or
    /// overlaps an input; a teacher row repeats an id, holds a NaN or positive log-probability, has kept mass above
    /// 1 + <see cref="TopKTeacherDistribution.MassTolerance"/>, an empty slot that is not −∞, or (Renormalize) no mass;
    /// or a student value is NaN/+∞ — the message names the row and slot (or column).
    /// </exception>
    /// <exception cref="ArgumentOutOfRangeException">A teacher id is outside [0, V) and not −1 (row and slot in the message), a label is outside [0, V) and not the ignore index, or a row weight is negative, NaN or +∞.</exception>
    public LossResult Compute(TopKTeacherDistribution teacher, StudentDistribution student, Span<float> studentGradient, Reduction reduction = default, TokenLabels labels = default, Span<float> rowLosses = default, ReadOnlySpan<float> rowWeights = default) =>
        ComputeCore(teacher, student, studentGradient, wantsGradient: true, reduction, labels, rowLosses, KernelPaths.Best, rowWeights);

    /// <summary>Computes the loss with a top-k teacher only (no gradient): the same value the gradient form returns.</summary>
    /// <param name="teacher">The top-k teacher.</param>
    /// <param name="student">The student's rows.</param>
    /// <param name="reduction">How rows are combined (default <see cref="Reduction.MeanOverTokens"/>).</param>
    /// <param name="labels">Optional labels: rows whose label is the ignore index are excluded.</param>
    /// <param name="rowLosses">Per-row values before row weights: required with <see cref="Reduction.None"/>, optional otherwise.</param>
    /// <param name="rowWeights">Optional per-row weights.</param>
    /// <returns>The value, the sum and the counts.</returns>
    /// <exception cref="ArgumentException">As for the gradient form.</exception>
    /// <exception cref="ArgumentOutOfRangeException">As for the gradient form.</exception>
    public LossResult Evaluate(TopKTeacherDistribution teacher, StudentDistribution student, Reduction reduction = default, TokenLabels labels = default, Span<float> rowLosses = default, ReadOnlySpan<float> rowWeights = default) =>
        ComputeCore(teacher, student, default, wantsGradient: false, reduction, labels, rowLosses, KernelPaths.Best, rowWeights);

    /// <summary>The full form with a top-k teacher, with the kernel path chosen (tests force each path through it).</summary>
    internal LossResult ComputeCore(TopKTeacherDistribution teacher, StudentDistribution student, Span<float> studentGradient, bool wantsGradient, Reduction reduction, TokenLabels labels, Span<float> rowLosses, KernelPath path, ReadOnlySpan<float> rowWeights = default)
    {
        TopKEngine.Pair(teacher, student, nameof(teacher), nameof(student));
        var call = LossCall.ForStudent(student, teacher.VocabularySize, teacher.RowCount, teacher.Layout, labels, studentGradient, wantsGradient, reduction, MaxDegreeOfParallelism, path) with
        {
            RowLosses = rowLosses,
            RowWeights = rowWeights,
        };
        return TopKEngine.Divergence(Divergence, Temperature, TemperatureScaling, teacher, call);
    }
}
