using System;
using Distillation.Internal;
using Distillation.Kernels.Divergences;

namespace Distillation.Kernels;

/// <summary>Everything one loss call needs, already shaped (rows and vocabulary agree).</summary>
internal readonly ref struct LossCall
{
    public ReadOnlySpan<float> Teacher { get; init; }

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
}

/// <summary>Validates a call, picks the row kernel and runs the driver. The one place divergences are listed.</summary>
internal static unsafe class LossEngine
{
    public static LossResult Divergence(Divergence divergence, float temperature, TemperatureScaling scaling, in LossCall call)
    {
        Validate(call);
        double valueScale = scaling == TemperatureScaling.Squared ? (double)temperature * temperature : 1;
        double parameter = divergence.Parameter;
        return divergence.Kind switch
        {
            DivergenceKind.ForwardKL => Run(new ForwardKLOp(), temperature, valueScale, call),
            DivergenceKind.SoftCrossEntropy => Run(new SoftCrossEntropyOp(), temperature, valueScale, call),
            DivergenceKind.ReverseKL => Run(new ReverseKLOp(), temperature, valueScale, call),
            DivergenceKind.GeneralizedJsd when parameter == 0 => Run(new ForwardKLOp(), temperature, valueScale, call),
            DivergenceKind.GeneralizedJsd when parameter == 1 => Run(new ReverseKLOp(), temperature, valueScale, call),
            DivergenceKind.GeneralizedJsd => Run(new GeneralizedJsdOp(parameter), temperature, valueScale, call),
            DivergenceKind.SkewKL when parameter == 0 => Run(new ForwardKLOp(), temperature, valueScale, call),
            DivergenceKind.SkewKL => Run(new SkewKLOp(parameter), temperature, valueScale, call),
            DivergenceKind.SkewReverseKL when parameter == 0 => Run(new ReverseKLOp(), temperature, valueScale, call),
            DivergenceKind.SkewReverseKL => Run(new SkewReverseKLOp(parameter), temperature, valueScale, call),
            DivergenceKind.TotalVariation => Run(new TotalVariationOp(), temperature, valueScale, call),
            _ => throw new ArgumentException("The divergence is unspecified (default); use one of Divergence's members.", nameof(divergence)),
        };
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

    private static LossResult Run<TOp>(TOp op, float temperature, double valueScale, in LossCall call)
        where TOp : struct, IDivergenceOp
    {
        fixed (float* t = call.Teacher)
        fixed (float* s = call.Student)
        {
            var kernel = new DivergenceRowKernel<TOp>(op, t, call.TeacherKind, s, call.VocabularySize, temperature, call.Path);
            return Drive(kernel, valueScale, call);
        }
    }

    private static LossResult Drive<TKernel>(in TKernel kernel, double valueScale, in LossCall call)
        where TKernel : struct, IRowKernel
    {
        var selection = new RowSelection(call.Rows, call.Layout is null ? default : call.Layout.Mask.Span, call.Labels.Ids.Span, call.Labels.IgnoreIndex, call.Layout, call.RowWeights);
        LossResult result = LossDriver.Run(kernel, call.VocabularySize, selection, call.WantsGradient ? call.Gradient : default, call.RowLosses, call.Reduction, valueScale, call.MaxThreads, out RowFailure failure);
        if (failure.Status != RowStatus.Ok)
        {
            throw InputChecks.RowFailure(failure, call.Teacher, call.TeacherKind, call.Student, call.StudentKind == 0 ? DistributionKind.Logits : call.StudentKind, call.VocabularySize, call.TeacherName, call.StudentName);
        }

        return result;
    }

    private static void Validate(in LossCall call)
    {
        if (call.Labels.Length != 0)
        {
            InputChecks.Labels(call.Labels, call.Rows, call.VocabularySize, call.LabelsName);
        }

        if (call.WantsGradient)
        {
            InputChecks.Output(call.Gradient, call.Rows * call.VocabularySize, call.GradientName, call.Teacher, call.Student, "gradient");
        }

        InputChecks.RowLosses(call.RowLosses, call.Reduction, call.Rows, call.WantsGradient ? call.Gradient : default, call.Teacher, call.Student, call.RowLossesName);
        InputChecks.RowWeights(call.RowWeights, call.Rows, call.RowWeightsName ?? "rowWeights");
    }
}
