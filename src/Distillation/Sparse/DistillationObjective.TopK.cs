using System;
using System.Buffers;
using Distillation.Internal;
using Distillation.Kernels;
using Distillation.Kernels.Divergences;
using Distillation.Sparse;

namespace Distillation;

/// <summary>The combined objective with a top-k teacher.</summary>
public sealed partial class DistillationObjective
{
    /// <summary>
    /// Computes the objective at <paramref name="step"/> with a top-k teacher and writes dL/ds into
    /// <paramref name="studentGradient"/>: the distillation term as <see cref="DistillationLoss"/> computes it for a
    /// top-k teacher (its residual policy and generation temperature included), the hard-label term, λ, the
    /// reduction (what it divides by) and the token rules exactly as for a dense teacher.
    /// </summary>
    /// <remarks>
    /// The token rules read the teacher's kept categories at T = 1: <see cref="TokenWeighting.TeacherConfidence"/> uses
    /// the largest kept probability, <see cref="TokenWeighting.TeacherCorrectness"/> the kept id with the largest
    /// log-probability (the smallest such id on ties). The teacher's entropy in the metrics is that of its categories at T
    /// (the rest bucket counts as one category under <see cref="ResidualMassPolicy.RestBucket"/>).
    /// </remarks>
    /// <param name="teacher">The top-k teacher; its ids index the student's vocabulary.</param>
    /// <param name="student">The student's rows (same vocabulary, rows and layout).</param>
    /// <param name="labels">The ground-truth token of each row (the ignore index excludes a row from both terms).</param>
    /// <param name="studentGradient">Rows × V floats, overwritten with dL/ds; excluded rows get zeros.</param>
    /// <param name="step">The training step, 0 or more: λ = Lambda.ValueAt(step).</param>
    /// <param name="reduction">How rows are combined, the same for both terms (default mean over tokens; not <see cref="Reduction.None"/>).</param>
    /// <param name="computeMetrics">Whether to compute <see cref="ObjectiveMetrics"/>.</param>
    /// <returns>The total, the parts, λ, the counts and the metrics.</returns>
    /// <exception cref="ArgumentException">As for <see cref="DistillationLoss.Compute(TopKTeacherDistribution, StudentDistribution, Span{float}, Reduction, TokenLabels, Span{float}, ReadOnlySpan{float})"/>; labels are missing; or <see cref="Reduction.None"/> was asked for.</exception>
    /// <exception cref="ArgumentOutOfRangeException">A teacher id or a label is out of range, or <paramref name="step"/> is negative.</exception>
    public ObjectiveResult Compute(TopKTeacherDistribution teacher, StudentDistribution student, TokenLabels labels, Span<float> studentGradient, long step, Reduction reduction = default, bool computeMetrics = false) =>
        ComputeCore(teacher, student, labels, studentGradient, step, reduction, computeMetrics, KernelPaths.Best);

    /// <summary>Computes the objective at <paramref name="step"/> with a top-k teacher, without a gradient: the same result the gradient form returns.</summary>
    /// <param name="teacher">The top-k teacher.</param>
    /// <param name="student">The student's rows.</param>
    /// <param name="labels">The ground-truth token of each row.</param>
    /// <param name="step">The training step, 0 or more.</param>
    /// <param name="reduction">How rows are combined (not <see cref="Reduction.None"/>).</param>
    /// <param name="computeMetrics">Whether to compute <see cref="ObjectiveMetrics"/>.</param>
    /// <returns>The total, the parts, λ, the counts and the metrics.</returns>
    /// <exception cref="ArgumentException">As for the gradient form.</exception>
    /// <exception cref="ArgumentOutOfRangeException">As for the gradient form.</exception>
    public ObjectiveResult Evaluate(TopKTeacherDistribution teacher, StudentDistribution student, TokenLabels labels, long step, Reduction reduction = default, bool computeMetrics = false) =>
        ComputeCore(teacher, student, labels, default, step, reduction, computeMetrics, KernelPaths.Best, wantsGradient: false);

