using System;
using Distillation.Internal;
using Distillation.Kernels;

namespace Distillation;

/// <summary>
/// One-line forms of the distillation losses over plain spans of logits: every row of
/// <c>teacherLogits</c> and <c>studentLogits</c> (row-major, V columns) is a real token and its own sequence.
/// Each returns the reduced value and writes d(value)/d(studentLogits) into <c>studentGradient</c>.
/// For padding masks, labels, other kinds of teacher input, per-row values or T² scaling use
/// <see cref="DistillationLoss"/>; both compute exactly the same function.
/// </summary>
public static class Losses
{
    /// <summary>Forward KL(P_t ‖ P_s) = Σ p (log p − log q) per row; gradient (q − p)/T per row, divided as the reduction says.</summary>
    /// <param name="teacherLogits">Rows × V teacher logits (−∞ = impossible token).</param>
    /// <param name="studentLogits">Rows × V student logits.</param>
    /// <param name="studentGradient">Rows × V output: the gradient of the returned value with respect to <paramref name="studentLogits"/>.</param>
    /// <param name="vocabularySize">V, at least 1.</param>
    /// <param name="temperature">T in [1e-6, 1e6].</param>
    /// <param name="reduction">Sum, mean over rows (default; with no layout <see cref="Reduction.MeanOverSequences"/> is the same) or a caller's divisor; not <see cref="Reduction.None"/>.</param>
    /// <returns>The reduced value (+∞ where some p &gt; 0 = q).</returns>
    /// <exception cref="ArgumentException">Lengths disagree or are not multiples of V, the gradient overlaps an input, <see cref="Reduction.None"/> was asked for, or a value is NaN/+∞ (row and column in the message).</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="vocabularySize"/> &lt; 1 or the temperature is outside [1e-6, 1e6] or NaN.</exception>
    public static float ForwardKL(ReadOnlySpan<float> teacherLogits, ReadOnlySpan<float> studentLogits, Span<float> studentGradient, int vocabularySize, float temperature = 1f, Reduction reduction = default) =>
        Compute(Divergence.ForwardKL, teacherLogits, studentLogits, studentGradient, vocabularySize, temperature, reduction);

    /// <summary>Reverse KL(P_s ‖ P_t) = Σ q (log q − log p) per row; gradient q ⊙ (log q − log p − L)/T per row.</summary>
    /// <param name="teacherLogits">Rows × V teacher logits.</param>
    /// <param name="studentLogits">Rows × V student logits.</param>
    /// <param name="studentGradient">Rows × V output gradient.</param>
    /// <param name="vocabularySize">V, at least 1.</param>
    /// <param name="temperature">T in [1e-6, 1e6].</param>
    /// <param name="reduction">Sum, mean over rows (default) or a caller's divisor; not <see cref="Reduction.None"/>.</param>
    /// <returns>The reduced value (+∞ where some q &gt; 0 = p).</returns>
    /// <exception cref="ArgumentException">As for <see cref="ForwardKL"/>.</exception>
    /// <exception cref="ArgumentOutOfRangeException">As for <see cref="ForwardKL"/>.</exception>
    public static float ReverseKL(ReadOnlySpan<float> teacherLogits, ReadOnlySpan<float> studentLogits, Span<float> studentGradient, int vocabularySize, float temperature = 1f, Reduction reduction = default) =>
        Compute(Divergence.ReverseKL, teacherLogits, studentLogits, studentGradient, vocabularySize, temperature, reduction);

    /// <summary>Soft-target cross-entropy −Σ p log q per row; gradient (q − p)/T per row.</summary>
    /// <param name="teacherLogits">Rows × V teacher logits.</param>
    /// <param name="studentLogits">Rows × V student logits.</param>
    /// <param name="studentGradient">Rows × V output gradient.</param>
    /// <param name="vocabularySize">V, at least 1.</param>
    /// <param name="temperature">T in [1e-6, 1e6].</param>
    /// <param name="reduction">Sum, mean over rows (default) or a caller's divisor; not <see cref="Reduction.None"/>.</param>
    /// <returns>The reduced value (+∞ where some p &gt; 0 = q).</returns>
    /// <exception cref="ArgumentException">As for <see cref="ForwardKL"/>.</exception>
    /// <exception cref="ArgumentOutOfRangeException">As for <see cref="ForwardKL"/>.</exception>
    public static float SoftCrossEntropy(ReadOnlySpan<float> teacherLogits, ReadOnlySpan<float> studentLogits, Span<float> studentGradient, int vocabularySize, float temperature = 1f, Reduction reduction = default) =>
        Compute(Divergence.SoftCrossEntropy, teacherLogits, studentLogits, studentGradient, vocabularySize, temperature, reduction);

