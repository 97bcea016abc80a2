using System;
using System.Buffers;
using Distillation.Internal;
using Distillation.Kernels;

namespace Distillation;

/// <summary>
/// Sequence-level distillation on sequence log-probabilities: the exact, N-best, Monte-Carlo and importance-sampled
/// forms of −Σ_y P_t(y|x) log P_s(y|x'), and the student's sequence log-probabilities from its per-token logits.
/// </summary>
/// <remarks>
/// The gradient with respect to each candidate's student log-probability is ∂L/∂b_k = −w_k (for CE and KL alike);
/// through the tokens of candidate k computed at temperature T, ∂b_k/∂s_n = (onehot(y_n) − softmax(s_n/T))/T.
/// <see cref="SequenceDistillationLoss"/> applies that chain rule for you.
/// </remarks>
public static class SequenceLosses
{
    /// <summary>The tolerance on Σ e^{a_k} ≤ 1 for the exact form.</summary>
    public const double TeacherMassTolerance = 1e-6;

    /// <summary>
    /// The sequence-level losses from teacher and student sequence log-probabilities, and ∂L/∂b_k = −w_k.
    /// </summary>
    /// <param name="estimator">How the candidates were obtained (see <see cref="SequenceEstimator"/>).</param>
    /// <param name="teacherLogProbabilities">a_k = log P_t(y_k|x): each ≤ 0 (−∞ allowed), none NaN.</param>
    /// <param name="studentLogProbabilities">b_k = log P_s(y_k|x'): each ≤ 0 (−∞ allowed), none NaN.</param>
    /// <param name="studentGradient">K entries, overwritten with ∂L/∂b_k (or empty for none).</param>
    /// <param name="proposalLogProbabilities">r_k = log Q(y_k) for <see cref="SequenceEstimator.ImportanceSampled"/>; empty otherwise.</param>
    /// <returns>CE, KL, the teacher entropy and the candidate count.</returns>
    /// <exception cref="ArgumentException">Lengths differ; a value is NaN or +∞ (or above 0 beyond rounding); the exact form's teacher mass exceeds 1; a proposal is missing or given when not used; or every candidate has teacher (or proposal) weight 0 where weights are normalised.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="estimator"/> is not defined.</exception>
    public static SequenceLossResult FromLogProbabilities(SequenceEstimator estimator, ReadOnlySpan<double> teacherLogProbabilities, ReadOnlySpan<double> studentLogProbabilities, Span<double> studentGradient = default, ReadOnlySpan<double> proposalLogProbabilities = default)
    {
        int k = teacherLogProbabilities.Length;
        if (studentLogProbabilities.Length != k)
        {
            ThrowHelper.Argument(nameof(studentLogProbabilities), ThrowHelper.Format($"There are {k} teacher and {studentLogProbabilities.Length} student log-probabilities; there must be one of each per candidate."));
        }

        if (!studentGradient.IsEmpty && studentGradient.Length != k)
        {
            ThrowHelper.Argument(nameof(studentGradient), ThrowHelper.Format($"The gradient has {studentGradient.Length} entries for {k} candidates."));
        }

        CheckLogProbabilities(studentLogProbabilities, nameof(studentLogProbabilities));
        double[] rented = ArrayPool<double>.Shared.Rent(Math.Max(k, 1));
        try
        {
            Span<double> w = rented.AsSpan(0, k);
            double mass = Weights(estimator, teacherLogProbabilities, proposalLogProbabilities, w, nameof(teacherLogProbabilities), nameof(proposalLogProbabilities));
            double ce = 0, kl = 0, entropy = 0;
            for (int i = 0; i < k; i++)
            {
                if (w[i] == 0)
                {
                    continue; // a candidate of weight 0 is skipped, so −∞ log-probabilities never give 0 · ∞
                }

                double a = teacherLogProbabilities[i], b = studentLogProbabilities[i];
                double logW = estimator == SequenceEstimator.NBest ? Math.Log(w[i]) : a;
                ce -= w[i] * b;
                kl += w[i] * (logW - b);
                entropy -= w[i] * logW;
            }

            for (int i = 0; i < studentGradient.Length; i++)
            {
                studentGradient[i] = -w[i];
            }

            // KL is a divergence for N-best, and for Exact when the candidates carry all the teacher's mass (the whole output
            // space): rounding below 0 (the student's log-probabilities come from float logits) is clamped to 0, as the
            // token-level divergences are. An Exact sum over a smaller set is a partial sum and is returned as it is.
            bool divergence = estimator == SequenceEstimator.NBest || (estimator == SequenceEstimator.Exact && Math.Abs(mass - 1) <= TeacherMassTolerance);
            return new SequenceLossResult(ce, divergence ? Math.Max(kl, 0) : kl, entropy, k, mass);
        }
        finally
        {
            ArrayPool<double>.Shared.Return(rented);
        }
    }

