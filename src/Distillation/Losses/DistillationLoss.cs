using System;
using Distillation.Internal;
using Distillation.Kernels;

namespace Distillation;

/// <summary>
/// A token-level distillation loss: a <see cref="Divergence"/> between the teacher's and the student's rows at
/// temperature T, with its exact gradient with respect to the student's logits, computed in one fused call.
/// </summary>
/// <remarks>
/// <para>Per real row (see <see cref="Reduction"/>): p = softmax(t/T), q = softmax(s/T), value L_row = D(p, q) as
/// listed on <see cref="Divergence"/>, gradient dL_row/ds. With <see cref="TemperatureScaling.Squared"/> both are
/// multiplied by T². The reduction then divides value and gradient alike.</para>
/// <para>Instances are immutable and thread-safe: many threads may call one instance at once. A call allocates
/// nothing in steady state on one thread (scratch is pooled, O(V) per thread).</para>
/// </remarks>
public sealed partial class DistillationLoss
{
    private readonly int _maxDegreeOfParallelism = Environment.ProcessorCount;

    /// <summary>Creates the loss.</summary>
    /// <param name="divergence">The divergence (see <see cref="Divergence"/>).</param>
    /// <param name="temperature">T in [1e-6, 1e6], applied to both teacher and student.</param>
    /// <param name="temperatureScaling">Whether value and gradient are multiplied by T² (default: no; see <see cref="TemperatureScaling"/>).</param>
    /// <exception cref="ArgumentException"><paramref name="divergence"/> is <c>default</c>.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="temperature"/> is outside [1e-6, 1e6] or NaN, or <paramref name="temperatureScaling"/> is not a defined value.</exception>
    public DistillationLoss(Divergence divergence, float temperature = 1f, TemperatureScaling temperatureScaling = TemperatureScaling.None)
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
    }

    /// <summary>The divergence computed.</summary>
    public Divergence Divergence { get; }

    /// <summary>The temperature T applied to both sides.</summary>
    public float Temperature { get; }

    /// <summary>Whether value and gradient are multiplied by T².</summary>
    public TemperatureScaling TemperatureScaling { get; }

    /// <summary>
    /// The most threads one call uses (default: the processor count). Rows are split into contiguous ranges; the
    /// result is bit-identical whatever the number. Calls too small to gain stay on the calling thread.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">The value is less than 1.</exception>
    public int MaxDegreeOfParallelism
    {
        get => _maxDegreeOfParallelism;
        init => _maxDegreeOfParallelism = ThrowHelper.CheckDegreeOfParallelism(value, nameof(MaxDegreeOfParallelism));
    }

    /// <summary>
    /// Computes the loss and writes its gradient with respect to the student's logits (or log-probabilities) into
    /// <paramref name="studentGradient"/>.
    /// </summary>
    /// <param name="teacher">The teacher's rows.</param>
    /// <param name="student">The student's rows: same vocabulary, same row count, same layout (or none).</param>
    /// <param name="studentGradient">Rows × V floats, overwritten with d(reduced loss)/ds; padded and ignored rows get zeros. Must not overlap the inputs.</param>
    /// <param name="reduction">How rows are combined (default <see cref="Reduction.MeanOverTokens"/>); the gradient is that of the reduced value.</param>
    /// <param name="labels">Optional labels: rows whose label is the ignore index are excluded (with the layout's padding mask, exclusion wins).</param>
    /// <param name="rowLosses">Per-row values before row weights (T² applied when configured, 0 for excluded rows): required with <see cref="Reduction.None"/>, optional otherwise.</param>
    /// <param name="rowWeights">Optional per-row weights w_r (finite, ≥ 0) multiplying each row's value and gradient; they do not change what the reduction divides by. A row of weight 0 is skipped (never read, value 0, zero gradient).</param>
    /// <returns>The value, the sum and the counts.</returns>
    /// <exception cref="ArgumentException">
    /// A distribution is default; the vocabularies, row counts or layouts differ; a buffer has the wrong length or
    /// overlaps an input; or a value is invalid (NaN, +∞, a negative probability, a probability row not summing to 1,
    /// a row with no possible token) — the message names the row and column. After a value error the gradient
    /// buffer's contents are unspecified; structural errors are reported before anything is written.
    /// </exception>
    /// <exception cref="ArgumentOutOfRangeException">A label is outside [0, V) and not the ignore index, or a row weight is negative, NaN or +∞.</exception>
    public LossResult Compute(TeacherDistribution teacher, StudentDistribution student, Span<float> studentGradient, Reduction reduction = default, TokenLabels labels = default, Span<float> rowLosses = default, ReadOnlySpan<float> rowWeights = default) =>
        ComputeCore(teacher, student, studentGradient, wantsGradient: true, reduction, labels, rowLosses, KernelPaths.Best, rowWeights);

    /// <summary>Computes the loss only (no gradient): the same value <see cref="Compute(TeacherDistribution, StudentDistribution, Span{float}, Reduction, TokenLabels, Span{float}, ReadOnlySpan{float})"/> returns.</summary>
    /// <param name="teacher">The teacher's rows.</param>
    /// <param name="student">The student's rows: same vocabulary, same row count, same layout (or none).</param>
    /// <param name="reduction">How rows are combined (default <see cref="Reduction.MeanOverTokens"/>).</param>
    /// <param name="labels">Optional labels: rows whose label is the ignore index are excluded.</param>
    /// <param name="rowLosses">Per-row values before row weights: required with <see cref="Reduction.None"/>, optional otherwise.</param>
    /// <param name="rowWeights">Optional per-row weights, as for <see cref="Compute(TeacherDistribution, StudentDistribution, Span{float}, Reduction, TokenLabels, Span{float}, ReadOnlySpan{float})"/>.</param>
    /// <returns>The value, the sum and the counts.</returns>
    /// <exception cref="ArgumentException">As for <see cref="Compute(TeacherDistribution, StudentDistribution, Span{float}, Reduction, TokenLabels, Span{float}, ReadOnlySpan{float})"/>.</exception>
    /// <exception cref="ArgumentOutOfRangeException">A label is outside [0, V) and not the ignore index, or a row weight is negative, NaN or +∞.</exception>
    public LossResult Evaluate(TeacherDistribution teacher, StudentDistribution student, Reduction reduction = default, TokenLabels labels = default, Span<float> rowLosses = default, ReadOnlySpan<float> rowWeights = default) =>
        ComputeCore(teacher, student, default, wantsGradient: false, reduction, labels, rowLosses, KernelPaths.Best, rowWeights);

    /// <summary>The full form, with the kernel path chosen (tests force each path through it).</summary>
    internal LossResult ComputeCore(TeacherDistribution teacher, StudentDistribution student, Span<float> studentGradient, bool wantsGradient, Reduction reduction, TokenLabels labels, Span<float> rowLosses, KernelPath path, ReadOnlySpan<float> rowWeights = default)
    {
        InputChecks.Pair(teacher, student, nameof(teacher), nameof(student));
        var call = LossCall.ForStudent(student, teacher.VocabularySize, teacher.RowCount, teacher.Layout, labels, studentGradient, wantsGradient, reduction, MaxDegreeOfParallelism, path) with
        {
            Teacher = teacher.Values.Span,
            TeacherHalf = teacher.HalfValues.Span,
            TeacherKind = teacher.Kind,
            RowLosses = rowLosses,
            RowWeights = rowWeights,
        };
        return LossEngine.Divergence(Divergence, Temperature, TemperatureScaling, call);
    }
}
