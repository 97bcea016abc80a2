using System;
using Distillation.TorchSharp.Internal;
using TorchSharp;

namespace Distillation.TorchSharp;

/// <summary>
/// The losses of the core library on TorchSharp tensors, as TorchSharp autograd functions: each call runs the fused
/// kernel once over the tensors' storage, returns the loss as a float32 tensor and, when the student requires a
/// gradient (and grad mode is on), puts it on the autograd graph so that <c>loss.backward()</c> delivers the kernel's
/// gradient to the student — the saved gradient times grad_output, no second pass over the logits.
/// </summary>
/// <remarks>
/// <para><b>Tensors.</b> CPU float32 tensors of shape [..., V]: one row of V values per token, the last dimension the
/// vocabulary. Teacher and student have the same shape; labels (int64 or int32) and the padding mask (bool,
/// <see langword="true"/> = a real token) have the leading shape [...] or a flat [rows]. A non-contiguous tensor is
/// copied to a contiguous one for the call; inputs are never changed.</para>
/// <para><b>Sequences.</b> [B, T, V] (or [B, T, ..., V]) is B sequences of T rows, so
/// <see cref="Reduction.MeanOverSequences"/> divides by the sequences with a real row; [N, V] is N rows that are each
/// their own sequence (<c>batchmean</c> over rows).</para>
/// <para><b>Values.</b> A scalar float32 tensor (the reduced value), or with <see cref="Reduction.None"/> one value per
/// row in the leading shape [...], whose backward scales each row's gradient by its grad_output entry. The values and
/// the gradient are exactly those of the core call, see <see cref="DistillationLoss.Compute(TeacherDistribution, StudentDistribution, Span{float}, Reduction, TokenLabels, Span{float}, ReadOnlySpan{float})"/>.</para>
/// <para><b>Gradients.</b> First order only (the backward is not itself differentiable), with respect to the student
/// only: a teacher that requires a gradient is rejected. The saved gradient lives as long as the graph (the loss
/// tensor); dispose step tensors as usual in TorchSharp, e.g. with <c>torch.NewDisposeScope()</c> per step.</para>
/// </remarks>
public static class TensorLossExtensions
{
    /// <summary>
    /// The distillation loss of student logits against teacher logits: the drop-in for
    /// <c>kl_div(log_softmax(s / T), log_softmax(t / T), log_target: true, reduction: Sum) / rows</c> with
    /// <see cref="Divergence.ForwardKL"/> and the default reduction.
    /// </summary>
    /// <param name="loss">The loss (divergence, temperature, T² scaling, threads).</param>
    /// <param name="teacherLogits">[..., V] teacher logits, not requiring a gradient.</param>
    /// <param name="studentLogits">[..., V] student logits; the gradient flows back into them.</param>
    /// <param name="reduction">How rows are combined (default <see cref="Reduction.MeanOverTokens"/>).</param>
    /// <param name="labels">Optional labels [...]: rows whose label is <paramref name="ignoreIndex"/> are excluded.</param>
    /// <param name="paddingMask">Optional bool mask [...]: <see langword="false"/> rows are padding, never read.</param>
    /// <param name="ignoreIndex">The label that excludes a row (default −100).</param>
    /// <returns>The loss: a scalar, or one value per row with <see cref="Reduction.None"/>.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="loss"/>, <paramref name="teacherLogits"/> or <paramref name="studentLogits"/> is null.</exception>
    /// <exception cref="ArgumentException">A tensor is disposed, not on the CPU, of the wrong type or shape; the teacher requires a gradient; or a value is invalid (see <see cref="DistillationLoss.Compute(TeacherDistribution, StudentDistribution, Span{float}, Reduction, TokenLabels, Span{float}, ReadOnlySpan{float})"/>).</exception>
    /// <exception cref="ArgumentOutOfRangeException">A label is outside [0, V) and not the ignore index.</exception>
    public static torch.Tensor Compute(this DistillationLoss loss, torch.Tensor teacherLogits, torch.Tensor studentLogits, Reduction reduction = default, torch.Tensor? labels = null, torch.Tensor? paddingMask = null, int ignoreIndex = TokenLabels.DefaultIgnoreIndex)
    {
        ArgumentNullException.ThrowIfNull(teacherLogits);
        ArgumentNullException.ThrowIfNull(studentLogits);
        return Compute(loss, TeacherTensor.FromLogits(teacherLogits), StudentTensor.FromLogits(studentLogits), reduction, labels, paddingMask, ignoreIndex);
    }

