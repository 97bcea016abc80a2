using System;
using Distillation.Internal;
using Distillation.Kernels.Divergences;

namespace Distillation.Kernels;

/// <summary>Everything one loss call needs, already shaped (rows and vocabulary agree).</summary>
internal readonly ref struct LossCall
{
    public ReadOnlySpan<float> Teacher { get; init; }

    /// <summary>The teacher's values when stored as Half (then <see cref="Teacher"/> is empty).</summary>
    public ReadOnlySpan<Half> TeacherHalf { get; init; }

    public DistributionKind TeacherKind { get; init; }

    public ReadOnlySpan<float> Student { get; init; }

    public DistributionKind StudentKind { get; init; }

    public int VocabularySize { get; init; }

    public int Rows { get; init; }

    public SequenceLayout? Layout { get; init; }

    public TokenLabels Labels { get; init; }

    public Span<float> Gradient { get; init; }

    public bool WantsGradient { get; init; }

    public Span<float> RowLosses { get; init; }

    public ReadOnlySpan<float> RowWeights { get; init; }

    public string RowWeightsName { get; init; }

    public Reduction Reduction { get; init; }

    public int MaxThreads { get; init; }

    public KernelPath Path { get; init; }

    public string TeacherName { get; init; }

    public string StudentName { get; init; }

    public string GradientName { get; init; }

    public string RowLossesName { get; init; }

    public string LabelsName { get; init; }

    /// <summary>
    /// A call over <paramref name="student"/> with the public API's parameter names (teacher, student, studentGradient,
    /// labels, rowLosses, rowWeights); the teacher side is added by the caller with <c>with</c>.
    /// </summary>
    public static LossCall ForStudent(StudentDistribution student, int vocabularySize, int rows, SequenceLayout? layout, TokenLabels labels, Span<float> gradient, bool wantsGradient, Reduction reduction, int maxThreads, KernelPath path) => new()
    {
        TeacherKind = DistributionKind.Logits,
        Student = student.Values.Span,
        StudentKind = student.Kind,
        VocabularySize = vocabularySize,
        Rows = rows,
        Layout = student.Layout ?? layout,
        Labels = labels,
        Gradient = gradient,
        WantsGradient = wantsGradient,
        Reduction = reduction,
        MaxThreads = maxThreads,
        Path = path,
        TeacherName = "teacher",
        StudentName = "student",
        GradientName = "studentGradient",
        RowLossesName = "rowLosses",
        RowWeightsName = "rowWeights",
        LabelsName = "labels",
    };
}

/// <summary>Validates a call, picks the row kernel and runs the driver. The one place divergences are listed.</summary>
internal static unsafe class LossEngine
{
    public static LossResult Divergence(Divergence divergence, float temperature, TemperatureScaling scaling, in LossCall call)
    {
        Validate(call);
        var run = new DivergenceRun(call, temperature, scaling == TemperatureScaling.Squared ? (double)temperature * temperature : 1);
        return Dispatch<DivergenceRun, LossResult>(divergence, ref run);
    }

    /// <summary>Calls <paramref name="visitor"/> with the row op of <paramref name="divergence"/>: the one place divergences are listed.</summary>
    public static TResult Dispatch<TVisitor, TResult>(Divergence divergence, ref TVisitor visitor)
        where TVisitor : IDivergenceVisitor<TResult>, allows ref struct
    {
        double parameter = divergence.Parameter;
        return divergence.Kind switch
        {
            DivergenceKind.ForwardKL => visitor.Visit(new ForwardKLOp()),
            DivergenceKind.SoftCrossEntropy => visitor.Visit(new SoftCrossEntropyOp()),
            DivergenceKind.ReverseKL => visitor.Visit(new ReverseKLOp()),
            DivergenceKind.GeneralizedJsd when parameter == 0 => visitor.Visit(new ForwardKLOp()),
            DivergenceKind.GeneralizedJsd when parameter == 1 => visitor.Visit(new ReverseKLOp()),
            DivergenceKind.GeneralizedJsd => visitor.Visit(new GeneralizedJsdOp(parameter)),
            DivergenceKind.SkewKL when parameter == 0 => visitor.Visit(new ForwardKLOp()),
            DivergenceKind.SkewKL => visitor.Visit(new SkewKLOp(parameter)),
            DivergenceKind.SkewReverseKL when parameter == 0 => visitor.Visit(new ReverseKLOp()),
            DivergenceKind.SkewReverseKL => visitor.Visit(new SkewReverseKLOp(parameter)),
            DivergenceKind.TotalVariation => visitor.Visit(new TotalVariationOp()),
            _ => throw new ArgumentException("The divergence is unspecified (default); use one of Divergence's members.", nameof(divergence)),
        };
    }

