using System;
using System.Buffers;
using Distillation.Internal;
using Distillation.Kernels;

namespace Distillation;

/// <summary>
/// Sequence-level distillation from candidate sequences scored by the student under teacher forcing:
/// L = −Σ_k w_k log P_s(y_k | x') (see <see cref="SequenceEstimator"/> for the weights), with the gradient with respect
/// to every candidate's per-token student logits written in one call.
/// </summary>
/// <remarks>
/// <para>The candidates' rows are the student's logits at each position of each candidate (the student run on
/// x' with candidate y_k as its decoder input), laid out by a <see cref="SequenceLayout"/> whose sequences are the
/// candidates; <c>tokens</c> holds y_k,n for each row. With b_k = Σ_n log softmax(s_k,n / T)[y_k,n]:
/// dL/ds_k,n = w_k · (softmax(s_k,n / T) − onehot(y_k,n)) / T.</para>
/// <para>Instances are immutable and thread-safe.</para>
/// </remarks>
public sealed class SequenceDistillationLoss
{
    private readonly int _maxDegreeOfParallelism = Environment.ProcessorCount;

    /// <summary>Creates the loss.</summary>
    /// <param name="estimator">How the candidates were obtained.</param>
    /// <param name="temperature">T in [1e-6, 1e6] at which the student's token distributions are taken (1: the model's own).</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="estimator"/> is not defined, or the temperature is out of range.</exception>
    public SequenceDistillationLoss(SequenceEstimator estimator, float temperature = 1f)
    {
        if (estimator is < SequenceEstimator.Exact or > SequenceEstimator.ImportanceSampled)
        {
            ThrowHelper.OutOfRange(nameof(estimator), estimator, "Unknown sequence estimator.");
        }

        ThrowHelper.CheckTemperature(temperature, nameof(temperature));
        Estimator = estimator;
        Temperature = temperature;
    }

    /// <summary>How the candidates were obtained.</summary>
    public SequenceEstimator Estimator { get; }

    /// <summary>The temperature of the student's token distributions.</summary>
    public float Temperature { get; }

    /// <summary>The most threads one call uses (default: the processor count); results do not depend on it.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The value is less than 1.</exception>
    public int MaxDegreeOfParallelism
    {
        get => _maxDegreeOfParallelism;
        init => _maxDegreeOfParallelism = ThrowHelper.CheckDegreeOfParallelism(value, nameof(MaxDegreeOfParallelism));
    }

    /// <summary>
    /// Computes the sequence-level losses and writes dCE/ds (= dKL/ds) for every candidate row into <paramref name="studentGradient"/>.
    /// </summary>
    /// <param name="candidates">The student's rows for every candidate, with a layout whose sequences are the candidates (padding allowed).</param>
    /// <param name="tokens">The token of each row (the ignore index for rows that predict nothing).</param>
    /// <param name="teacherLogProbabilities">a_k = log P_t(y_k | x), one per candidate.</param>
    /// <param name="studentGradient">Rows × V floats, overwritten; padding rows get zeros.</param>
    /// <param name="proposalLogProbabilities">For <see cref="SequenceEstimator.ImportanceSampled"/>: log Q(y_k), one per candidate.</param>
    /// <returns>CE, KL, the teacher entropy (or their estimates) and the candidate count.</returns>
    /// <exception cref="ArgumentException">The student has no layout; counts differ; a buffer has the wrong length or overlaps the input; or a value is invalid (see <see cref="SequenceLosses.FromLogProbabilities"/> and <see cref="LanguageModelLoss.Compute"/>).</exception>
    /// <exception cref="ArgumentOutOfRangeException">A token is outside [0, V) and not the ignore index.</exception>
    public SequenceLossResult Compute(StudentDistribution candidates, TokenLabels tokens, ReadOnlySpan<double> teacherLogProbabilities, Span<float> studentGradient, ReadOnlySpan<double> proposalLogProbabilities = default)
    {
        DistributionShape.CheckInitialized(candidates.VocabularySize, nameof(candidates));
        SequenceLayout layout = SequenceLosses.RequireLayout(candidates, nameof(candidates));
        int k = layout.SequenceCount, rows = candidates.RowCount;
        if (teacherLogProbabilities.Length != k)
        {
            ThrowHelper.Argument(nameof(teacherLogProbabilities), ThrowHelper.Format($"There are {teacherLogProbabilities.Length} teacher log-probabilities for {k} candidates."));
        }

        double[] weights = ArrayPool<double>.Shared.Rent(Math.Max(k, 1));
        double[] student = ArrayPool<double>.Shared.Rent(Math.Max(k, 1));
        float[] rowWeights = ArrayPool<float>.Shared.Rent(Math.Max(rows, 1));
        float[] rowLosses = ArrayPool<float>.Shared.Rent(Math.Max(rows, 1));
        try
        {
            SequenceLosses.Weights(Estimator, teacherLogProbabilities, proposalLogProbabilities, weights.AsSpan(0, k), nameof(teacherLogProbabilities), nameof(proposalLogProbabilities));
            ReadOnlySpan<int> offsets = layout.Offsets;
            for (int b = 0; b < k; b++)
            {
                // A weight too small for a float still counts (its rows are computed, so a −∞ token still makes CE +∞).
                float weight = weights[b] == 0 ? 0f : Math.Max((float)weights[b], float.Epsilon);
                rowWeights.AsSpan(offsets[b], offsets[b + 1] - offsets[b]).Fill(weight);
            }

            RunLabelRows(candidates, tokens, Temperature, studentGradient, rowLosses.AsSpan(0, rows), rowWeights.AsSpan(0, rows), KernelPaths.Best, nameof(candidates), nameof(tokens), nameof(studentGradient), wantsGradient: true, MaxDegreeOfParallelism);
            SequenceLosses.SumPerSequence(layout, rowLosses.AsSpan(0, rows), student.AsSpan(0, k));
            return SequenceLosses.FromLogProbabilities(Estimator, teacherLogProbabilities, student.AsSpan(0, k), default, proposalLogProbabilities);
        }
        finally
        {
            ArrayPool<double>.Shared.Return(weights);
            ArrayPool<double>.Shared.Return(student);
            ArrayPool<float>.Shared.Return(rowWeights);
            ArrayPool<float>.Shared.Return(rowLosses);
        }
    }

    /// <summary>Runs the label kernel at T over every row, writing per-row values (before weights) and, when asked, the weighted gradient.</summary>
    internal static LossResult RunLabelRows(StudentDistribution student, TokenLabels tokens, float temperature, Span<float> gradient, Span<float> rowLosses, ReadOnlySpan<float> rowWeights, KernelPath path, string studentName, string tokensName, string gradientName = "studentGradient", bool wantsGradient = false, int maxThreads = 0)
    {
        if (tokens.Length != student.RowCount)
        {
            ThrowHelper.Argument(tokensName, ThrowHelper.Format($"There are {tokens.Length} tokens for {student.RowCount} rows."));
        }

        var call = LossCall.ForStudent(student, student.VocabularySize, student.RowCount, null, tokens, gradient, wantsGradient, Reduction.Sum, maxThreads > 0 ? maxThreads : Environment.ProcessorCount, path) with
        {
            RowLosses = rowLosses,
            RowWeights = rowWeights,
            StudentName = studentName,
            GradientName = gradientName,
            LabelsName = tokensName,
        };
        return LossEngine.Label(0f, temperature, call);
    }
}
