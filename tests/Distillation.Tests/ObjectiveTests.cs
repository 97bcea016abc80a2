using System.Text.Json;
using Distillation.Kernels;

namespace Distillation.Tests;

/// <summary>The combined objective: endpoints exact, the mix and its gradient, the token rules, metrics and schedules.</summary>
public class ObjectiveTests
{
    private const int Vocab = 40;

    [Theory]
    [InlineData("ForwardKL")]
    [InlineData("GeneralizedJsd")]
    [InlineData("ReverseKL")]
    public void LambdaOne_IsExactlyTheDistillationLoss(string kind)
    {
        Divergence d = kind switch { "GeneralizedJsd" => Divergence.GeneralizedJsd(0.4), "ReverseKL" => Divergence.ReverseKL, _ => Divergence.ForwardKL };
        (TeacherDistribution t, StudentDistribution s, TokenLabels y) = Batch(seed: 1);
        var objective = new DistillationObjective(d, 2f, LambdaSchedule.Constant(1));
        var g = new float[s.Values.Length];
        ObjectiveResult r = objective.Compute(t, s, y, g, step: 5);

        var expectedGradient = new float[g.Length];
        LossResult kd = new DistillationLoss(d, 2f, TemperatureScaling.Squared).Compute(t, s, expectedGradient, Reduction.MeanOverTokens, y);
        r.Total.Should().Be(kd.Value);
        r.Distillation.Should().Be(kd.Value);
        r.Lambda.Should().Be(1);
        g.Should().Equal(expectedGradient);
    }

    [Fact]
    public void LambdaZero_IsExactlyTheLanguageModelLoss_EvenWhenTheDistillationTermIsInfinite()
    {
        (TeacherDistribution t, StudentDistribution s, TokenLabels y) = Batch(seed: 2);
        float[] student = s.Values.ToArray();
        int label0 = y.Ids.Span[0];
        int other = (label0 + 1) % Vocab;
        student[other] = float.NegativeInfinity; // the teacher has mass there: forward KL of row 0 is +∞
        s = StudentDistribution.FromLogits(student, Vocab, s.Layout);
        var objective = new DistillationObjective(Divergence.ForwardKL, 2f, LambdaSchedule.Constant(0));
        var g = new float[student.Length];
        ObjectiveResult r = objective.Compute(t, s, y, g, step: 0);

        var expectedGradient = new float[g.Length];
        LossResult lm = new LanguageModelLoss().Compute(s, y, expectedGradient);
        r.Distillation.Should().Be(double.PositiveInfinity, "the KD part is still reported");
        r.Total.Should().Be(lm.Value);
        r.LanguageModel.Should().Be(lm.Value);
        g.Should().Equal(expectedGradient);
    }

    [Theory]
    [InlineData(ObjectiveForm.Interpolated, TemperatureScaling.Squared, 0f)]
    [InlineData(ObjectiveForm.Interpolated, TemperatureScaling.None, 0.1f)]
    [InlineData(ObjectiveForm.Additive, TemperatureScaling.Squared, 0.05f)]
    public void Total_IsTheLambdaMix_AndItsGradientMatchesFiniteDifferences(ObjectiveForm form, TemperatureScaling scaling, float smoothing)
    {
        const int vocab = 7;
        var layout = SequenceLayout.Padded([2, 3], 3);
        var random = new Random(3);
        float[] teacher = TestSupport.RandomLogits(random, layout.RowCount * vocab);
        float[] student = TestSupport.RandomLogits(random, layout.RowCount * vocab);
        int[] labels = [1, 4, -100, 0, 6, 2]; // row 2 is padding, its label ignored
        var options = new DistillationObjectiveOptions
        {
            Divergence = Divergence.SkewKL(0.1),
            Temperature = 1.5f,
            TemperatureScaling = scaling,
            Lambda = LambdaSchedule.Linear(0.2, 0.8, 10),
            Form = form,
            LabelSmoothing = smoothing,
        };
        var objective = new DistillationObjective(options);
        var g = new float[student.Length];
        ObjectiveResult r = objective.Compute(TeacherDistribution.FromLogits(teacher, vocab, layout), StudentDistribution.FromLogits(student, vocab, layout), new TokenLabels(labels), g, step: 5);
        r.Lambda.Should().BeApproximately(0.5, 1e-15);
        r.TokenCount.Should().Be(5);
        double lmWeight = form == ObjectiveForm.Interpolated ? 0.5 : 1;
        r.Total.Should().BeApproximately((0.5 * r.Distillation) + (lmWeight * r.LanguageModel), 1e-12);

        int[] real = [0, 1, 3, 4, 5];
        double t2 = scaling == TemperatureScaling.Squared ? 1.5 * 1.5 : 1;
        double Objective(double[] s)
        {
            double kd = 0, lm = 0;
            foreach (int row in real)
            {
                double[] sr = s.Skip(row * vocab).Take(vocab).ToArray();
                kd += DoubleFormulas.Row(options.Divergence, teacher.Skip(row * vocab).Take(vocab).Select(v => (double)v).ToArray(), sr, 1.5);
                lm += DoubleFormulas.LanguageModel(sr, labels[row], smoothing);
            }

            return ((0.5 * t2 * kd) + (lmWeight * lm)) / real.Length;
        }

        double[] all = student.Select(v => (double)v).ToArray();
        ReferenceValueTests.AssertValue(r.Total, Objective(all), "total");
        ReferenceValueTests.AssertGradientRow(g, DoubleFormulas.Gradient(Objective, all), "objective gradient");
        g.Skip(2 * vocab).Take(vocab).Should().OnlyContain(v => v == 0, "the padding row");
    }

