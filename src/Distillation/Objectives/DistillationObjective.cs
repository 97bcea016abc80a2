using System;
using System.Buffers;
using Distillation.Internal;
using Distillation.Kernels;
using Distillation.Kernels.Divergences;

namespace Distillation;

/// <summary>
/// The objective a distillation training loop minimises: L = λ·L_KD + (1 − λ)·L_LM (or L_LM + λ·L_KD), with L_KD a
/// divergence at temperature T (× T² by default) and L_LM the hard-label loss on ground truth at T = 1, λ from a
/// schedule of the training step and optionally adapted per token. One call returns the total, each part, λ, the
/// counts and (optionally) metrics, and writes dL/ds for the student's logits — both terms into one buffer in one
/// pass over the rows.
/// </summary>
/// <remarks>
/// <para>Both terms use the same real rows (the layout's padding mask and the labels' ignore index) and the same
/// reduction, so with λ fixed Total = λ·Distillation + (1 − λ)·LanguageModel. λ = 1 gives exactly the distillation loss
/// and λ = 0 exactly the hard-label loss: a term of weight 0 is left out of the total and the gradient (it is still
/// evaluated for logging), so an infinite KD value never becomes 0 · ∞ = NaN.</para>
/// <para>Instances are immutable and thread-safe.</para>
/// </remarks>
public sealed partial class DistillationObjective
{
    private readonly int _maxDegreeOfParallelism = Environment.ProcessorCount;

    /// <summary>Creates the objective from its recorded configuration.</summary>
    /// <param name="options">The configuration.</param>
    /// <exception cref="ArgumentNullException"><paramref name="options"/> is null.</exception>
    /// <exception cref="ArgumentException">The divergence is <c>default</c>.</exception>
    /// <exception cref="ArgumentOutOfRangeException">The form, scaling or token rule is not a defined value.</exception>
    public DistillationObjective(DistillationObjectiveOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (options.Divergence.Kind == DivergenceKind.Unspecified)
        {
            ThrowHelper.Argument(nameof(options), "The divergence is unspecified (default); use one of Divergence's members.");
        }

        if (options.Form is not (ObjectiveForm.Interpolated or ObjectiveForm.Additive) || options.TemperatureScaling is not (TemperatureScaling.None or TemperatureScaling.Squared)
            || options.TokenWeighting is < TokenWeighting.None or > TokenWeighting.TeacherCorrectness)
        {
            ThrowHelper.OutOfRange(nameof(options), options, "The form, temperature scaling or token weighting is not a defined value.");
        }

        Options = options;
    }

    /// <summary>Creates the objective L = λ·L_KD + (1 − λ)·L_LM.</summary>
    /// <param name="divergence">The divergence of the distillation term.</param>
    /// <param name="temperature">T in [1e-6, 1e6] for the distillation term.</param>
    /// <param name="lambda">λ as a function of the step.</param>
    /// <param name="temperatureScaling">Whether the distillation term is × T² (default yes: see <see cref="DistillationObjectiveOptions.TemperatureScaling"/>).</param>
    /// <exception cref="ArgumentNullException"><paramref name="lambda"/> is null.</exception>
    /// <exception cref="ArgumentException">The divergence is <c>default</c>.</exception>
    /// <exception cref="ArgumentOutOfRangeException">The temperature is out of range.</exception>
    public DistillationObjective(Divergence divergence, float temperature, LambdaSchedule lambda, TemperatureScaling temperatureScaling = TemperatureScaling.Squared)
        : this(ValidatedOptions(divergence, temperature, lambda, temperatureScaling))
    {
    }

    /// <summary>The configuration.</summary>
    public DistillationObjectiveOptions Options { get; }

    /// <summary>The objective reduces both terms over the same rows: no per-row reduction, one label per row.</summary>
    private static void CheckObjectiveArguments(Reduction reduction, TokenLabels labels, int rows)
    {
        if (reduction.Kind == ReductionKind.None)
        {
            ThrowHelper.Argument(nameof(reduction), "The objective reduces both terms; use DistillationLoss and LanguageModelLoss for per-row values.");
        }

        if (labels.Length != rows)
        {
            ThrowHelper.Argument(nameof(labels), ThrowHelper.Format($"The objective needs one label per row: {labels.Length} labels for {rows} rows."));
        }
    }

