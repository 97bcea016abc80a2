using TorchReduction = TorchSharp.torch.nn.Reduction;
using static Distillation.TorchSharp.Tests.TorchSupport;

namespace Distillation.TorchSharp.Tests;

/// <summary>
/// DistillationLoss on tensors against TorchSharp's own expressions on the same tensors: value and autograd gradient,
/// for every divergence, temperature, teacher kind, reduction, mask and label rule the adapter passes through.
/// </summary>
public class DistillationLossTests
{
    public static TheoryData<long[], float> ShapesAndTemperatures => new()
    {
        { [6, 50], 1f },
        { [6, 50], 0.5f },
        { [2, 5, 300], 2f },
        { [3, 4, 2, 17], 4f },
        { [2, 32000], 2f },
        { [1, 1], 1f },
    };

    [Theory]
    [MemberData(nameof(ShapesAndTemperatures))]
    public void ForwardKL_MatchesKlDivOfLogSoftmax(long[] shape, float temperature)
    {
        Tensor teacher = Uniform(shape, 1), student = Uniform(shape, 2);
        long rows = student.numel() / shape[^1];
        var loss = new DistillationLoss(Divergence.ForwardKL, temperature);

        var ours = ValueAndGradient(student, s => loss.Compute(teacher, s));
        var reference = ValueAndGradient(student, s => KlDivSum(teacher, s, temperature) / rows);

        ValueShouldMatch(ours.Value, reference.Value);
        GradientShouldMatch(ours.Gradient, reference.Gradient);
    }

    [Fact]
    public void KlDiv_DefaultsToLogTargetInTorchSharp_TheOppositeOfPyTorch()
    {
        // The anchor the references rely on: TorchSharp's kl_div(input, target) treats target as log-probabilities
        // unless told otherwise; PyTorch's F.kl_div treats it as probabilities.
        Tensor teacher = Uniform([4, 9], 1), student = Uniform([4, 9], 2);
        Tensor logQ = nn.functional.log_softmax(student, -1), logP = nn.functional.log_softmax(teacher, -1);
        double byDefault = nn.functional.kl_div(logQ, logP, reduction: TorchReduction.Sum).item<float>();
        double logTarget = nn.functional.kl_div(logQ, logP, log_target: true, reduction: TorchReduction.Sum).item<float>();
        double probabilityTarget = nn.functional.kl_div(logQ, logP.exp(), log_target: false, reduction: TorchReduction.Sum).item<float>();

        byDefault.Should().Be(logTarget);
        ValueShouldMatch(probabilityTarget, logTarget);
        ValueShouldMatch(new DistillationLoss(Divergence.ForwardKL).Compute(teacher, student, Reduction.Sum).item<float>(), logTarget);
    }

    [Fact]
    public void TemperatureSquared_MultipliesValueAndGradientByTSquared()
    {
        Tensor teacher = Uniform([5, 40], 3), student = Uniform([5, 40], 4);
        var loss = new DistillationLoss(Divergence.ForwardKL, 3f, TemperatureScaling.Squared);

        var ours = ValueAndGradient(student, s => loss.Compute(teacher, s));
        var reference = ValueAndGradient(student, s => KlDivSum(teacher, s, 3) * 9 / 5);

        ValueShouldMatch(ours.Value, reference.Value);
        GradientShouldMatch(ours.Gradient, reference.Gradient);
    }

    [Fact]
    public void Reductions_DivideAsDocumented()
    {
        long[] shape = [3, 4, 30]; // 3 sequences of 4 rows
        Tensor teacher = Uniform(shape, 5), student = Uniform(shape, 6);
        var loss = new DistillationLoss(Divergence.ForwardKL, 2f);
        var cases = new (Reduction Reduction, double Divisor)[]
        {
            (Reduction.MeanOverTokens, 12),
            (Reduction.Sum, 1),
            (Reduction.MeanOverSequences, 3), // PyTorch's batchmean on [B, T, V]: input.size(0)
            (Reduction.SumDividedBy(40), 40),
        };

        foreach ((Reduction reduction, double divisor) in cases)
        {
            var ours = ValueAndGradient(student, s => loss.Compute(teacher, s, reduction));
            var reference = ValueAndGradient(student, s => KlDivSum(teacher, s, 2) / divisor);
            ValueShouldMatch(ours.Value, reference.Value, reduction.ToString());
            GradientShouldMatch(ours.Gradient, reference.Gradient, reduction.ToString());
        }
    }