    [Fact]
    public void TeacherCorrectness_DistilsOnlyWhereTheTeachersTopOneIsTheLabel()
    {
        const int vocab = 4;
        float[] teacher =
        [
            5, 0, 0, 0,   // top-1 = 0
            0, 5, 0, 0,   // top-1 = 1
            0, 0, 5, 0,   // top-1 = 2
            0, 0, 0, 5,   // top-1 = 3
        ];
        var random = new Random(4);
        float[] student = TestSupport.RandomLogits(random, 16);
        int[] labels = [0, 2, 2, 1]; // the teacher is right on rows 0 and 2
        var options = new DistillationObjectiveOptions { Lambda = LambdaSchedule.Constant(0.8), TokenWeighting = TokenWeighting.TeacherCorrectness, MismatchWeight = 0.25, TemperatureScaling = TemperatureScaling.None };
        var g = new float[16];
        ObjectiveResult r = new DistillationObjective(options).Compute(TeacherDistribution.FromLogits(teacher, vocab), StudentDistribution.FromLogits(student, vocab), new TokenLabels(labels), g, 0);

        double[] lambdas = [0.8, 0.2, 0.8, 0.2];
        r.MeanTokenLambda.Should().BeApproximately(0.5, 1e-7);
        var kdRows = new float[4];
        var lmRows = new float[4];
        new DistillationLoss(Divergence.ForwardKL).Evaluate(TeacherDistribution.FromLogits(teacher, vocab), StudentDistribution.FromLogits(student, vocab), Reduction.None, rowLosses: kdRows);
        new LanguageModelLoss().Evaluate(StudentDistribution.FromLogits(student, vocab), new TokenLabels(labels), Reduction.None, lmRows);
        double expected = Enumerable.Range(0, 4).Sum(i => (lambdas[i] * kdRows[i]) + ((1 - lambdas[i]) * lmRows[i])) / 4;
        r.Total.Should().BeApproximately(expected, 1e-6);

        // The gradient is the per-row mix: check one wrong and one right row against the two losses' gradients.
        var gKd = new float[16];
        var gLm = new float[16];
        new DistillationLoss(Divergence.ForwardKL).Compute(TeacherDistribution.FromLogits(teacher, vocab), StudentDistribution.FromLogits(student, vocab), gKd, Reduction.MeanOverTokens);
        new LanguageModelLoss().Compute(StudentDistribution.FromLogits(student, vocab), new TokenLabels(labels), gLm);
        for (int i = 0; i < 16; i++)
        {
            g[i].Should().BeApproximately((float)((lambdas[i / 4] * gKd[i]) + ((1 - lambdas[i / 4]) * gLm[i])), 1e-6f);
        }
    }