    /// <summary>The distillation loss of a student against a teacher given as logits, log-probabilities or probabilities.</summary>
    /// <param name="loss">The loss (divergence, temperature, T² scaling, threads).</param>
    /// <param name="teacher">The teacher's rows, not requiring a gradient.</param>
    /// <param name="student">The student's rows; the gradient flows back into its tensor.</param>
    /// <param name="reduction">How rows are combined (default <see cref="Reduction.MeanOverTokens"/>).</param>
    /// <param name="labels">Optional labels [...]: rows whose label is <paramref name="ignoreIndex"/> are excluded.</param>
    /// <param name="paddingMask">Optional bool mask [...]: <see langword="false"/> rows are padding, never read.</param>
    /// <param name="ignoreIndex">The label that excludes a row (default −100).</param>
    /// <returns>The loss: a scalar, or one value per row with <see cref="Reduction.None"/>.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="loss"/> is null.</exception>
    /// <exception cref="ArgumentException">A tensor is default, disposed, not on the CPU, of the wrong type or shape; the teacher requires a gradient; or a value is invalid (see <see cref="DistillationLoss.Compute(TeacherDistribution, StudentDistribution, Span{float}, Reduction, TokenLabels, Span{float}, ReadOnlySpan{float})"/>).</exception>
    /// <exception cref="ArgumentOutOfRangeException">A label is outside [0, V) and not the ignore index.</exception>
    public static torch.Tensor Compute(this DistillationLoss loss, TeacherTensor teacher, StudentTensor student, Reduction reduction = default, torch.Tensor? labels = null, torch.Tensor? paddingMask = null, int ignoreIndex = TokenLabels.DefaultIgnoreIndex)
    {
        ArgumentNullException.ThrowIfNull(loss);
        using TensorRows rows = TensorRows.Create(teacher, student, labels, paddingMask, ignoreIndex);
        bool perRow = reduction.Kind == ReductionKind.None;
        Span<float> rowValues = default;
        torch.Tensor? rowLosses = perRow ? TensorRows.Empty(rows.LeadingShape, out rowValues) : null;
        torch.Tensor? gradient = null;
        try
        {
            LossResult result;
            if (WantsGradient(student))
            {
                gradient = TensorRows.Empty(rows.Shape, out Span<float> gradientValues);
                result = loss.Compute(rows.Teacher, rows.Student, gradientValues, reduction, rows.Labels, rowValues);
            }
            else
            {
                result = loss.Evaluate(rows.Teacher, rows.Student, reduction, rows.Labels, rowValues);
            }

            return Finish(student, rowLosses ?? torch.tensor((float)result.Value), gradient, perRow);
        }
        catch
        {
            rowLosses?.Dispose();
            gradient?.Dispose();
            throw;
        }
    }

    /// <summary>
    /// The hard-label loss −log softmax(s)_y (with label smoothing ε when configured) at T = 1: the drop-in for
    /// <c>cross_entropy(s, labels, ignore_index, label_smoothing: ε)</c> on [N, V] logits with the default reduction.
    /// </summary>
    /// <param name="loss">The loss (label smoothing, threads).</param>
    /// <param name="studentLogits">[..., V] student logits; the gradient flows back into them.</param>
    /// <param name="labels">Labels [...] (int64 or int32), in [0, V) or <paramref name="ignoreIndex"/>.</param>
    /// <param name="reduction">How rows are combined (default <see cref="Reduction.MeanOverTokens"/>: over non-ignored rows).</param>
    /// <param name="paddingMask">Optional bool mask [...]: <see langword="false"/> rows are padding, never read.</param>
    /// <param name="ignoreIndex">The label that excludes a row (default −100).</param>
    /// <returns>The loss: a scalar, or one value per row with <see cref="Reduction.None"/>.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="loss"/>, <paramref name="studentLogits"/> or <paramref name="labels"/> is null.</exception>
    /// <exception cref="ArgumentException">A tensor is disposed, not on the CPU, of the wrong type or shape, or a logit is NaN or +∞ (see <see cref="LanguageModelLoss.Compute"/>).</exception>
    /// <exception cref="ArgumentOutOfRangeException">A label is outside [0, V) and not the ignore index.</exception>
    public static torch.Tensor Compute(this LanguageModelLoss loss, torch.Tensor studentLogits, torch.Tensor labels, Reduction reduction = default, torch.Tensor? paddingMask = null, int ignoreIndex = TokenLabels.DefaultIgnoreIndex)
    {
        ArgumentNullException.ThrowIfNull(studentLogits);
        return Compute(loss, StudentTensor.FromLogits(studentLogits), labels, reduction, paddingMask, ignoreIndex);
    }

