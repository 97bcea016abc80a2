using TorchReduction = TorchSharp.torch.nn.Reduction;
using static Distillation.TorchSharp.Tests.TorchSupport;

namespace Distillation.TorchSharp.Tests;

/// <summary>LanguageModelLoss on tensors against TorchSharp's cross_entropy with hard labels.</summary>
public class LanguageModelLossTests
{
    [Theory]
    [InlineData(0f, 0)]
    [InlineData(0f, 3)]
    [InlineData(0.1f, 0)]
    [InlineData(0.1f, 4)]
    public void MatchesCrossEntropyWithHardLabels(float labelSmoothing, int ignoreEvery)
    {
        Tensor student = Uniform([12, 90], 40);
        Tensor labels = Labels([12], 90, 41, ignoreEvery);
        var loss = new LanguageModelLoss(labelSmoothing);

        var ours = ValueAndGradient(student, s => loss.Compute(s, labels));
        var reference = ValueAndGradient(student, s => nn.functional.cross_entropy(s, labels, ignore_index: -100, label_smoothing: labelSmoothing));

        ValueShouldMatch(ours.Value, reference.Value);
        GradientShouldMatch(ours.Gradient, reference.Gradient);
    }

    [Fact]
    public void SequenceBatches_MatchCrossEntropyOnTheFlattenedRows()
    {
        Tensor student = Uniform([3, 5, 32000], 42);
        Tensor labels = Labels([3, 5], 32000, 43, ignoreEvery: 4);
        var loss = new LanguageModelLoss();

        var ours = ValueAndGradient(student, s => loss.Compute(s, labels));
        var reference = ValueAndGradient(student, s => nn.functional.cross_entropy(s.reshape(15, 32000), labels.reshape(15)));

        ValueShouldMatch(ours.Value, reference.Value);
        GradientShouldMatch(ours.Gradient, reference.Gradient);
    }

    [Fact]
    public void SumAndPerRowReductions_MatchCrossEntropysSumAndNone()
    {
        Tensor student = Uniform([10, 50], 44);
        Tensor labels = Labels([10], 50, 45, ignoreEvery: 3);
        var loss = new LanguageModelLoss(0.05f);

        var ours = ValueAndGradient(student, s => loss.Compute(s, labels, Reduction.Sum));
        var reference = ValueAndGradient(student, s => nn.functional.cross_entropy(s, labels, label_smoothing: 0.05, reduction: TorchReduction.Sum));
        ValueShouldMatch(ours.Value, reference.Value);
        GradientShouldMatch(ours.Gradient, reference.Gradient);

        Tensor rows = loss.Compute(student, labels, Reduction.None);
        Tensor referenceRows = nn.functional.cross_entropy(student, labels, label_smoothing: 0.05, reduction: TorchReduction.None);
        rows.shape.Should().Equal(10);
        for (int i = 0; i < 10; i++)
        {
            ValueShouldMatch(rows[i].item<float>(), referenceRows[i].item<float>(), $"row {i}");
        }
    }

    [Fact]
    public void Int32Labels_AreAccepted()
    {
        Tensor student = Uniform([6, 20], 46);
        Tensor labels = Labels([6], 20, 47);
        double expected = nn.functional.cross_entropy(student, labels).item<float>();

        ValueShouldMatch(new LanguageModelLoss().Compute(student, labels.to_type(ScalarType.Int32)).item<float>(), expected);
    }
}