    [Theory]
    [InlineData(1f)]
    [InlineData(2f)]
    public void SoftCrossEntropy_MatchesCrossEntropyWithProbabilityTargets(float temperature)
    {
        Tensor teacher = Uniform([7, 64], 7), student = Uniform([7, 64], 8);
        var loss = new DistillationLoss(Divergence.SoftCrossEntropy, temperature);

        var ours = ValueAndGradient(student, s => loss.Compute(teacher, s));
        var reference = ValueAndGradient(student, s => nn.functional.cross_entropy(s / temperature, nn.functional.softmax(teacher / temperature, -1)));

        ValueShouldMatch(ours.Value, reference.Value);
        GradientShouldMatch(ours.Gradient, reference.Gradient);
    }

    [Fact]
    public void ReverseKL_MatchesKlDivWithTheArgumentsSwapped()
    {
        Tensor teacher = Uniform([6, 80], 9), student = Uniform([6, 80], 10);
        var loss = new DistillationLoss(Divergence.ReverseKL, 2f);

        var ours = ValueAndGradient(student, s => loss.Compute(teacher, s));
        var reference = ValueAndGradient(student, s => nn.functional.kl_div(
            nn.functional.log_softmax(teacher / 2, -1), nn.functional.log_softmax(s / 2, -1), log_target: true, reduction: TorchReduction.Sum) / 6);

        ValueShouldMatch(ours.Value, reference.Value);
        GradientShouldMatch(ours.Gradient, reference.Gradient);
    }

    public static TheoryData<string> MixtureDivergences => new() { "jsd 0.5", "jsd 0.1", "skew 0.3", "skew-reverse 0.3", "tvd" };

    [Theory]
    [MemberData(nameof(MixtureDivergences))]
    public void OtherDivergences_MatchTheirTorchExpressions(string name)
    {
        const float T = 1.5f;
        Tensor teacher = Uniform([5, 3, 70], 11), student = Uniform([5, 3, 70], 12);
        string[] parts = name.Split(' ');
        double a = parts.Length > 1 ? double.Parse(parts[1], System.Globalization.CultureInfo.InvariantCulture) : 0;
        Divergence divergence = parts[0] switch
        {
            "jsd" => Divergence.GeneralizedJsd(a),
            "skew" => Divergence.SkewKL(a),
            "skew-reverse" => Divergence.SkewReverseKL(a),
            _ => Divergence.TotalVariation,
        };

        Tensor Reference(Tensor s)
        {
            Tensor logP = nn.functional.log_softmax(teacher / T, -1), logQ = nn.functional.log_softmax(s / T, -1);
            Tensor p = logP.exp(), q = logQ.exp();
            Tensor rows = parts[0] switch
            {
                "jsd" => (a * (p * (logP - (a * p + (1 - a) * q).log())).sum(-1)) + ((1 - a) * (q * (logQ - (a * p + (1 - a) * q).log())).sum(-1)),
                "skew" => (p * (logP - (a * p + (1 - a) * q).log())).sum(-1),
                "skew-reverse" => (q * (logQ - (a * q + (1 - a) * p).log())).sum(-1),
                _ => 0.5 * (p - q).abs().sum(-1),
            };
            return rows.mean();
        }

        var ours = ValueAndGradient(student, s => new DistillationLoss(divergence, T).Compute(teacher, s));
        var reference = ValueAndGradient(student, Reference);

        ValueShouldMatch(ours.Value, reference.Value, name);
        GradientShouldMatch(ours.Gradient, reference.Gradient, name);
    }

    [Fact]
    public void TeacherKinds_GiveTheSameLossAsLogits()
    {
        Tensor teacher = Uniform([4, 6, 25], 13), student = Uniform([4, 6, 25], 14);
        var loss = new DistillationLoss(Divergence.ForwardKL, 2f);
        var reference = ValueAndGradient(student, s => KlDivSum(teacher, s, 2) / 24);

        var teachers = new (string Name, TeacherTensor Teacher)[]
        {
            ("log-probabilities", TeacherTensor.FromLogProbabilities(nn.functional.log_softmax(teacher, -1))),
            ("probabilities", TeacherTensor.FromProbabilities(nn.functional.softmax(teacher, -1))),
        };
        foreach ((string name, TeacherTensor t) in teachers)
        {
            var ours = ValueAndGradient(student, s => loss.Compute(t, StudentTensor.FromLogits(s)));
            ValueShouldMatch(ours.Value, reference.Value, name);
            GradientShouldMatch(ours.Gradient, reference.Gradient, name);
        }
    }