    [Fact]
    public void TeacherConfidence_ScalesLambdaByTheTeachersTopProbability()
    {
        const int vocab = 3;
        float[] teacher = [MathF.Log(0.7f), MathF.Log(0.2f), MathF.Log(0.1f), MathF.Log(0.5f), MathF.Log(0.25f), MathF.Log(0.25f)];
        float[] student = [0.1f, 0.2f, 0.3f, -0.5f, 0.4f, 0f];
        var options = new DistillationObjectiveOptions { Lambda = LambdaSchedule.Constant(0.6), TokenWeighting = TokenWeighting.TeacherConfidence, Temperature = 2f };
        ObjectiveResult r = new DistillationObjective(options).Compute(TeacherDistribution.FromLogits(teacher, vocab), StudentDistribution.FromLogits(student, vocab), new TokenLabels(new[] { 0, 2 }), new float[6], 0);
        r.MeanTokenLambda.Should().BeApproximately(0.6 * (0.7 + 0.5) / 2, 1e-6);
        r.Lambda.Should().Be(0.6);
    }

    [Fact]
    public void Metrics_OnAHandBuiltBatch()
    {
        const int vocab = 4;
        float[] teacher = [0, 0, 0, 0, 9, 0, 0, 0];       // uniform; confident in token 0
        float[] student = [0, 3, 0, 0, 4, 0, 0, 0];       // top-1 1; top-1 0
        var objective = new DistillationObjective(Divergence.ForwardKL, 1f, LambdaSchedule.Constant(0.5));
        ObjectiveResult r = objective.Compute(TeacherDistribution.FromLogits(teacher, vocab), StudentDistribution.FromLogits(student, vocab), new TokenLabels(new[] { 0, 0 }), new float[8], 0, computeMetrics: true);
        ObjectiveMetrics m = r.Metrics!.Value;
        double[] confident = DoubleFormulas.LogSoftmax([9, 0, 0, 0], 1);
        double[] s0 = DoubleFormulas.LogSoftmax([0, 3, 0, 0], 1), s1 = DoubleFormulas.LogSoftmax([4, 0, 0, 0], 1);
        double Entropy(double[] lp) => -lp.Sum(l => Math.Exp(l) * l);
        m.TeacherEntropy.Should().BeApproximately((Math.Log(4) + Entropy(confident)) / 2, 1e-6);
        m.StudentEntropy.Should().BeApproximately((Entropy(s0) + Entropy(s1)) / 2, 1e-6);
        m.TopOneAgreement.Should().Be(0.5, "row 0: teacher ties resolve to token 0, the student picks 1; row 1 agrees");
        m.TeacherLabelAgreement.Should().Be(1);
        objective.Compute(TeacherDistribution.FromLogits(teacher, vocab), StudentDistribution.FromLogits(student, vocab), new TokenLabels(new[] { 0, 0 }), new float[8], 0).Metrics.Should().BeNull();
    }

    [Fact]
    public void AllRowsExcluded_GiveZeros()
    {
        (TeacherDistribution t, StudentDistribution s, _) = Batch(seed: 5);
        var g = Enumerable.Repeat(7f, s.Values.Length).ToArray();
        ObjectiveResult r = new DistillationObjective(Divergence.ReverseKL, 2f, LambdaSchedule.Constant(0.3)).Compute(t, s, new TokenLabels(Enumerable.Repeat(-100, t.RowCount).ToArray()), g, 0, computeMetrics: true);
        r.Total.Should().Be(0);
        r.TokenCount.Should().Be(0);
        g.Should().OnlyContain(v => v == 0);
        r.Metrics!.Value.Should().Be(new ObjectiveMetrics(0, 0, 0, 0));
    }

    [Fact]
    public void Results_AreBitIdenticalAcrossThreadCounts()
    {
        const int vocab = 6000, rows = 24;
        var random = new Random(6);
        var t = TeacherDistribution.FromLogits(TestSupport.RandomLogits(random, rows * vocab), vocab);
        var s = StudentDistribution.FromLogits(TestSupport.RandomLogits(random, rows * vocab), vocab);
        var y = new TokenLabels(Enumerable.Range(0, rows).Select(r => r % 5 == 0 ? -100 : random.Next(vocab)).ToArray());
        var options = new DistillationObjectiveOptions { Lambda = LambdaSchedule.Constant(0.7), TokenWeighting = TokenWeighting.TeacherConfidence, Temperature = 2f };
        var g1 = new float[rows * vocab];
        var g3 = new float[rows * vocab];
        ObjectiveResult r1 = new DistillationObjective(options) { MaxDegreeOfParallelism = 1 }.Compute(t, s, y, g1, 0, computeMetrics: true);
        ObjectiveResult r3 = new DistillationObjective(options) { MaxDegreeOfParallelism = 3 }.Compute(t, s, y, g3, 0, computeMetrics: true);
        r3.Should().Be(r1);
        g3.Should().Equal(g1);
    }

