using Distillation.Kernels;

namespace Distillation.Tests;

/// <summary>A teacher stored as Half computes exactly what the same values widened to float compute.</summary>
public class HalfTeacherTests
{
    [Theory]
    [InlineData(5)]
    [InlineData(37)]
    [InlineData(5000)]
    public void HalfTeacher_IsBitIdenticalToTheWidenedFloatTeacher(int vocab)
    {
        const int rows = 6;
        var random = new Random(vocab);
        Half[] half = TestSupport.RandomLogits(random, rows * vocab).Select(v => (Half)v).ToArray();
        half[3] = Half.NegativeInfinity;
        float[] widened = half.Select(v => (float)v).ToArray();
        float[] student = TestSupport.RandomLogits(random, rows * vocab);
        var s = StudentDistribution.FromLogits(student, vocab);
        foreach (KernelPath path in TestSupport.Paths)
        {
            foreach (Divergence d in TestSupport.AllDivergences)
            {
                var loss = new DistillationLoss(d, 1.7f);
                float[] gHalf = new float[student.Length], gFloat = new float[student.Length];
                float[] rHalf = new float[rows], rFloat = new float[rows];
                LossResult a = loss.ComputeCore(TeacherDistribution.FromLogits(half.AsMemory(), vocab), s, gHalf, true, Reduction.None, default, rHalf, path);
                LossResult b = loss.ComputeCore(TeacherDistribution.FromLogits(widened, vocab), s, gFloat, true, Reduction.None, default, rFloat, path);
                a.Should().Be(b, $"{d} on {path}");
                rHalf.Should().Equal(rFloat);
                gHalf.Should().Equal(gFloat);
            }
        }
    }

    [Fact]
    public void HalfTeacher_WorksWithTheObjectiveAndItsTokenRules()
    {
        const int vocab = 300, rows = 8;
        var random = new Random(3);
        Half[] half = TestSupport.RandomLogits(random, rows * vocab).Select(v => (Half)v).ToArray();
        float[] widened = half.Select(v => (float)v).ToArray();
        float[] student = TestSupport.RandomLogits(random, rows * vocab);
        var labels = new TokenLabels(Enumerable.Range(0, rows).Select(_ => random.Next(vocab)).ToArray());
        foreach (TokenWeighting rule in new[] { TokenWeighting.None, TokenWeighting.TeacherConfidence, TokenWeighting.TeacherCorrectness })
        {
            var objective = new DistillationObjective(new DistillationObjectiveOptions { Divergence = Divergence.GeneralizedJsd(0.5), Temperature = 2f, TokenWeighting = rule, MismatchWeight = 0.5 });
            float[] gHalf = new float[student.Length], gFloat = new float[student.Length];
            ObjectiveResult a = objective.Compute(TeacherDistribution.FromLogProbabilities(half.AsMemory(), vocab), StudentDistribution.FromLogits(student, vocab), labels, gHalf, 3, computeMetrics: true);
            ObjectiveResult b = objective.Compute(TeacherDistribution.FromLogProbabilities(widened, vocab), StudentDistribution.FromLogits(student, vocab), labels, gFloat, 3, computeMetrics: true);
            a.Should().Be(b, $"{rule}");
            gHalf.Should().Equal(gFloat);
        }
    }

    [Fact]
    public void HalfTeacher_NaNIsReportedWithRowAndColumn()
    {
        const int vocab = 40;
        Half[] half = new Half[3 * vocab];
        half[(2 * vocab) + 17] = Half.NaN;
        var loss = new DistillationLoss(Divergence.ForwardKL);
        FluentActions.Invoking(() => loss.Compute(TeacherDistribution.FromLogits(half.AsMemory(), vocab), StudentDistribution.FromLogits(new float[3 * vocab], vocab), new float[3 * vocab]))
            .Should().ThrowExactly<ArgumentException>().WithParameterName("teacher").WithMessage("*row 2, column 17 is NaN*");
        TeacherDistribution.FromLogits(half.AsMemory(), vocab).IsHalfPrecision.Should().BeTrue();
        TeacherDistribution.FromLogits(half.AsMemory(), vocab).Values.IsEmpty.Should().BeTrue();
    }
}