    /// <summary>Validates the short constructor's arguments under their own names.</summary>
    private static DistillationObjectiveOptions ValidatedOptions(Divergence divergence, float temperature, LambdaSchedule lambda, TemperatureScaling temperatureScaling)
    {
        if (divergence.Kind == DivergenceKind.Unspecified)
        {
            ThrowHelper.Argument(nameof(divergence), "The divergence is unspecified (default); use one of Divergence's members.");
        }

        ThrowHelper.CheckTemperature(temperature, nameof(temperature));
        ArgumentNullException.ThrowIfNull(lambda);
        return new DistillationObjectiveOptions { Divergence = divergence, Temperature = temperature, Lambda = lambda, TemperatureScaling = temperatureScaling };
    }

    /// <summary>The most threads one call uses (default: the processor count); results do not depend on it.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The value is less than 1.</exception>
    public int MaxDegreeOfParallelism
    {
        get => _maxDegreeOfParallelism;
        init => _maxDegreeOfParallelism = ThrowHelper.CheckDegreeOfParallelism(value, nameof(MaxDegreeOfParallelism));
    }

    /// <summary>
    /// Computes the objective at <paramref name="step"/> and writes dL/ds into <paramref name="studentGradient"/>.
    /// </summary>
    /// <param name="teacher">The teacher's rows.</param>
    /// <param name="student">The student's rows (same vocabulary, rows and layout).</param>
    /// <param name="labels">The ground-truth token of each row (the ignore index excludes a row from both terms).</param>
    /// <param name="studentGradient">Rows × V floats, overwritten with dL/ds; excluded rows get zeros.</param>
    /// <param name="step">The training step, 0 or more: λ = Lambda.ValueAt(step).</param>
    /// <param name="reduction">How rows are combined, the same for both terms (default mean over tokens; not <see cref="Reduction.None"/>).</param>
    /// <param name="computeMetrics">Whether to compute <see cref="ObjectiveMetrics"/> (two more passes over the rows).</param>
    /// <returns>The total, the parts, λ, the counts and the metrics.</returns>
    /// <exception cref="ArgumentException">As for <see cref="DistillationLoss.Compute(TeacherDistribution, StudentDistribution, Span{float}, Reduction, TokenLabels, Span{float}, ReadOnlySpan{float})"/>; labels are missing; or <see cref="Reduction.None"/> was asked for.</exception>
    /// <exception cref="ArgumentOutOfRangeException">A label is outside [0, V) and not the ignore index, or <paramref name="step"/> is negative.</exception>
    public ObjectiveResult Compute(TeacherDistribution teacher, StudentDistribution student, TokenLabels labels, Span<float> studentGradient, long step, Reduction reduction = default, bool computeMetrics = false) =>
        ComputeCore(teacher, student, labels, studentGradient, step, reduction, computeMetrics, KernelPaths.Best);

    /// <summary>Computes the objective at <paramref name="step"/> without a gradient (for validation sets and logging): the same result <see cref="Compute(TeacherDistribution, StudentDistribution, TokenLabels, Span{float}, long, Reduction, bool)"/> returns.</summary>
    /// <param name="teacher">The teacher's rows.</param>
    /// <param name="student">The student's rows.</param>
    /// <param name="labels">The ground-truth token of each row.</param>
    /// <param name="step">The training step, 0 or more.</param>
    /// <param name="reduction">How rows are combined (not <see cref="Reduction.None"/>).</param>
    /// <param name="computeMetrics">Whether to compute <see cref="ObjectiveMetrics"/>.</param>
    /// <returns>The total, the parts, λ, the counts and the metrics.</returns>
    /// <exception cref="ArgumentException">As for <see cref="Compute(TeacherDistribution, StudentDistribution, TokenLabels, Span{float}, long, Reduction, bool)"/>.</exception>
    /// <exception cref="ArgumentOutOfRangeException">As for <see cref="Compute(TeacherDistribution, StudentDistribution, TokenLabels, Span{float}, long, Reduction, bool)"/>.</exception>
    public ObjectiveResult Evaluate(TeacherDistribution teacher, StudentDistribution student, TokenLabels labels, long step, Reduction reduction = default, bool computeMetrics = false) =>
        ComputeCore(teacher, student, labels, default, step, reduction, computeMetrics, KernelPaths.Best, wantsGradient: false);