    [Fact]
    public void Schedules_HaveTheirValuesAtKnownSteps()
    {
        LambdaSchedule.Constant(0.3).ValueAt(12345).Should().Be(0.3);
        LambdaSchedule linear = LambdaSchedule.Linear(0.9, 0.1, 100);
        linear.ValueAt(0).Should().Be(0.9);
        linear.ValueAt(50).Should().BeApproximately(0.5, 1e-15);
        linear.ValueAt(100).Should().Be(0.1);
        linear.ValueAt(1000).Should().Be(0.1);
        LambdaSchedule cosine = LambdaSchedule.Cosine(0.9, 0.3, 20_000);
        cosine.ValueAt(0).Should().Be(0.9);
        cosine.ValueAt(10_000).Should().BeApproximately(0.6, 1e-12);
        cosine.ValueAt(20_000).Should().Be(0.3);
        LambdaSchedule decay = LambdaSchedule.ExponentialDecay(1, 0.2, halfLife: 10);
        decay.ValueAt(0).Should().Be(1);
        decay.ValueAt(10).Should().BeApproximately(0.6, 1e-15);
        decay.ValueAt(20).Should().BeApproximately(0.4, 1e-15);
        LambdaSchedule steps = LambdaSchedule.Piecewise([100, 200], [1, 0.5, 0]);
        steps.ValueAt(99).Should().Be(1);
        steps.ValueAt(100).Should().Be(0.5);
        steps.ValueAt(199).Should().Be(0.5);
        steps.ValueAt(200).Should().Be(0);
        LambdaSchedule warm = LambdaSchedule.WarmUp(10, LambdaSchedule.Constant(0.8));
        warm.ValueAt(0).Should().Be(0);
        warm.ValueAt(5).Should().BeApproximately(0.4, 1e-15);
        warm.ValueAt(10).Should().Be(0.8);
        FluentActions.Invoking(() => linear.ValueAt(-1)).Should().ThrowExactly<ArgumentOutOfRangeException>().WithParameterName("step");
    }

    [Fact]
    public void Schedules_RejectLambdaOutsideTheUnitInterval()
    {
        FluentActions.Invoking(() => LambdaSchedule.Constant(1.5)).Should().ThrowExactly<ArgumentOutOfRangeException>().WithParameterName("value");
        FluentActions.Invoking(() => LambdaSchedule.Linear(-0.1, 0.5, 10)).Should().ThrowExactly<ArgumentOutOfRangeException>().WithParameterName("from");
        FluentActions.Invoking(() => LambdaSchedule.Cosine(0.5, double.NaN, 10)).Should().ThrowExactly<ArgumentOutOfRangeException>().WithParameterName("to");
        FluentActions.Invoking(() => LambdaSchedule.Linear(0, 1, 0)).Should().ThrowExactly<ArgumentOutOfRangeException>().WithParameterName("steps");
        FluentActions.Invoking(() => LambdaSchedule.Piecewise([10, 5], [1, 1, 1])).Should().ThrowExactly<ArgumentException>().WithParameterName("boundaries");
        FluentActions.Invoking(() => LambdaSchedule.Piecewise([10], [1])).Should().ThrowExactly<ArgumentException>().WithParameterName("values");
        FluentActions.Invoking(() => LambdaSchedule.ExponentialDecay(1, 0, 0)).Should().ThrowExactly<ArgumentOutOfRangeException>().WithParameterName("halfLife");
        FluentActions.Invoking(() => new DistillationObjectiveOptions { MismatchWeight = 2 }).Should().ThrowExactly<ArgumentOutOfRangeException>();
        FluentActions.Invoking(() => new DistillationObjectiveOptions { Temperature = 0 }).Should().ThrowExactly<ArgumentOutOfRangeException>();
    }