    /// <summary>The hard-label loss of a student given as logits or log-probabilities.</summary>
    /// <param name="loss">The loss (label smoothing, threads).</param>
    /// <param name="student">The student's rows; the gradient flows back into its tensor.</param>
    /// <param name="labels">Labels [...] (int64 or int32), in [0, V) or <paramref name="ignoreIndex"/>.</param>
    /// <param name="reduction">How rows are combined (default <see cref="Reduction.MeanOverTokens"/>: over non-ignored rows).</param>
    /// <param name="paddingMask">Optional bool mask [...]: <see langword="false"/> rows are padding, never read.</param>
    /// <param name="ignoreIndex">The label that excludes a row (default −100).</param>
    /// <returns>The loss: a scalar, or one value per row with <see cref="Reduction.None"/>.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="loss"/> or <paramref name="labels"/> is null.</exception>
    /// <exception cref="ArgumentException">A tensor is default, disposed, not on the CPU, of the wrong type or shape, or a logit is NaN or +∞.</exception>
    /// <exception cref="ArgumentOutOfRangeException">A label is outside [0, V) and not the ignore index.</exception>
    public static torch.Tensor Compute(this LanguageModelLoss loss, StudentTensor student, torch.Tensor labels, Reduction reduction = default, torch.Tensor? paddingMask = null, int ignoreIndex = TokenLabels.DefaultIgnoreIndex)
    {
        ArgumentNullException.ThrowIfNull(loss);
        ArgumentNullException.ThrowIfNull(labels);
        using TensorRows rows = TensorRows.Create(null, student, labels, paddingMask, ignoreIndex);
        bool perRow = reduction.Kind == ReductionKind.None;
        Span<float> rowValues = default;
        torch.Tensor? rowLosses = perRow ? TensorRows.Empty(rows.LeadingShape, out rowValues) : null;
        torch.Tensor? gradient = null;
        try
        {
            LossResult result;
            if (WantsGradient(student))
            {
                gradient = TensorRows.Empty(rows.Shape, out Span<float> gradientValues);
                result = loss.Compute(rows.Student, rows.Labels, gradientValues, reduction, rowValues);
            }
            else
            {
                result = loss.Evaluate(rows.Student, rows.Labels, reduction, rowValues);
            }

            return Finish(student, rowLosses ?? torch.tensor((float)result.Value), gradient, perRow);
        }
        catch
        {
            rowLosses?.Dispose();
            gradient?.Dispose();
            throw;
        }
    }

    /// <summary>
    /// The distillation objective λ·L_KD + (1 − λ)·L_LM (or L_LM + λ·L_KD) at <paramref name="step"/> on logits, both
    /// terms from one fused pass: the drop-in for
    /// <c>λ·T²·kl_div(log_softmax(s / T), log_softmax(t / T), log_target: true, reduction: Sum) / rows + (1 − λ)·cross_entropy(s, labels)</c>
    /// with the default options and no ignored labels.
    /// </summary>
    /// <param name="objective">The objective (divergence, temperature, λ schedule, form, token rule, threads).</param>
    /// <param name="teacherLogits">[..., V] teacher logits, not requiring a gradient.</param>
    /// <param name="studentLogits">[..., V] student logits; the gradient flows back into them.</param>
    /// <param name="labels">Labels [...] (int64 or int32): the ignore index excludes a row from both terms.</param>
    /// <param name="step">The training step (0 or more) at which λ is read from the schedule.</param>
    /// <param name="reduction">How rows are combined, the same for both terms (default mean over tokens; not <see cref="Reduction.None"/>).</param>
    /// <param name="paddingMask">Optional bool mask [...]: <see langword="false"/> rows are padding, never read.</param>
    /// <param name="ignoreIndex">The label that excludes a row (default −100).</param>
    /// <returns>The objective's total as a scalar tensor.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="objective"/>, <paramref name="teacherLogits"/>, <paramref name="studentLogits"/> or <paramref name="labels"/> is null.</exception>
    /// <exception cref="ArgumentException">A tensor is disposed, not on the CPU, of the wrong type or shape; the teacher requires a gradient; <see cref="Reduction.None"/> was asked for; or a value is invalid.</exception>
    /// <exception cref="ArgumentOutOfRangeException">A label is outside [0, V) and not the ignore index, or <paramref name="step"/> is negative.</exception>
    public static torch.Tensor Compute(this DistillationObjective objective, torch.Tensor teacherLogits, torch.Tensor studentLogits, torch.Tensor labels, long step, Reduction reduction = default, torch.Tensor? paddingMask = null, int ignoreIndex = TokenLabels.DefaultIgnoreIndex)
    {
        ArgumentNullException.ThrowIfNull(teacherLogits);
        ArgumentNullException.ThrowIfNull(studentLogits);
        return Compute(objective, TeacherTensor.FromLogits(teacherLogits), StudentTensor.FromLogits(studentLogits), labels, step, out _, reduction, paddingMask, ignoreIndex);
    }