    [Fact]
    public void StudentLogProbabilities_GetTheGradientOfTheSameExpression()
    {
        Tensor teacher = Uniform([5, 33], 15), studentLogProbs = nn.functional.log_softmax(Uniform([5, 33], 16), -1);
        var loss = new DistillationLoss(Divergence.ReverseKL, 2f);

        var ours = ValueAndGradient(studentLogProbs, s => loss.Compute(TeacherTensor.FromLogits(teacher), StudentTensor.FromLogProbabilities(s)));
        var reference = ValueAndGradient(studentLogProbs, s => nn.functional.kl_div(
            nn.functional.log_softmax(teacher / 2, -1), nn.functional.log_softmax(s / 2, -1), log_target: true, reduction: TorchReduction.Sum) / 5);

        ValueShouldMatch(ours.Value, reference.Value);
        GradientShouldMatch(ours.Gradient, reference.Gradient);
    }

    [Fact]
    public void IgnoredLabels_ExcludeTheirRows()
    {
        long[] shape = [4, 5, 40];
        Tensor teacher = Uniform(shape, 17), student = Uniform(shape, 18);
        Tensor labels = Labels([4, 5], 40, 19, ignoreEvery: 3);
        Tensor kept = labels.ne(-100);
        long count = kept.sum().item<long>();
        var loss = new DistillationLoss(Divergence.ForwardKL, 2f);

        var ours = ValueAndGradient(student, s => loss.Compute(teacher, s, labels: labels));
        var reference = ValueAndGradient(student, s => (KlDivRows(teacher, s, 2) * kept).sum() / count);

        ValueShouldMatch(ours.Value, reference.Value);
        GradientShouldMatch(ours.Gradient, reference.Gradient);
    }

    [Fact]
    public void PaddingMask_ExcludesRowsThatAreNeverRead()
    {
        long[] shape = [3, 4, 20];
        Tensor teacher = Uniform(shape, 20), student = Uniform(shape, 21);
        Tensor mask = tensor(new[] { true, true, true, false, true, true, false, false, true, true, true, true }, [3, 4]);
        // Padding holds NaN in both models' rows: it must not be read.
        Tensor padded = mask.logical_not().unsqueeze(-1).expand(shape);
        teacher = teacher.masked_fill(padded, float.NaN);
        student = student.masked_fill(padded, float.NaN);
        var loss = new DistillationLoss(Divergence.ForwardKL, 2f);

        var ours = ValueAndGradient(student, s => loss.Compute(teacher, s, Reduction.MeanOverSequences, paddingMask: mask));
        Tensor clean(Tensor x) => x.masked_fill(padded, 0f);
        var reference = ValueAndGradient(student, s => (KlDivRows(clean(teacher), s.masked_fill(padded, 0f), 2) * mask).sum() / 3);

        ValueShouldMatch(ours.Value, reference.Value);
        GradientShouldMatch(ours.Gradient, reference.Gradient);
        ours.Gradient.index(TensorIndex.Tensor(mask.logical_not())).abs().max().item<float>().Should().Be(0f);
    }

    [Fact]
    public void ReductionNone_GivesOneValuePerRow_AndScalesEachRowsGradient()
    {
        long[] shape = [2, 3, 45];
        Tensor teacher = Uniform(shape, 22), student = Uniform(shape, 23);
        Tensor weights = Uniform([2, 3], 24);
        var loss = new DistillationLoss(Divergence.ForwardKL, 2f);

        Tensor rows = loss.Compute(teacher, student, Reduction.None);
        rows.shape.Should().Equal(2, 3);
        Tensor referenceRows = KlDivRows(teacher, student, 2);
        for (int i = 0; i < 2; i++)
        {
            for (int j = 0; j < 3; j++)
            {
                ValueShouldMatch(rows[i, j].item<float>(), referenceRows[i, j].item<float>());
            }
        }

        var ours = ValueAndGradient(student, s => (loss.Compute(teacher, s, Reduction.None) * weights).sum());
        var reference = ValueAndGradient(student, s => (KlDivRows(teacher, s, 2) * weights).sum());
        ValueShouldMatch(ours.Value, reference.Value);
        GradientShouldMatch(ours.Gradient, reference.Gradient);
    }

    [Fact]
    public void Backward_ScalesByGradOutput_AndAccumulatesLikeTorch()
    {
        Tensor teacher = Uniform([4, 30], 25), student = Uniform([4, 30], 26);
        var loss = new DistillationLoss(Divergence.ForwardKL, 2f);

        var ours = ValueAndGradient(student, s => (3 * loss.Compute(teacher, s)) + loss.Compute(teacher, s));
        var reference = ValueAndGradient(student, s => 4 * KlDivSum(teacher, s, 2) / 4);
        ValueShouldMatch(ours.Value, reference.Value);
        GradientShouldMatch(ours.Gradient, reference.Gradient);

        // Two backward passes into the same leaf add up, as for any TorchSharp loss.
        Tensor leaf = student.detach().clone().requires_grad_(true);
        loss.Compute(teacher, leaf).backward();
        loss.Compute(teacher, leaf).backward();
        GradientShouldMatch(leaf.grad!, reference.Gradient / 2);
    }