    [Fact]
    public void Options_RoundTripThroughSystemTextJson()
    {
        var options = new DistillationObjectiveOptions
        {
            Divergence = Divergence.GeneralizedJsd(0.3),
            Temperature = 2f,
            Lambda = LambdaSchedule.WarmUp(500, LambdaSchedule.Piecewise([1000, 5000], [0.9, 0.5, 0.2]), from: 0.1),
            Form = ObjectiveForm.Additive,
            LabelSmoothing = 0.1f,
            TokenWeighting = TokenWeighting.TeacherCorrectness,
            MismatchWeight = 0.25,
        };
        string json = JsonSerializer.Serialize(options, DistillationObjectiveOptions.JsonOptions);
        json.Should().Contain("\"type\": \"warmup\"").And.Contain("\"kind\": \"GeneralizedJsd\"").And.Contain("TeacherCorrectness");
        DistillationObjectiveOptions? back = JsonSerializer.Deserialize<DistillationObjectiveOptions>(json, DistillationObjectiveOptions.JsonOptions);
        back.Should().Be(options);
        back!.Lambda.ValueAt(3000).Should().Be(0.5);

        string bad = json.Replace("0.9", "1.9", StringComparison.Ordinal);
        FluentActions.Invoking(() => JsonSerializer.Deserialize<DistillationObjectiveOptions>(bad, DistillationObjectiveOptions.JsonOptions))
            .Should().Throw<ArgumentOutOfRangeException>().WithMessage("*λ must lie in [0, 1]*");
    }

    [Fact]
    public void Evaluate_GivesTheValueOfCompute()
    {
        (TeacherDistribution t, StudentDistribution s, TokenLabels y) = Batch(seed: 8);
        var objective = new DistillationObjective(Divergence.GeneralizedJsd(0.5), 2f, LambdaSchedule.Constant(0.4));
        ObjectiveResult computed = objective.Compute(t, s, y, new float[s.Values.Length], 3, computeMetrics: true);
        objective.Evaluate(t, s, y, 3, computeMetrics: true).Should().Be(computed);
    }

    [Fact]
    public void ShortConstructor_NamesItsOwnParameters()
    {
        FluentActions.Invoking(() => new DistillationObjective(Divergence.ForwardKL, 0f, LambdaSchedule.Constant(1)))
            .Should().ThrowExactly<ArgumentOutOfRangeException>().WithParameterName("temperature");
        FluentActions.Invoking(() => new DistillationObjective(default, 1f, LambdaSchedule.Constant(1)))
            .Should().ThrowExactly<ArgumentException>().WithParameterName("divergence");
        FluentActions.Invoking(() => new DistillationObjective(Divergence.ForwardKL, 1f, null!))
            .Should().ThrowExactly<ArgumentNullException>().WithParameterName("lambda");
    }

    [Theory]
    [InlineData("{\"kind\": \"ForwardKL, ReverseKL\"}")]
    [InlineData("{\"kind\": 1}")]
    [InlineData("{\"kind\": \"Unspecified\"}")]
    [InlineData("{\"kind\": \"GeneralizedJsd\", \"parameter\": \"0.5\"}")]
    [InlineData("{\"kind\": \"SkewKL\", \"parameter\": 1}")]
    public void DivergenceJson_RejectsWhatIsNotADivergence(string json) =>
        FluentActions.Invoking(() => System.Text.Json.JsonSerializer.Deserialize<Divergence>(json)).Should().Throw<System.Text.Json.JsonException>();

    private static (TeacherDistribution, StudentDistribution, TokenLabels) Batch(int seed)
    {
        var layout = SequenceLayout.Padded([4, 2, 3], 4);
        var random = new Random(seed);
        float[] t = TestSupport.RandomLogits(random, layout.RowCount * Vocab);
        float[] s = TestSupport.RandomLogits(random, layout.RowCount * Vocab);
        int[] labels = Enumerable.Range(0, layout.RowCount).Select(r => layout.IsRowReal(r) ? random.Next(Vocab) : -100).ToArray();
        labels[1] = -100;
        return (TeacherDistribution.FromLogits(t, Vocab, layout), StudentDistribution.FromLogits(s, Vocab, layout), new TokenLabels(labels));
    }
}