    internal unsafe ObjectiveResult ComputeCore(TopKTeacherDistribution teacher, StudentDistribution student, TokenLabels labels, Span<float> studentGradient, long step, Reduction reduction, bool computeMetrics, KernelPath path, bool wantsGradient = true)
    {
        double lambda = Options.Lambda.ValueAt(step);
        TopKEngine.Pair(teacher, student, nameof(teacher), nameof(student));
        CheckObjectiveArguments(reduction, labels, teacher.RowCount);

        int rows = teacher.RowCount;
        var call = LossCall.ForStudent(student, teacher.VocabularySize, rows, teacher.Layout, labels, studentGradient, wantsGradient, reduction, MaxDegreeOfParallelism, path);
        TopKEngine.Validate(teacher, call);

        float[] kdWeights = ArrayPool<float>.Shared.Rent(Math.Max(rows, 1));
        float[] lmWeights = ArrayPool<float>.Shared.Rent(Math.Max(rows, 1));
        double[] parts = ArrayPool<double>.Shared.Rent(Math.Max(2 * rows, 1));
        try
        {
            double lambdaSum = TokenLambdas(teacher, labels, call.Layout, lambda, kdWeights.AsSpan(0, rows), lmWeights.AsSpan(0, rows));
            double t2 = Options.TemperatureScaling == TemperatureScaling.Squared ? (double)Options.Temperature * Options.Temperature : 1;
            LossResult counts;
            fixed (float* kw = kdWeights)
            fixed (float* lw = lmWeights)
            fixed (double* p = parts)
            {
                var run = new TopKObjectiveRun(teacher, call, Options.Temperature, Options.LabelSmoothing, t2, kw, lw, p);
                counts = LossEngine.Dispatch<TopKObjectiveRun, LossResult>(Options.Divergence, ref run);
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

    /// <summary>λ_r and the hard-label weight of every row from the top-k teacher's categories at T = 1; returns Σ λ_r over real rows.</summary>
    private unsafe double TokenLambdas(TopKTeacherDistribution teacher, TokenLabels labels, SequenceLayout? layout, double lambda, Span<float> kdWeights, Span<float> lmWeights)
    {
        bool interpolated = Options.Form == ObjectiveForm.Interpolated;
        ReadOnlySpan<bool> mask = layout is null ? default : layout.Mask.Span;
        ReadOnlySpan<int> ids = labels.Ids.Span;
        double[] logP = ArrayPool<double>.Shared.Rent(teacher.K);
        double sum = 0;
        try
        {
            for (int r = 0; r < kdWeights.Length; r++)
            {
                if ((!mask.IsEmpty && !mask[r]) || ids[r] == labels.IgnoreIndex)
                {
                    kdWeights[r] = lmWeights[r] = 0;
                    continue;
                }

                double factor = Options.TokenWeighting switch
                {
                    TokenWeighting.TeacherConfidence => Math.Exp(TopCategory(teacher, r, logP, out _)),
                    TokenWeighting.TeacherCorrectness => TopId(teacher, r, logP) == ids[r] ? 1 : Options.MismatchWeight,
                    _ => 1,
                };
                double tokenLambda = lambda * factor;
                kdWeights[r] = (float)tokenLambda;
                lmWeights[r] = (float)(interpolated ? 1 - tokenLambda : 1);
                sum += tokenLambda;
            }
        }
        finally
        {
            ArrayPool<double>.Shared.Return(logP);
        }

        return sum;
    }

    /// <summary>The teacher's entropy at T over its categories, the student's, and the top-1 agreements over the real rows.</summary>
    private ObjectiveMetrics Metrics(TopKTeacherDistribution teacher, StudentDistribution student, TokenLabels labels, in LossCall call)
    {
        int vocab = teacher.VocabularySize;
        LossCall valueOnly = call with { WantsGradient = false, Gradient = default };
        var entropyRun = new TopKRun(teacher, valueOnly, Options.Temperature, 1);
        LossResult teacherEntropy = entropyRun.Visit(new EntropyOp());
        LossResult studentEntropy = LossEngine.Entropy(Options.Temperature, valueOnly with { Teacher = call.Student, TeacherHalf = default, TeacherKind = student.Kind, TeacherName = call.StudentName });
        ReadOnlySpan<float> s = student.Values.Span;
        ReadOnlySpan<bool> mask = call.Layout is null ? default : call.Layout.Mask.Span;
        ReadOnlySpan<int> ids = labels.Ids.Span;
        double[] logP = ArrayPool<double>.Shared.Rent(teacher.K);
        int real = 0, agree = 0, correct = 0;
        try
        {
            for (int r = 0; r < teacher.RowCount; r++)
            {
                if ((!mask.IsEmpty && !mask[r]) || ids[r] == labels.IgnoreIndex)
                {
                    continue;
                }

                int top = TopId(teacher, r, logP);
                real++;
                agree += top == RowStatistics.ArgMax(s.Slice(r * vocab, vocab)) ? 1 : 0;
                correct += top == ids[r] ? 1 : 0;
            }
        }
        finally
        {
            ArrayPool<double>.Shared.Return(logP);
        }

        double n = Math.Max(real, 1);
        return new ObjectiveMetrics(teacherEntropy.Sum / n, studentEntropy.Sum / n, agree / n, correct / n);
    }

    /// <summary>The largest kept log-probability of row <paramref name="row"/> at T = 1 under the teacher's policy; <paramref name="slot"/> is its slot (−1 if none).</summary>
    private static unsafe double TopCategory(in TopKTeacherDistribution teacher, int row, double[] logP, out int slot)
    {
        int k = teacher.K;
        slot = -1;
        double best = double.NegativeInfinity;
        fixed (int* ids = teacher.Ids.Span)
        fixed (float* values = teacher.LogProbabilities.Span)
        fixed (Half* halves = teacher.HalfLogProbabilities.Span)
        fixed (double* lp = logP)
        {
            int* id = ids + ((nint)row * k);
            TopKTeacherRow.Compute(id, teacher.IsHalfPrecision ? null : values + ((nint)row * k), teacher.IsHalfPrecision ? halves + ((nint)row * k) : null, k, teacher.VocabularySize, teacher.Residual, teacher.GenerationTemperature, lp, out _);
            for (int i = 0; i < k; i++)
            {
                if (id[i] >= 0 && (lp[i] > best || (lp[i] == best && slot >= 0 && id[i] < id[slot])))
                {
                    best = lp[i];
                    slot = i;
                }
            }
        }

        return best;
    }

    /// <summary>The teacher's most likely kept id of a row (the smallest on ties), or −1 when no slot is used.</summary>
    private static int TopId(in TopKTeacherDistribution teacher, int row, double[] logP)
    {
        TopCategory(teacher, row, logP, out int slot);
        return slot < 0 ? -1 : teacher.Ids.Span[(row * teacher.K) + slot];
    }
}

/// <summary>Runs the objective's combined row kernel for one divergence with a top-k teacher.</summary>
internal readonly unsafe ref struct TopKObjectiveRun(in TopKTeacherDistribution teacher, in LossCall call, float temperature, float labelSmoothing, double t2, float* kdWeights, float* lmWeights, double* parts) : IDivergenceVisitor<LossResult>
{
    private readonly TopKTeacherDistribution _teacher = teacher;
    private readonly LossCall _call = call;

    public LossResult Visit<TOp>(TOp op)
        where TOp : struct, IDivergenceOp
    {
        fixed (int* ids = _teacher.Ids.Span)
        fixed (float* values = _teacher.LogProbabilities.Span)
        fixed (Half* halves = _teacher.HalfLogProbabilities.Span)
        fixed (float* s = _call.Student)
        fixed (int* y = _call.Labels.Ids.Span)
        {
            int vocab = _call.VocabularySize;
            var kernel = new ObjectiveRowKernel<TopKRowKernel<TOp>>(
                TopKKernel.Create(op, _teacher, ids, values, halves, s, temperature, _call.Path, streaming: false),
                new LabelRowKernel(s, y, vocab, labelSmoothing, 1f, _call.Path),
                new LabelRowKernel(s, y, vocab, labelSmoothing, 1f, _call.Path, accumulate: true),
                kdWeights,
                lmWeights,
                parts,
                _call.Rows,
                t2);
            new Span<double>(parts, 2 * _call.Rows).Clear();
            return TopKEngine.Drive(kernel, 1, _call);
        }
    }
}