    /// <summary>
    /// Each sequence's student log-probability at temperature T, b = Σ_n log softmax(s_n/T)[y_n], from its per-token
    /// logit rows (teacher forcing): sequence k owns the rows of <see cref="SequenceLayout"/> sequence k.
    /// </summary>
    /// <param name="student">The candidates' rows, with a layout whose sequences are the candidates (padding rows are skipped).</param>
    /// <param name="tokens">The token each row predicts; rows whose token is the ignore index are skipped.</param>
    /// <param name="temperature">T in [1e-6, 1e6] (1 for the model's own probabilities).</param>
    /// <param name="sequenceLogProbabilities">One entry per sequence, overwritten.</param>
    /// <exception cref="ArgumentException">The student has no layout, the output has the wrong length, or as for <see cref="LanguageModelLoss.Compute"/>.</exception>
    /// <exception cref="ArgumentOutOfRangeException">A token is outside [0, V) and not the ignore index, or the temperature is out of range.</exception>
    public static void StudentLogProbabilities(StudentDistribution student, TokenLabels tokens, float temperature, Span<double> sequenceLogProbabilities)
    {
        ThrowHelper.CheckTemperature(temperature, nameof(temperature));
        DistributionShape.CheckInitialized(student.VocabularySize, nameof(student));
        SequenceLayout layout = RequireLayout(student, nameof(student));
        if (sequenceLogProbabilities.Length != layout.SequenceCount)
        {
            ThrowHelper.Argument(nameof(sequenceLogProbabilities), ThrowHelper.Format($"The output has {sequenceLogProbabilities.Length} entries for {layout.SequenceCount} sequences."));
        }

        float[] rows = ArrayPool<float>.Shared.Rent(Math.Max(student.RowCount, 1));
        try
        {
            Span<float> rowLosses = rows.AsSpan(0, student.RowCount);
            SequenceDistillationLoss.RunLabelRows(student, tokens, temperature, default, rowLosses, default, KernelPaths.Best, nameof(student), nameof(tokens));
            SumPerSequence(layout, rowLosses, sequenceLogProbabilities);
        }
        finally
        {
            ArrayPool<float>.Shared.Return(rows);
        }
    }

    internal static SequenceLayout RequireLayout(StudentDistribution student, string paramName)
    {
        if (student.Layout is null)
        {
            ThrowHelper.Argument(paramName, "Sequence-level losses need the candidates' layout: create the student with a SequenceLayout whose sequences are the candidates.");
        }

        return student.Layout;
    }

    /// <summary>b_k = −Σ of the rows' label losses of sequence k.</summary>
    internal static void SumPerSequence(SequenceLayout layout, ReadOnlySpan<float> rowLosses, Span<double> perSequence)
    {
        ReadOnlySpan<int> offsets = layout.Offsets;
        for (int b = 0; b + 1 < offsets.Length; b++)
        {
            double sum = 0;
            for (int r = offsets[b]; r < offsets[b + 1]; r++)
            {
                sum -= rowLosses[r];
            }

            perSequence[b] = sum;
        }
    }