    /// <summary>The teacher's entropy at T per real row (metrics): the single-pass kernel with <see cref="EntropyOp"/>.</summary>
    public static LossResult Entropy(float temperature, in LossCall call)
    {
        var run = new DivergenceRun(call, temperature, 1);
        return run.Visit(new EntropyOp());
    }

    public static LossResult LanguageModel(float labelSmoothing, in LossCall call) => Label(labelSmoothing, 1f, call);

    public static LossResult Label(float labelSmoothing, float temperature, in LossCall call)
    {
        if (call.Labels.Length == 0 && call.Rows > 0)
        {
            ThrowHelper.Argument(call.LabelsName, "The hard-label loss needs one label per row.");
        }

        Validate(call);
        fixed (float* s = call.Student)
        fixed (int* y = call.Labels.Ids.Span)
        {
            var kernel = new LabelRowKernel(s, y, call.VocabularySize, labelSmoothing, temperature, call.Path);
            return Drive(kernel, 1, call);
        }
    }

    public static LossResult Drive<TKernel>(in TKernel kernel, double valueScale, in LossCall call)
        where TKernel : struct, IRowKernel
    {
        var selection = new RowSelection(call.Rows, call.Layout is null ? default : call.Layout.Mask.Span, call.Labels.Ids.Span, call.Labels.IgnoreIndex, call.Layout, call.RowWeights);
        LossResult result = LossDriver.Run(kernel, call.VocabularySize, selection, call.WantsGradient ? call.Gradient : default, call.RowLosses, call.Reduction, valueScale, call.MaxThreads, out RowFailure failure);
        if (failure.Status != RowStatus.Ok)
        {
            throw InputChecks.RowFailure(failure, InputChecks.TeacherRowForMessage(call, failure), call.TeacherKind, call.Student.Slice(failure.Row * call.VocabularySize, call.VocabularySize), call.StudentKind == 0 ? DistributionKind.Logits : call.StudentKind, call.TeacherName, call.StudentName);
        }

        return result;
    }

    public static void Validate(in LossCall call)
    {
        if (call.Labels.Length != 0)
        {
            InputChecks.Labels(call.Labels, call.Rows, call.VocabularySize, call.LabelsName);
        }

        if (call.WantsGradient)
        {
            InputChecks.Output(call.Gradient, call.Rows * call.VocabularySize, call.GradientName, call.Teacher, call.Student, "gradient", call.TeacherHalf);
        }

        InputChecks.RowLosses(call.RowLosses, call.Reduction, call.Rows, call.WantsGradient ? call.Gradient : default, call.Teacher, call.Student, call.RowLossesName);
        InputChecks.RowWeights(call.RowWeights, call.Rows, call.RowWeightsName ?? "rowWeights");
    }
}

/// <summary>Something done with a divergence's row op (the op's type is what the JIT specialises on).</summary>
internal interface IDivergenceVisitor<TResult>
{
    TResult Visit<TOp>(TOp op)
        where TOp : struct, IDivergenceOp;
}

/// <summary>Runs one divergence over a call.</summary>
internal readonly unsafe ref struct DivergenceRun(in LossCall call, float temperature, double valueScale) : IDivergenceVisitor<LossResult>
{
    private readonly LossCall _call = call;

    public LossResult Visit<TOp>(TOp op)
        where TOp : struct, IDivergenceOp
    {
        fixed (float* t = _call.Teacher)
        fixed (Half* th = _call.TeacherHalf)
        fixed (float* s = _call.Student)
        {
            var kernel = new DivergenceRowKernel<TOp>(op, t, _call.TeacherKind, s, _call.VocabularySize, temperature, _call.Path, th);
            return LossEngine.Drive(kernel, valueScale, _call);
        }
    }
}