    internal unsafe ObjectiveResult ComputeCore(TeacherDistribution teacher, StudentDistribution student, TokenLabels labels, Span<float> studentGradient, long step, Reduction reduction, bool computeMetrics, KernelPath path, bool wantsGradient = true)
    {
        double lambda = Options.Lambda.ValueAt(step);
        InputChecks.Pair(teacher, student, nameof(teacher), nameof(student));
        CheckObjectiveArguments(reduction, labels, teacher.RowCount);

        int rows = teacher.RowCount, vocab = teacher.VocabularySize;
        var call = LossCall.ForStudent(student, teacher.VocabularySize, rows, teacher.Layout, labels, studentGradient, wantsGradient, reduction, MaxDegreeOfParallelism, path) with
        {
            Teacher = teacher.Values.Span,
            TeacherHalf = teacher.HalfValues.Span,
            TeacherKind = teacher.Kind,
        };
        LossEngine.Validate(call);

        float[] kdWeights = ArrayPool<float>.Shared.Rent(Math.Max(rows, 1));
        float[] lmWeights = ArrayPool<float>.Shared.Rent(Math.Max(rows, 1));
        double[] parts = ArrayPool<double>.Shared.Rent(Math.Max(2 * rows, 1));
        try
        {
            bool interpolated = Options.Form == ObjectiveForm.Interpolated;
            double lambdaSum = TokenLambdas(teacher, labels, call.Layout, lambda, kdWeights.AsSpan(0, rows), lmWeights.AsSpan(0, rows), interpolated);
            double t2 = Options.TemperatureScaling == TemperatureScaling.Squared ? (double)Options.Temperature * Options.Temperature : 1;
            LossResult counts;
            fixed (float* kw = kdWeights)
            fixed (float* lw = lmWeights)
            fixed (double* p = parts)
            {
                var run = new ObjectiveRun(call, Options.Temperature, Options.LabelSmoothing, t2, kw, lw, p);
                counts = LossEngine.Dispatch<ObjectiveRun, LossResult>(Options.Divergence, ref run);
            }

            ObjectiveMetrics? metrics = computeMetrics ? Metrics(teacher, student, labels, call) : null;
            return Combine(lambda, lambdaSum, counts, reduction, parts, kdWeights, lmWeights, rows, t2, metrics);
        }
        finally
        {
            ArrayPool<float>.Shared.Return(kdWeights);
            ArrayPool<float>.Shared.Return(lmWeights);
            ArrayPool<double>.Shared.Return(parts);
        }
    }