    /// <summary>The weights w_k of <paramref name="estimator"/>; returns the teacher mass Σ e^{a_k}.</summary>
    internal static double Weights(SequenceEstimator estimator, ReadOnlySpan<double> teacher, ReadOnlySpan<double> proposal, Span<double> w, string teacherName, string proposalName)
    {
        CheckLogProbabilities(teacher, teacherName);
        if (estimator == SequenceEstimator.ImportanceSampled)
        {
            if (proposal.Length != teacher.Length)
            {
                ThrowHelper.Argument(proposalName, ThrowHelper.Format($"Importance sampling needs one proposal log-probability per candidate: {proposal.Length} for {teacher.Length}."));
            }

            CheckLogProbabilities(proposal, proposalName);
        }
        else if (!proposal.IsEmpty)
        {
            ThrowHelper.Argument(proposalName, ThrowHelper.Format($"Proposal log-probabilities are used only by {nameof(SequenceEstimator.ImportanceSampled)}, not by {estimator}."));
        }

        double mass = 0;
        foreach (double a in teacher)
        {
            mass += Math.Exp(a);
        }

        int k = teacher.Length;
        switch (estimator)
        {
            case SequenceEstimator.Exact:
                if (mass > 1 + TeacherMassTolerance)
                {
                    ThrowHelper.Argument(teacherName, ThrowHelper.Format($"The teacher's probabilities of the candidates sum to {mass:R} > 1: they are not sequence log-probabilities of distinct sequences."));
                }

                for (int i = 0; i < k; i++)
                {
                    w[i] = Math.Exp(teacher[i]);
                }

                break;
            case SequenceEstimator.NBest:
                Softmax(teacher, default, w, teacherName);
                break;
            case SequenceEstimator.MonteCarlo:
                foreach (double a in teacher)
                {
                    if (double.IsNegativeInfinity(a))
                    {
                        ThrowHelper.Argument(teacherName, "A Monte-Carlo sample has teacher probability 0: it cannot have been sampled from the teacher.");
                    }
                }

                w.Fill(k == 0 ? 0 : 1.0 / k);
                break;
            case SequenceEstimator.ImportanceSampled:
                Softmax(teacher, proposal, w, teacherName);
                break;
            default:
                ThrowHelper.OutOfRange(nameof(estimator), estimator, "Unknown sequence estimator.");
                break;
        }

        return mass;
    }

    private static void Softmax(ReadOnlySpan<double> a, ReadOnlySpan<double> minus, Span<double> w, string paramName)
    {
        double max = double.NegativeInfinity;
        for (int i = 0; i < a.Length; i++)
        {
            w[i] = minus.IsEmpty ? a[i] : double.IsNegativeInfinity(a[i]) ? double.NegativeInfinity : a[i] - minus[i];
            max = Math.Max(max, w[i]);
        }

        if (a.Length == 0)
        {
            return;
        }

        if (!double.IsFinite(max))
        {
            ThrowHelper.Argument(paramName, double.IsPositiveInfinity(max)
                ? "A candidate has a proposal probability of 0 but a teacher probability above 0: it cannot have been sampled."
                : "Every candidate has teacher weight 0: the weights cannot be normalised.");
        }

        double sum = 0;
        for (int i = 0; i < w.Length; i++)
        {
            w[i] = Math.Exp(w[i] - max);
            sum += w[i];
        }

        for (int i = 0; i < w.Length; i++)
        {
            w[i] /= sum;
        }
    }

    private static void CheckLogProbabilities(ReadOnlySpan<double> values, string paramName)
    {
        for (int i = 0; i < values.Length; i++)
        {
            if (double.IsNaN(values[i]) || values[i] > 1e-6)
            {
                ThrowHelper.Argument(paramName, ThrowHelper.Format($"Entry {i} is {values[i]}: sequence log-probabilities are ≤ 0 (or −∞), never NaN."));
            }
        }
    }
}