    [Fact]
    public void TheGradientFlowsThroughTheStudentModel()
    {
        // A training step: student logits = x·W + b, the teacher's logits fixed. Only the loss call differs.
        Tensor x = Uniform([8, 16], 27, 1f), teacher = Uniform([8, 60], 28);
        Tensor w0 = Uniform([16, 60], 29, 0.5f), b0 = Uniform([60], 30, 0.5f);
        var loss = new DistillationLoss(Divergence.ForwardKL, 2f, TemperatureScaling.Squared);

        (Tensor W, Tensor B) Step(Func<Tensor, Tensor> objective)
        {
            Tensor w = w0.clone().requires_grad_(true), b = b0.clone().requires_grad_(true);
            objective(x.matmul(w) + b).backward();
            return (w.grad!, b.grad!);
        }

        var ours = Step(s => loss.Compute(teacher, s));
        var reference = Step(s => KlDivSum(teacher, s, 2) * 4 / 8);

        GradientShouldMatch(ours.W, reference.W);
        GradientShouldMatch(ours.B, reference.B);
    }

    [Fact]
    public void NonContiguousTensors_AreReadCorrectly_AndTheGradientReachesTheOriginal()
    {
        Tensor teacher = Uniform([50, 6], 31).t(), studentStorage = Uniform([50, 6], 32);
        teacher.is_contiguous().Should().BeFalse();
        var loss = new DistillationLoss(Divergence.ForwardKL, 2f);

        var ours = ValueAndGradient(studentStorage, s => loss.Compute(teacher, s.t()));
        var reference = ValueAndGradient(studentStorage, s => KlDivSum(teacher, s.t(), 2) / 6);

        ValueShouldMatch(ours.Value, reference.Value);
        GradientShouldMatch(ours.Gradient, reference.Gradient);
    }

    [Fact]
    public void WithoutGradient_ReturnsTheValueOffTheGraph()
    {
        Tensor teacher = Uniform([4, 30], 33), student = Uniform([4, 30], 34);
        var loss = new DistillationLoss(Divergence.ForwardKL, 2f);
        double reference = KlDivSum(teacher, student, 2).item<float>() / 4;

        Tensor plain = loss.Compute(teacher, student);
        plain.requires_grad.Should().BeFalse();
        ValueShouldMatch(plain.item<float>(), reference);

        Tensor leaf = student.clone().requires_grad_(true);
        using (no_grad())
        {
            Tensor evaluated = loss.Compute(teacher, leaf);
            evaluated.requires_grad.Should().BeFalse();
            ValueShouldMatch(evaluated.item<float>(), reference);
        }
    }

    [Fact]
    public void Inputs_AreLeftBitIdentical()
    {
        Tensor teacher = Uniform([3, 4, 25], 35), student = Uniform([3, 4, 25], 36, requiresGrad: true);
        Tensor labels = Labels([3, 4], 25, 37, ignoreEvery: 5);
        byte[] teacherBefore = Bytes(teacher), studentBefore = Bytes(student.detach()), labelsBefore = Bytes(labels);

        new DistillationLoss(Divergence.GeneralizedJsd(0.5), 2f).Compute(teacher, student, labels: labels).backward();

        Bytes(teacher).Should().Equal(teacherBefore);
        Bytes(student.detach()).Should().Equal(studentBefore);
        Bytes(labels).Should().Equal(labelsBefore);
    }

    [Fact]
    public void AnEmptyBatch_GivesZeroAndAnEmptyGradient()
    {
        Tensor student = zeros([0, 7], requires_grad: true);

        Tensor value = new DistillationLoss(Divergence.ForwardKL, 2f).Compute(zeros(0, 7), student);
        value.backward();

        value.item<float>().Should().Be(0f);
        student.grad!.shape.Should().Equal(0, 7);
    }

    [Fact]
    public void InsideADisposeScope_TheStepRunsAndTheGradientOutlivesIt()
    {
        Tensor teacher = Uniform([4, 30], 38), student = Uniform([4, 30], 39, requiresGrad: true);
        var loss = new DistillationLoss(Divergence.ForwardKL, 2f);
        var reference = ValueAndGradient(student, s => KlDivSum(teacher, s, 2) / 4);

        using (NewDisposeScope())
        {
            Tensor value = loss.Compute(teacher, student);
            value.backward();
            ValueShouldMatch(value.item<float>(), reference.Value);
        }

        GradientShouldMatch(student.grad!, reference.Gradient);
    }
}