    /// <summary>
    /// The reduced parts, the total and the mean λ from the per-row parts (parts[r] the KD value, parts[rows + r] the
    /// hard-label value) and weights; shared by every kind of teacher.
    /// </summary>
    private ObjectiveResult Combine(double lambda, double lambdaSum, LossResult counts, Reduction reduction, double[] parts, float[] kdWeights, float[] lmWeights, int rows, double t2, ObjectiveMetrics? metrics)
    {
        bool interpolated = Options.Form == ObjectiveForm.Interpolated;
        double divisor = counts.TokenCount == 0 ? 1 : reduction.Kind switch
        {
            ReductionKind.MeanOverTokens => counts.TokenCount,
            ReductionKind.MeanOverSequences => counts.SequenceCount,
            ReductionKind.SumDividedBy => reduction.Divisor,
            _ => 1,
        };

        // Sums in row order (bit-identical across thread counts); rows outside the selection hold 0 in both parts.
        double kdSum = 0, lmSum = 0, totalSum = 0;
        for (int r = 0; r < rows; r++)
        {
            double kd = parts[r], lm = parts[rows + r];
            kdSum += kd;
            lmSum += lm;
            totalSum += (kdWeights[r] == 0 ? 0 : kdWeights[r] * t2 * kd) + (lmWeights[r] == 0 ? 0 : lmWeights[r] * lm);
        }

        double distillation = kdSum * t2 / divisor, languageModel = lmSum / divisor;
        double total;
        if (Options.TokenWeighting == TokenWeighting.None)
        {
            // The same λ for every row: the total is the weighted sum of the reduced parts, a weight of 0 leaving its part out.
            double lmWeight = interpolated ? 1 - lambda : 1;
            total = lambda == 0 ? lmWeight * languageModel
                : lmWeight == 0 ? lambda * distillation
                : (lambda * distillation) + (lmWeight * languageModel);
        }
        else
        {
            total = totalSum / divisor;
        }

        double meanLambda = counts.TokenCount == 0 ? lambda : lambdaSum / counts.TokenCount;
        return new ObjectiveResult(total, distillation, languageModel, lambda, meanLambda, counts.TokenCount, counts.SequenceCount, metrics);
    }

    /// <summary>λ_r and the hard-label weight of every row (0 for rows outside the selection); returns Σ λ_r over real rows.</summary>
    private double TokenLambdas(TeacherDistribution teacher, TokenLabels labels, SequenceLayout? layout, double lambda, Span<float> kdWeights, Span<float> lmWeights, bool interpolated)
    {
        float[]? widened = teacher.IsHalfPrecision && Options.TokenWeighting != TokenWeighting.None ? ArrayPool<float>.Shared.Rent(teacher.VocabularySize) : null;
        ReadOnlySpan<bool> mask = layout is null ? default : layout.Mask.Span;
        ReadOnlySpan<int> ids = labels.Ids.Span;
        int vocab = teacher.VocabularySize;
        double sum = 0;
        for (int r = 0; r < kdWeights.Length; r++)
        {
            if ((!mask.IsEmpty && !mask[r]) || ids[r] == labels.IgnoreIndex)
            {
                kdWeights[r] = lmWeights[r] = 0;
                continue;
            }

            ReadOnlySpan<float> row = Options.TokenWeighting == TokenWeighting.None ? default : teacher.Row(r, widened);
            double factor = Options.TokenWeighting switch
            {
                TokenWeighting.TeacherConfidence => RowStatistics.MaxProbability(row, teacher.Kind),
                TokenWeighting.TeacherCorrectness => RowStatistics.ArgMax(row) == ids[r] ? 1 : Options.MismatchWeight,
                _ => 1,
            };
            double tokenLambda = lambda * factor;
            kdWeights[r] = (float)tokenLambda;
            lmWeights[r] = (float)(interpolated ? 1 - tokenLambda : 1);
            sum += tokenLambda;
        }

        if (widened is not null)
        {
            ArrayPool<float>.Shared.Return(widened);
        }

        return sum;
    }

    /// <summary>Entropies at T and top-1 agreements over the real rows.</summary>
    private ObjectiveMetrics Metrics(TeacherDistribution teacher, StudentDistribution student, TokenLabels labels, in LossCall call)
    {
        int vocab = teacher.VocabularySize;
        LossResult teacherEntropy = LossEngine.Entropy(Options.Temperature, call with { WantsGradient = false, Gradient = default });
        LossResult studentEntropy = LossEngine.Entropy(Options.Temperature, call with { WantsGradient = false, Gradient = default, Teacher = call.Student, TeacherHalf = default, TeacherKind = student.Kind, TeacherName = call.StudentName });
        ReadOnlySpan<float> s = student.Values.Span;
        float[]? widened = teacher.IsHalfPrecision ? ArrayPool<float>.Shared.Rent(vocab) : null;
        ReadOnlySpan<bool> mask = call.Layout is null ? default : call.Layout.Mask.Span;
        ReadOnlySpan<int> ids = labels.Ids.Span;
        int real = 0, agree = 0, correct = 0;
        for (int r = 0; r < teacher.RowCount; r++)
        {
            if ((!mask.IsEmpty && !mask[r]) || ids[r] == labels.IgnoreIndex)
            {
                continue;
            }

            int top = RowStatistics.ArgMax(teacher.Row(r, widened));
            real++;
            agree += top == RowStatistics.ArgMax(s.Slice(r * vocab, vocab)) ? 1 : 0;
            correct += top == ids[r] ? 1 : 0;
        }

        if (widened is not null)
        {
            ArrayPool<float>.Shared.Return(widened);
        }

        double n = Math.Max(real, 1);
        return new ObjectiveMetrics(teacherEntropy.Sum / n, studentEntropy.Sum / n, agree / n, correct / n);
    }
}