    /// <summary>
    /// The distillation objective at <paramref name="step"/>, returning also its parts, λ, the counts and (when asked)
    /// the metrics, ready to log.
    /// </summary>
    /// <param name="objective">The objective (divergence, temperature, λ schedule, form, token rule, threads).</param>
    /// <param name="teacher">The teacher's rows, not requiring a gradient.</param>
    /// <param name="student">The student's rows; the gradient flows back into its tensor.</param>
    /// <param name="labels">Labels [...] (int64 or int32): the ignore index excludes a row from both terms.</param>
    /// <param name="step">The training step (0 or more) at which λ is read from the schedule.</param>
    /// <param name="result">The total, each term, λ, the counts and the metrics of the call.</param>
    /// <param name="reduction">How rows are combined, the same for both terms (default mean over tokens; not <see cref="Reduction.None"/>).</param>
    /// <param name="paddingMask">Optional bool mask [...]: <see langword="false"/> rows are padding, never read.</param>
    /// <param name="ignoreIndex">The label that excludes a row (default −100).</param>
    /// <param name="computeMetrics">Whether to compute <see cref="ObjectiveMetrics"/> (two more passes over the rows).</param>
    /// <returns>The objective's total as a scalar tensor.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="objective"/> or <paramref name="labels"/> is null.</exception>
    /// <exception cref="ArgumentException">A tensor is default, disposed, not on the CPU, of the wrong type or shape; the teacher requires a gradient; <see cref="Reduction.None"/> was asked for; or a value is invalid.</exception>
    /// <exception cref="ArgumentOutOfRangeException">A label is outside [0, V) and not the ignore index, or <paramref name="step"/> is negative.</exception>
    public static torch.Tensor Compute(this DistillationObjective objective, TeacherTensor teacher, StudentTensor student, torch.Tensor labels, long step, out ObjectiveResult result, Reduction reduction = default, torch.Tensor? paddingMask = null, int ignoreIndex = TokenLabels.DefaultIgnoreIndex, bool computeMetrics = false)
    {
        ArgumentNullException.ThrowIfNull(objective);
        ArgumentNullException.ThrowIfNull(labels);
        using TensorRows rows = TensorRows.Create(teacher, student, labels, paddingMask, ignoreIndex);
        torch.Tensor gradient = TensorRows.Empty(rows.Shape, out Span<float> gradientValues);
        try
        {
            // The objective always writes its gradient; without a graph to feed it is simply dropped.
            result = objective.Compute(rows.Teacher, rows.Student, rows.Labels, gradientValues, step, reduction, computeMetrics);
            if (!WantsGradient(student))
            {
                gradient.Dispose();
                return torch.tensor((float)result.Total);
            }

            return Finish(student, torch.tensor((float)result.Total), gradient, perRow: false);
        }
        catch
        {
            gradient.Dispose();
            throw;
        }
    }

    private static bool WantsGradient(StudentTensor student) => torch.is_grad_enabled() && student.Values.requires_grad;

    private static torch.Tensor Finish(StudentTensor student, torch.Tensor output, torch.Tensor? gradient, bool perRow) =>
        gradient is null ? output : FusedLossFunction.Attach(student.Values, output, gradient, perRow);
}
