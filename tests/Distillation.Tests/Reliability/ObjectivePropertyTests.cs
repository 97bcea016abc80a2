using CsCheck;
using Distillation.Kernels;
using Xunit.Abstractions;

namespace Distillation.Tests.Reliability;

/// <summary>Property tests of <see cref="DistillationObjective"/>: exact λ endpoints, the λ mix, no NaN for any λ.</summary>
public sealed class ObjectivePropertyTests(ITestOutputHelper output)
{
    /// <summary>One objective call's configuration.</summary>
    internal sealed record Setup(Divergence Divergence, Batch Batch, Reduction Reduction, TemperatureScaling Scaling, ObjectiveForm Form, float Smoothing, TokenWeighting Rule, double Mismatch, int Schedule, double From, long Step)
    {
        public override string ToString() => $"{Divergence} {Reduction} {Scaling} {Form} ε={Smoothing} {Rule} mismatch={Mismatch} schedule#{Schedule} from={From} step={Step}\n{Batch}";
    }

    internal static readonly Gen<Setup> Setups =
        from d in Generators.AnyDivergence
        from b in Generators.Batch(Generators.Vocab)
        from reduction in Generators.AnyReduction
        from scaling in Gen.OneOf(TemperatureScaling.None, TemperatureScaling.Squared)
        from form in Gen.OneOf(ObjectiveForm.Interpolated, ObjectiveForm.Additive)
        from eps in Gen.Frequency((2, Gen.Const(0f)), (1, Gen.Float[0f, 1f]))
        from rule in Gen.OneOf(TokenWeighting.None, TokenWeighting.TeacherConfidence, TokenWeighting.TeacherCorrectness)
        from mismatch in Gen.Double[0, 1]
        from schedule in Gen.Int[0, 5]
        from start in Gen.Double[0, 1]
        from step in Gen.Long[0, 1000]
        select new Setup(d, b, reduction, scaling, form, eps, rule, mismatch, schedule, start, step);

    /// <summary>
    /// λ = 1 (Interpolated, no token rule) is exactly the distillation loss with the same scaling — value and gradient
    /// bit for bit; λ = 0 (either form, any token rule) is exactly <see cref="LanguageModelLoss"/> — value and gradient
    /// bit for bit, even where the distillation term is +∞. λ comes from every kind of schedule at a step where it
    /// reaches its end value.
    /// </summary>
    [Fact]
    public void LambdaEndpoints_AreExact()
    {
        Calls.Property(output, "Objective.lambda-endpoints", Gen.Select(Setups, Gen.Bool), c =>
        {
            (Setup x, bool one) = c;
            double lambda = one ? 1 : 0;
            Batch b = x.Batch;
            (LambdaSchedule schedule, long step) = EndingAt(x.Schedule, x.From, lambda, x.Step);
            var options = new DistillationObjectiveOptions
            {
                Divergence = x.Divergence,
                Temperature = b.Temperature,
                TemperatureScaling = x.Scaling,
                Lambda = schedule,
                Form = one ? ObjectiveForm.Interpolated : x.Form,
                LabelSmoothing = x.Smoothing,
                TokenWeighting = one ? TokenWeighting.None : x.Rule,
                MismatchWeight = x.Mismatch,
            };
            var objective = new DistillationObjective(options) { MaxDegreeOfParallelism = 1 };
            var teacher = TeacherDistribution.FromLogits(b.Teacher, b.Vocab, b.Layout);
            var student = StudentDistribution.FromLogits(b.Student, b.Vocab, b.Layout);
            var labels = new TokenLabels(b.Labels);
            var gradient = new float[b.Student.Length];
            ObjectiveResult r = objective.ComputeCore(teacher, student, labels, gradient, step, x.Reduction, false, b.Path);
            Ensure.That(r.Lambda == lambda, () => $"the schedule gives λ = {r.Lambda:R} at its end, not {lambda}\n{x}");
            var expected = new float[gradient.Length];
            if (one)
            {
                LossResult kd = new DistillationLoss(x.Divergence, b.Temperature, x.Scaling) { MaxDegreeOfParallelism = 1 }
                    .ComputeCore(teacher, student, expected, true, x.Reduction, labels, default, b.Path);
                Ensure.That(Calls.BitEqual(r.Total, kd.Value) && Calls.BitEqual(r.Distillation, kd.Value), () => $"λ = 1: total {r.Total:R}, KD part {r.Distillation:R}, DistillationLoss {kd.Value:R}\n{x}");
                Ensure.That(Calls.BitEqual(gradient, expected), () => $"λ = 1: the gradient differs from DistillationLoss's\n{x}");
            }
            else
            {
                LossResult lm = new LanguageModelLoss(x.Smoothing) { MaxDegreeOfParallelism = 1 }
                    .ComputeCore(student, labels, expected, true, x.Reduction, default, b.Path);
                Ensure.That(Calls.BitEqual(r.Total, lm.Value) && Calls.BitEqual(r.LanguageModel, lm.Value), () => $"λ = 0: total {r.Total:R}, LM part {r.LanguageModel:R}, LanguageModelLoss {lm.Value:R}\n{x}");
                Ensure.That(Calls.BitEqual(gradient, expected), () => $"λ = 0: the gradient differs from LanguageModelLoss's\n{x}");
            }
        });
    }