/// <summary>Runs the objective's combined row kernel for one divergence.</summary>
internal readonly unsafe ref struct ObjectiveRun(in LossCall call, float temperature, float labelSmoothing, double t2, float* kdWeights, float* lmWeights, double* parts) : IDivergenceVisitor<LossResult>
{
    private readonly LossCall _call = call;

    public LossResult Visit<TOp>(TOp op)
        where TOp : struct, IDivergenceOp
    {
        fixed (float* t = _call.Teacher)
        fixed (Half* th = _call.TeacherHalf)
        fixed (float* s = _call.Student)
        fixed (int* y = _call.Labels.Ids.Span)
        {
            int vocab = _call.VocabularySize;
            var kernel = new ObjectiveRowKernel<DivergenceRowKernel<TOp>>(
                new DivergenceRowKernel<TOp>(op, t, _call.TeacherKind, s, vocab, temperature, _call.Path, th, streaming: false), // the label term reads the gradient back at once
                new LabelRowKernel(s, y, vocab, labelSmoothing, 1f, _call.Path),
                new LabelRowKernel(s, y, vocab, labelSmoothing, 1f, _call.Path, accumulate: true),
                kdWeights,
                lmWeights,
                parts,
                _call.Rows,
                t2);
            new Span<double>(parts, 2 * _call.Rows).Clear();
            return LossEngine.Drive(kernel, 1, _call);
        }
    }
}

/// <summary>
/// One row of the objective: the distillation row (weight λ_r·T², written), then the hard-label row (weight w_r,
/// added) while the row is still in cache. A term of weight 0 is evaluated for logging but kept out of the gradient.
/// </summary>
internal readonly unsafe struct ObjectiveRowKernel<TKd>(TKd distillation, LabelRowKernel write, LabelRowKernel add, float* kdWeights, float* lmWeights, double* parts, int rows, double t2) : IRowKernel
    where TKd : struct, IRowKernel
{
    public long ScratchFloats(int vocabularySize) => Math.Max(distillation.ScratchFloats(vocabularySize), write.ScratchFloats(vocabularySize));

    public void Finish(in DeferredGradient deferred) => distillation.Finish(deferred);

    public RowStatus Row(int row, float* gradient, double numerator, double divisor, float* scratch, ref DeferredGradient deferred, out double value)
    {
        // The distillation kernel writes its gradient at once (not streamed): the label term adds to it right away.
        float kw = kdWeights[row], lw = lmWeights[row];
        RowStatus status = distillation.Row(row, kw != 0 ? gradient : null, numerator * kw * t2, divisor, scratch, ref deferred, out value);
        if (status != RowStatus.Ok)
        {
            return status;
        }

        double lm;
        if (lw != 0)
        {
            status = (kw != 0 ? add : write).Row(row, gradient, numerator * lw, divisor, scratch, ref deferred, out lm);
        }
        else
        {
            status = write.Row(row, null, 0, divisor, scratch, ref deferred, out lm);
            if (kw == 0 && gradient != null)
            {
                new Span<float>(gradient, write.VocabularySize).Clear();
            }
        }

        parts[row] = value;
        parts[rows + row] = lm;
        return status;
    }
}
