using static Distillation.TorchSharp.Tests.TorchSupport;

namespace Distillation.TorchSharp.Tests;

/// <summary>DistillationObjective on tensors: λ·T²·KL + (1 − λ)·CE, its parts and its gradient.</summary>
public class ObjectiveTests
{
    [Theory]
    [InlineData(0.0)]
    [InlineData(0.3)]
    [InlineData(1.0)]
    public void Interpolated_MatchesTheWeightedSumOfKlDivAndCrossEntropy(double lambda)
    {
        long[] shape = [2, 6, 120];
        Tensor teacher = Uniform(shape, 50), student = Uniform(shape, 51);
        Tensor labels = Labels([2, 6], 120, 52, ignoreEvery: 5);
        Tensor kept = labels.ne(-100);
        long count = kept.sum().item<long>();
        var objective = new DistillationObjective(Divergence.ForwardKL, 2f, LambdaSchedule.Constant(lambda));

        Tensor Reference(Tensor s)
        {
            Tensor kd = (KlDivRows(teacher, s, 2) * kept).sum() * 4 / count;
            Tensor lm = nn.functional.cross_entropy(s.reshape(12, 120), labels.reshape(12));
            return (lambda * kd) + ((1 - lambda) * lm);
        }

        var ours = ValueAndGradient(student, s => objective.Compute(teacher, s, labels, step: 0));
        var reference = ValueAndGradient(student, Reference);

        ValueShouldMatch(ours.Value, reference.Value);
        GradientShouldMatch(ours.Gradient, reference.Gradient);
    }

    [Fact]
    public void ReportsItsPartsForLogging()
    {
        long[] shape = [10, 64];
        Tensor teacher = Uniform(shape, 53), student = Uniform(shape, 54, requiresGrad: true);
        Tensor labels = Labels([10], 64, 55);
        var objective = new DistillationObjective(Divergence.ForwardKL, 2f, LambdaSchedule.Constant(0.25));

        Tensor total = objective.Compute(TeacherTensor.FromLogits(teacher), StudentTensor.FromLogits(student), labels, step: 3, out ObjectiveResult result, computeMetrics: true);

        ValueShouldMatch(total.item<float>(), result.Total);
        ValueShouldMatch(result.Distillation, KlDivSum(teacher, student.detach(), 2).item<float>() * 4 / 10);
        ValueShouldMatch(result.LanguageModel, nn.functional.cross_entropy(student.detach(), labels).item<float>());
        result.Lambda.Should().Be(0.25);
        result.TokenCount.Should().Be(10);
        result.Metrics.Should().NotBeNull();
        total.requires_grad.Should().BeTrue();
    }
}