    /// <summary>
    /// Any λ in [0, 1], any form, token rule and reduction, with metrics: nothing is NaN, the gradient is finite, and
    /// without a token rule the total is λ·KD + (1 − λ)·LM (or LM + λ·KD) of the reported parts.
    /// </summary>
    [Fact]
    public void AnyLambda_GivesNoNaN_AndTheMix()
    {
        Calls.Property(output, "Objective.any-lambda", Gen.Select(Setups, Gen.Double[0, 1], Gen.Bool), c =>
        {
            (Setup x, double lambda, bool metrics) = c;
            Batch b = x.Batch;
            var options = new DistillationObjectiveOptions
            {
                Divergence = x.Divergence,
                Temperature = b.Temperature,
                TemperatureScaling = x.Scaling,
                Lambda = LambdaSchedule.Constant(lambda),
                Form = x.Form,
                LabelSmoothing = x.Smoothing,
                TokenWeighting = x.Rule,
                MismatchWeight = x.Mismatch,
            };
            var gradient = new float[b.Student.Length];
            ObjectiveResult r = new DistillationObjective(options) { MaxDegreeOfParallelism = 1 }.ComputeCore(
                TeacherDistribution.FromLogits(b.Teacher, b.Vocab, b.Layout), StudentDistribution.FromLogits(b.Student, b.Vocab, b.Layout), new TokenLabels(b.Labels), gradient, x.Step, x.Reduction, metrics, b.Path);
            Ensure.That(!double.IsNaN(r.Total) && !double.IsNaN(r.Distillation) && !double.IsNaN(r.LanguageModel) && !double.IsNaN(r.MeanTokenLambda), () => $"λ={lambda}: NaN in {r}\n{x}");
            Ensure.That(Calls.AllFinite(gradient), () => $"λ={lambda}: non-finite gradient\n{x}");
            if (r.Metrics is { } m)
            {
                Ensure.That(!double.IsNaN(m.TeacherEntropy) && !double.IsNaN(m.StudentEntropy) && m.TopOneAgreement is >= 0 and <= 1 && m.TeacherLabelAgreement is >= 0 and <= 1, () => $"metrics {m}\n{x}");
            }

            if (x.Rule == TokenWeighting.None && double.IsFinite(r.Distillation) && double.IsFinite(r.LanguageModel))
            {
                double lmWeight = x.Form == ObjectiveForm.Interpolated ? 1 - lambda : 1;
                double mix = (lambda == 0 ? 0 : lambda * r.Distillation) + (lmWeight == 0 ? 0 : lmWeight * r.LanguageModel);
                Ensure.That(Math.Abs(r.Total - mix) <= 1e-12 * Math.Max(1, Math.Abs(mix)), () => $"λ={lambda}: total {r.Total:R} is not the mix {mix:R}\n{x}");
            }
        });
    }

    /// <summary>A schedule of the given kind that is exactly <paramref name="end"/> at the returned step.</summary>
    internal static (LambdaSchedule Schedule, long Step) EndingAt(int kind, double from, double end, long step) => kind switch
    {
        0 => (LambdaSchedule.Constant(end), step),
        1 => (LambdaSchedule.Linear(from, end, 1 + (step % 97)), step + 97),
        2 => (LambdaSchedule.Cosine(from, end, 1 + (step % 97)), step + 97),
        3 => (LambdaSchedule.Piecewise([1 + (step % 50)], [from, end]), step + 50),
        4 => (LambdaSchedule.WarmUp(1 + (step % 20), LambdaSchedule.Constant(end), from), step + 20),
        _ => (LambdaSchedule.ExponentialDecay(from, end, 1), step + 2000),
    };
}
