using System;
using Distillation.Internal;
using Distillation.Kernels;

namespace Distillation;

/// <summary>
/// The hard-label language-modelling loss on ground-truth labels, always at T = 1 on the student's raw logits
/// (as Liger-Kernel and Megatron do): L_row = −Σ_j target_j log softmax(s)_j with target = (1 − ε)·onehot(y) + ε/V,
/// i.e. −log softmax(s)_y when ε = 0 (PyTorch's <c>cross_entropy</c> with <c>label_smoothing = ε</c>).
/// Gradient: dL_row/ds = softmax(s) − target. Rows whose label is the ignore index are excluded.
/// </summary>
/// <remarks>
/// A row whose label token has logit −∞ has value +∞ (the true value) and the finite gradient softmax(s) − target;
/// with ε &gt; 0 any −∞ logit in the row makes the value +∞ likewise. Instances are immutable and thread-safe.
/// </remarks>
public sealed class LanguageModelLoss
{
    private readonly int _maxDegreeOfParallelism = Environment.ProcessorCount;

    /// <summary>Creates the loss.</summary>
    /// <param name="labelSmoothing">ε in [0, 1] (default 0).</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="labelSmoothing"/> is outside [0, 1] or NaN.</exception>
    public LanguageModelLoss(float labelSmoothing = 0f)
    {
        if (!(labelSmoothing >= 0f && labelSmoothing <= 1f))
        {
            ThrowHelper.OutOfRange(nameof(labelSmoothing), labelSmoothing, "Label smoothing must lie in [0, 1].");
        }

        LabelSmoothing = labelSmoothing;
    }

    /// <summary>The label smoothing ε.</summary>
    public float LabelSmoothing { get; }

    /// <summary>The most threads one call uses (default: the processor count); results do not depend on it.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The value is less than 1.</exception>
    public int MaxDegreeOfParallelism
    {
        get => _maxDegreeOfParallelism;
        init => _maxDegreeOfParallelism = ThrowHelper.CheckDegreeOfParallelism(value, nameof(MaxDegreeOfParallelism));
    }

    /// <summary>Computes the loss and writes its gradient with respect to the student's logits.</summary>
    /// <param name="student">The student's rows (logits or log-probabilities), with its layout's padding mask.</param>
    /// <param name="labels">One label per row, in [0, V) or the ignore index.</param>
    /// <param name="studentGradient">Rows × V floats, overwritten with d(reduced loss)/ds; excluded rows get zeros.</param>
    /// <param name="reduction">How rows are combined (default <see cref="Reduction.MeanOverTokens"/>).</param>
    /// <param name="rowLosses">Per-row values: required with <see cref="Reduction.None"/>, optional otherwise.</param>
    /// <returns>The value, the sum and the counts.</returns>
    /// <exception cref="ArgumentException">The student is default; the label count is not the row count; a buffer has the wrong length or overlaps the input; or a logit is NaN or +∞ (the message names row and column).</exception>
    /// <exception cref="ArgumentOutOfRangeException">A label is outside [0, V) and not the ignore index.</exception>
    public LossResult Compute(StudentDistribution student, TokenLabels labels, Span<float> studentGradient, Reduction reduction = default, Span<float> rowLosses = default) =>
        ComputeCore(student, labels, studentGradient, wantsGradient: true, reduction, rowLosses, KernelPaths.Best);

    /// <summary>Computes the loss only (no gradient).</summary>
    /// <param name="student">The student's rows.</param>
    /// <param name="labels">One label per row.</param>
    /// <param name="reduction">How rows are combined.</param>
    /// <param name="rowLosses">Per-row values: required with <see cref="Reduction.None"/>, optional otherwise.</param>
    /// <returns>The value, the sum and the counts.</returns>
    /// <exception cref="ArgumentException">As for <see cref="Compute"/>.</exception>
    /// <exception cref="ArgumentOutOfRangeException">A label is outside [0, V) and not the ignore index.</exception>
    public LossResult Evaluate(StudentDistribution student, TokenLabels labels, Reduction reduction = default, Span<float> rowLosses = default) =>
        ComputeCore(student, labels, default, wantsGradient: false, reduction, rowLosses, KernelPaths.Best);

    /// <summary>The full form, with the kernel path chosen.</summary>
    internal LossResult ComputeCore(StudentDistribution student, TokenLabels labels, Span<float> studentGradient, bool wantsGradient, Reduction reduction, Span<float> rowLosses, KernelPath path)
    {
        DistributionShape.CheckInitialized(student.VocabularySize, nameof(student));
        var call = LossCall.ForStudent(student, student.VocabularySize, student.RowCount, null, labels, studentGradient, wantsGradient, reduction, MaxDegreeOfParallelism, path) with
        {
            RowLosses = rowLosses,
        };
        return LossEngine.LanguageModel(LabelSmoothing, call);
    }
}
