using System;
using System.Runtime.InteropServices;
using Distillation.Internal;
using Distillation.Kernels;
using Distillation.Kernels.Divergences;

namespace Distillation.Sparse;

/// <summary>Validates a call with a top-k teacher, picks the divergence's op and runs the row driver.</summary>
internal static unsafe class TopKEngine
{
    public static LossResult Divergence(Divergence divergence, float temperature, TemperatureScaling scaling, in TopKTeacherDistribution teacher, in LossCall call)
    {
        Validate(teacher, call);
        var run = new TopKRun(teacher, call, temperature, scaling == TemperatureScaling.Squared ? (double)temperature * temperature : 1);
        return LossEngine.Dispatch<TopKRun, LossResult>(divergence, ref run);
    }

    /// <summary>Both sides initialised, the same vocabulary, rows and layout.</summary>
    public static void Pair(in TopKTeacherDistribution teacher, in StudentDistribution student, string teacherName, string studentName)
    {
        DistributionShape.CheckInitialized(teacher.VocabularySize, teacherName);
        DistributionShape.CheckInitialized(student.VocabularySize, studentName);
        if (teacher.VocabularySize != student.VocabularySize)
        {
            ThrowHelper.Argument(studentName, ThrowHelper.Format($"The top-k teacher's ids index a vocabulary of {teacher.VocabularySize} tokens and the student has {student.VocabularySize}; map the teacher to the student's vocabulary first (VocabularyMapping)."));
        }

        if (teacher.RowCount != student.RowCount)
        {
            ThrowHelper.Argument(studentName, ThrowHelper.Format($"The teacher has {teacher.RowCount} rows and the student {student.RowCount}; they must be the same."));
        }

        InputChecks.Layouts(teacher.Layout, student.Layout, studentName);
    }

    /// <summary>Structural checks (as for a dense teacher), no output overlapping the teacher's buffers, then the teacher's values on the rows read.</summary>
    public static void Validate(in TopKTeacherDistribution teacher, in LossCall call)
    {
        LossEngine.Validate(call);
        ReadOnlySpan<byte> ids = MemoryMarshal.AsBytes(teacher.Ids.Span);
        ReadOnlySpan<byte> values = teacher.IsHalfPrecision ? MemoryMarshal.AsBytes(teacher.HalfLogProbabilities.Span) : MemoryMarshal.AsBytes(teacher.LogProbabilities.Span);
        if (Overlaps(call.WantsGradient ? call.Gradient : default, ids, values))
        {
            ThrowHelper.Argument(call.GradientName, "The gradient buffer overlaps the teacher's ids or log-probabilities; give it its own memory.");
        }

        if (Overlaps(call.RowLosses, ids, values))
        {
            ThrowHelper.Argument(call.RowLossesName, "The row-loss buffer overlaps the teacher's ids or log-probabilities; give it its own memory.");
        }

        RowSelection selection = Selection(call);
        TopKChecks.Values(teacher, selection, call.TeacherName);
    }

    public static RowSelection Selection(in LossCall call) =>
        new(call.Rows, call.Layout is null ? default : call.Layout.Mask.Span, call.Labels.Ids.Span, call.Labels.IgnoreIndex, call.Layout, call.RowWeights);

    /// <summary>Runs a row kernel whose teacher was checked, turning a rejected student row into its exception.</summary>
    public static LossResult Drive<TKernel>(in TKernel kernel, double valueScale, in LossCall call)
        where TKernel : struct, IRowKernel
    {
        RowSelection selection = Selection(call);
        LossResult result = LossDriver.Run(kernel, call.VocabularySize, selection, call.WantsGradient ? call.Gradient : default, call.RowLosses, call.Reduction, valueScale, call.MaxThreads, out RowFailure failure);
        if (failure.Status != RowStatus.Ok)
        {
            throw TopKChecks.RowFailure(failure, call.Student, call.VocabularySize, call.TeacherName, call.StudentName);
        }

        return result;
    }

    private static bool Overlaps(Span<float> output, ReadOnlySpan<byte> ids, ReadOnlySpan<byte> values)
    {
        ReadOnlySpan<byte> bytes = MemoryMarshal.AsBytes((ReadOnlySpan<float>)output);
        return !bytes.IsEmpty && (bytes.Overlaps(ids) || bytes.Overlaps(values));
    }
}

/// <summary>Runs one divergence over a call with a top-k teacher.</summary>
internal readonly unsafe ref struct TopKRun(in TopKTeacherDistribution teacher, in LossCall call, float temperature, double valueScale) : IDivergenceVisitor<LossResult>
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
        {
            var kernel = TopKKernel.Create(op, _teacher, ids, values, halves, s, temperature, _call.Path);
            return TopKEngine.Drive(kernel, valueScale, _call);
        }
    }
}

/// <summary>Builds a <see cref="TopKRowKernel{TOp}"/> from a teacher's pinned buffers.</summary>
internal static unsafe class TopKKernel
{
    // streaming: whether the gradient rows may be written with streaming stores (not when a label term is added at once).
    public static TopKRowKernel<TOp> Create<TOp>(TOp op, in TopKTeacherDistribution teacher, int* ids, float* values, Half* halves, float* student, float temperature, KernelPath path, bool streaming = true)
        where TOp : struct, IDivergenceOp =>
        new(op, ids, teacher.IsHalfPrecision ? null : values, teacher.IsHalfPrecision ? halves : null, teacher.K, teacher.Residual, (double)teacher.GenerationTemperature / temperature, student, teacher.VocabularySize, temperature, path, streaming);
}