    /// <summary>Total variation ½ Σ |p − q| per row; gradient q ⊙ (g − Σ q g)/T with g = ½ sign(q − p).</summary>
    /// <param name="teacherLogits">Rows × V teacher logits.</param>
    /// <param name="studentLogits">Rows × V student logits.</param>
    /// <param name="studentGradient">Rows × V output gradient.</param>
    /// <param name="vocabularySize">V, at least 1.</param>
    /// <param name="temperature">T in [1e-6, 1e6].</param>
    /// <param name="reduction">Sum, mean over rows (default) or a caller's divisor; not <see cref="Reduction.None"/>.</param>
    /// <returns>The reduced value, in [0, 1] per row.</returns>
    /// <exception cref="ArgumentException">As for <see cref="ForwardKL"/>.</exception>
    /// <exception cref="ArgumentOutOfRangeException">As for <see cref="ForwardKL"/>.</exception>
    public static float TotalVariation(ReadOnlySpan<float> teacherLogits, ReadOnlySpan<float> studentLogits, Span<float> studentGradient, int vocabularySize, float temperature = 1f, Reduction reduction = default) =>
        Compute(Divergence.TotalVariation, teacherLogits, studentLogits, studentGradient, vocabularySize, temperature, reduction);

    /// <summary>Generalized JSD(β) of GKD per row (β = 0: forward KL, β = 1: reverse KL; see <see cref="Divergence.GeneralizedJsd"/>).</summary>
    /// <param name="beta">β in [0, 1].</param>
    /// <param name="teacherLogits">Rows × V teacher logits.</param>
    /// <param name="studentLogits">Rows × V student logits.</param>
    /// <param name="studentGradient">Rows × V output gradient.</param>
    /// <param name="vocabularySize">V, at least 1.</param>
    /// <param name="temperature">T in [1e-6, 1e6].</param>
    /// <param name="reduction">Sum, mean over rows (default) or a caller's divisor; not <see cref="Reduction.None"/>.</param>
    /// <returns>The reduced value (finite for β in (0, 1)).</returns>
    /// <exception cref="ArgumentException">As for <see cref="ForwardKL"/>.</exception>
    /// <exception cref="ArgumentOutOfRangeException">β outside [0, 1], or as for <see cref="ForwardKL"/>.</exception>
    public static float GeneralizedJsd(double beta, ReadOnlySpan<float> teacherLogits, ReadOnlySpan<float> studentLogits, Span<float> studentGradient, int vocabularySize, float temperature = 1f, Reduction reduction = default) =>
        Compute(Divergence.GeneralizedJsd(beta), teacherLogits, studentLogits, studentGradient, vocabularySize, temperature, reduction);

    /// <summary>
    /// Any <see cref="Divergence"/> per row, reduced; the gradient of the returned value with respect to the student logits.
    /// </summary>
    /// <param name="divergence">The divergence.</param>
    /// <param name="teacherLogits">Rows × V teacher logits.</param>
    /// <param name="studentLogits">Rows × V student logits.</param>
    /// <param name="studentGradient">Rows × V output gradient.</param>
    /// <param name="vocabularySize">V, at least 1.</param>
    /// <param name="temperature">T in [1e-6, 1e6].</param>
    /// <param name="reduction">Sum, mean over rows (default; with no layout <see cref="Reduction.MeanOverSequences"/> is the same) or a caller's divisor; not <see cref="Reduction.None"/>.</param>
    /// <returns>The reduced value.</returns>
    /// <exception cref="ArgumentException">The divergence is default, or as for <see cref="ForwardKL"/>.</exception>
    /// <exception cref="ArgumentOutOfRangeException">As for <see cref="ForwardKL"/>.</exception>
    public static float Compute(Divergence divergence, ReadOnlySpan<float> teacherLogits, ReadOnlySpan<float> studentLogits, Span<float> studentGradient, int vocabularySize, float temperature = 1f, Reduction reduction = default)
    {
        ThrowHelper.CheckTemperature(temperature, nameof(temperature));
        if (reduction.Kind == ReductionKind.None)
        {
            ThrowHelper.Argument(nameof(reduction), "Reduction.None returns per-row values: use DistillationLoss.Compute with a row-loss buffer.");
        }

        int rows = DistributionShape.Rows(teacherLogits.Length, vocabularySize, null, nameof(teacherLogits));
        int studentRows = DistributionShape.Rows(studentLogits.Length, vocabularySize, null, nameof(studentLogits));
        if (rows != studentRows)
        {
            ThrowHelper.Argument(nameof(studentLogits), ThrowHelper.Format($"The teacher has {rows} rows and the student {studentRows}; they must be the same."));
        }

        var call = new LossCall
        {
            Teacher = teacherLogits,
            TeacherKind = DistributionKind.Logits,
            Student = studentLogits,
            VocabularySize = vocabularySize,
            Rows = rows,
            Gradient = studentGradient,
            WantsGradient = true,
            Reduction = reduction,
            MaxThreads = Environment.ProcessorCount,
            Path = KernelPaths.Best,
            TeacherName = nameof(teacherLogits),
            StudentName = nameof(studentLogits),
            GradientName = nameof(studentGradient),
            RowLossesName = "rowLosses",
            LabelsName = "labels",
        };
        return (float)LossEngine.Divergence(divergence, temperature, TemperatureScaling.None, call).Value;
    }
}
