namespace Distillation.Tests;

/// <summary>The combined objective with a top-k teacher.</summary>
public class SparseObjectiveTests
{
    [Theory]
    [InlineData(TokenWeighting.None)]
    [InlineData(TokenWeighting.TeacherConfidence)]
    [InlineData(TokenWeighting.TeacherCorrectness)]
    public void Objective_WithKEqualToV_EqualsTheDenseObjective(TokenWeighting rule)
    {
        const int vocab = 120, rows = 10;
        var random = new Random(4);
        float[] teacherLogits = TestSupport.RandomLogits(random, rows * vocab);
        float[] student = TestSupport.RandomLogits(random, rows * vocab);
        (int[] ids, float[] logp) = SparseTeacherTests.TopK(teacherLogits, vocab, vocab, random);
        float[] dense = new float[rows * vocab];
        for (int n = 0; n < ids.Length; n++)
        {
            dense[((n / vocab) * vocab) + ids[n]] = logp[n];
        }

        int[] labelIds = Enumerable.Range(0, rows).Select(r => r == 3 ? -100 : random.Next(vocab)).ToArray();
        labelIds[5] = Array.IndexOf(dense, dense.Skip(5 * vocab).Take(vocab).Max(), 5 * vocab) - (5 * vocab); // one row where the teacher is right
        var labels = new TokenLabels(labelIds);
        var layout = SequenceLayout.Padded([4, 5], maxLength: 5);
        var objective = new DistillationObjective(new DistillationObjectiveOptions { Divergence = Divergence.GeneralizedJsd(0.3), Temperature = 2f, TokenWeighting = rule, MismatchWeight = 0.25, LabelSmoothing = 0.1f });
        foreach (ResidualMassPolicy policy in SparseTeacherTests.Policies)
        {
            float[] gSparse = new float[student.Length], gDense = new float[student.Length];
            ObjectiveResult a = objective.Compute(TopKTeacherDistribution.FromLogProbabilities(ids, logp, vocab, vocab, policy, layout), StudentDistribution.FromLogits(student, vocab, layout), labels, gSparse, step: 7, computeMetrics: true);
            ObjectiveResult b = objective.Compute(TeacherDistribution.FromLogProbabilities(dense, vocab, layout), StudentDistribution.FromLogits(student, vocab, layout), labels, gDense, step: 7, computeMetrics: true);
            a.Total.Should().BeApproximately(b.Total, 1e-5 * Math.Abs(b.Total), $"{policy}");
            a.Distillation.Should().BeApproximately(b.Distillation, 1e-5 * Math.Abs(b.Distillation));
            a.LanguageModel.Should().Be(b.LanguageModel);
            a.MeanTokenLambda.Should().BeApproximately(b.MeanTokenLambda, 1e-6);
            a.TokenCount.Should().Be(b.TokenCount);
            a.Metrics!.Value.TeacherEntropy.Should().BeApproximately(b.Metrics!.Value.TeacherEntropy, 1e-5);
            a.Metrics!.Value.StudentEntropy.Should().Be(b.Metrics!.Value.StudentEntropy);
            a.Metrics!.Value.TopOneAgreement.Should().Be(b.Metrics!.Value.TopOneAgreement);
            a.Metrics!.Value.TeacherLabelAgreement.Should().Be(b.Metrics!.Value.TeacherLabelAgreement);
            float scale = 1e-5f * Math.Max(1f, gDense.Max(Math.Abs));
            for (int j = 0; j < gDense.Length; j++)
            {
                gSparse[j].Should().BeApproximately(gDense[j], scale);
            }
        }
    }

    [Fact]
    public void Objective_WithSmallK_IsLambdaTimesTheTopKLossPlusTheHardLoss()
    {
        const int vocab = 300, k = 20, rows = 12;
        var random = new Random(9);
        (int[] ids, float[] logp) = SparseTeacherTests.TopK(TestSupport.RandomLogits(random, rows * vocab), vocab, k, random);
        float[] student = TestSupport.RandomLogits(random, rows * vocab);
        var labels = new TokenLabels(Enumerable.Range(0, rows).Select(_ => random.Next(vocab)).ToArray());
        var teacher = TopKTeacherDistribution.FromLogProbabilities(ids, logp.Select(x => (Half)x).ToArray().AsMemory(), k, vocab, ResidualMassPolicy.RestBucket);
        var s = StudentDistribution.FromLogits(student, vocab);
        foreach (double lambda in new[] { 0.0, 0.4, 1.0 })
        {
            var objective = new DistillationObjective(Divergence.ReverseKL, 1.5f, LambdaSchedule.Constant(lambda));
            float[] g = new float[student.Length], gKd = new float[student.Length], gLm = new float[student.Length];
            ObjectiveResult r = objective.Compute(teacher, s, labels, g, 0);
            objective.Evaluate(teacher, s, labels, 0).Should().Be(r, "Evaluate is Compute without the gradient");
            LossResult kd = new DistillationLoss(Divergence.ReverseKL, 1.5f, TemperatureScaling.Squared).Compute(teacher, s, gKd);
            LossResult lm = new LanguageModelLoss().Compute(s, labels, gLm);
            r.Distillation.Should().BeApproximately(kd.Value, 1e-12);
            r.LanguageModel.Should().BeApproximately(lm.Value, 1e-12);
            r.Total.Should().BeApproximately((lambda * kd.Value) + ((1 - lambda) * lm.Value), 1e-12);
            if (lambda == 1)
            {
                g.Should().Equal(gKd);
            }
            else if (lambda == 0)
            {
                g.Should().Equal(gLm);
            }
            else
            {
                for (int j = 0; j < g.Length; j++)
                {
                    g[j].Should().BeApproximately((float)((lambda * gKd[j]) + ((1 - lambda) * gLm[j])), 1e-6f);
                }
            }
        }
    }
}
