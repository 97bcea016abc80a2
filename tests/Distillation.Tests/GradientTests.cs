using Distillation.Kernels;

namespace Distillation.Tests;

/// <summary>Every gradient against central finite differences of an independent double-precision formula.</summary>
public class GradientTests
{
    public static IEnumerable<object[]> Settings() =>
        from d in Enumerable.Range(0, TestSupport.DivergenceKeys.Length)
        from v in new[] { 3, 10, 37 }
        from t in new[] { 0.5f, 1f, 2f, 4f }
        select new object[] { TestSupport.DivergenceKeys[d].Key, v, t };

    [Theory]
    [MemberData(nameof(Settings))]
    public void Gradient_MatchesFiniteDifferences(string key, int vocab, float temperature)
    {
        Divergence divergence = TestSupport.DivergenceKeys.Single(k => k.Key == key).Divergence;
        var random = new Random(vocab * 1000 + (int)(temperature * 10) + key.Length);
        const int rows = 3;
        float[] teacher = TestSupport.RandomLogits(random, rows * vocab, 2.0);
        float[] student = TestSupport.RandomLogits(random, rows * vocab, 2.0);
        if (vocab > 3)
        {
            teacher[1] = float.NegativeInfinity; // an impossible teacher token; reverse KL and friends then see p = 0
            student[vocab + 2] = float.NegativeInfinity;
            teacher[vocab + 2] = float.NegativeInfinity; // both impossible on the same token: finite for all
        }

        foreach (KernelPath path in TestSupport.Paths)
        {
            (float[] values, float[] gradient, _) = TestSupport.Run(divergence, temperature, teacher, student, vocab, path);
            for (int r = 0; r < rows; r++)
            {
                double[] t = teacher.Skip(r * vocab).Take(vocab).Select(v => (double)v).ToArray();
                double[] s = student.Skip(r * vocab).Take(vocab).Select(v => (double)v).ToArray();
                double expected = DoubleFormulas.Row(divergence, t, s, temperature);
                ReferenceValueTests.AssertValue(values[r], expected, $"{key} V={vocab} T={temperature} row {r} {path}");
                if (!double.IsFinite(expected))
                {
                    continue;
                }

                double[] fd = DoubleFormulas.Gradient(x => DoubleFormulas.Row(divergence, t, x, temperature), s);
                ReferenceValueTests.AssertGradientRow(gradient.AsSpan(r * vocab, vocab), fd, $"{key} V={vocab} T={temperature} row {r} {path} (finite differences)");
            }
        }
    }

    [Theory]
    [InlineData(5, 0f)]
    [InlineData(5, 0.1f)]
    [InlineData(40, 0f)]
    [InlineData(40, 0.2f)]
    [InlineData(300, 0.05f)]
    public void LanguageModelGradient_MatchesFiniteDifferences(int vocab, float smoothing)
    {
        var random = new Random(vocab + (int)(smoothing * 100));
        const int rows = 4;
        float[] student = TestSupport.RandomLogits(random, rows * vocab);
        int[] labels = Enumerable.Range(0, rows).Select(_ => random.Next(vocab)).ToArray();
        foreach (KernelPath path in TestSupport.Paths)
        {
            (float[] values, float[] gradient) = TestSupport.RunLanguageModel(student, labels, vocab, path, smoothing);
            for (int r = 0; r < rows; r++)
            {
                double[] s = student.Skip(r * vocab).Take(vocab).Select(v => (double)v).ToArray();
                int label = labels[r];
                ReferenceValueTests.AssertValue(values[r], DoubleFormulas.LanguageModel(s, label, smoothing), $"nll V={vocab} row {r} {path}");
                double[] fd = DoubleFormulas.Gradient(x => DoubleFormulas.LanguageModel(x, label, smoothing), s);
                ReferenceValueTests.AssertGradientRow(gradient.AsSpan(r * vocab, vocab), fd, $"nll V={vocab} ε={smoothing} row {r} {path}");
            }
        }
    }

    [Theory]
    [InlineData("MeanOverTokens")]
    [InlineData("MeanOverSequences")]
    [InlineData("Sum")]
    [InlineData("SumDividedBy")]
    public void ReducedGradient_IsTheGradientOfTheReducedValue_WithMasksAndTemperatureSquared(string reductionName)
    {
        Reduction reduction = reductionName switch
        {
            "MeanOverTokens" => Reduction.MeanOverTokens,
            "MeanOverSequences" => Reduction.MeanOverSequences,
            "Sum" => Reduction.Sum,
            _ => Reduction.SumDividedBy(7.5),
        };
        const int vocab = 20;
        var layout = SequenceLayout.Padded([3, 1, 0, 2], maxLength: 3); // 4 sequences, 6 real rows, 1 empty sequence
        int rows = layout.RowCount;
        var random = new Random(42);
        float[] teacher = TestSupport.RandomLogits(random, rows * vocab);
        float[] student = TestSupport.RandomLogits(random, rows * vocab);
        int[] labels = Enumerable.Range(0, rows).Select(r => r == 1 ? -100 : random.Next(vocab)).ToArray(); // row 1 ignored too
        const float temperature = 2f;
        var loss = new DistillationLoss(Divergence.GeneralizedJsd(0.3), temperature, TemperatureScaling.Squared);
        var gradient = new float[rows * vocab];
        LossResult result = loss.Compute(TeacherDistribution.FromLogits(teacher, vocab, layout), StudentDistribution.FromLogits(student, vocab, layout), gradient, reduction, new TokenLabels(labels));

        // Real rows: sequence 0 rows 0 and 2 (row 1 ignored), sequence 1 row 3, sequence 3 rows 9 and 10.
        int[] real = [0, 2, 3, 9, 10];
        result.TokenCount.Should().Be(5);
        result.SequenceCount.Should().Be(3);
        double divisor = reductionName switch { "MeanOverTokens" => 5, "MeanOverSequences" => 3, "Sum" => 1, _ => 7.5 };

        double Reduced(double[] s)
        {
            double sum = 0;
            foreach (int r in real)
            {
                sum += DoubleFormulas.Row(loss.Divergence, Row(teacher, r), s.Skip(r * vocab).Take(vocab).ToArray(), temperature);
            }

            return sum * temperature * temperature / divisor;
        }

        double[] all = student.Select(v => (double)v).ToArray();
        ReferenceValueTests.AssertValue(result.Value, Reduced(all), reductionName);
        double[] fd = DoubleFormulas.Gradient(Reduced, all);
        ReferenceValueTests.AssertGradientRow(gradient, fd, $"{reductionName} whole batch");
        foreach (int r in Enumerable.Range(0, rows).Except(real))
        {
            gradient.Skip(r * vocab).Take(vocab).Should().OnlyContain(g => g == 0, $"row {r} is padding or ignored");
        }

        double[] Row(float[] x, int r) => x.Skip(r * vocab).Take(vocab).Select(v => (double)v).ToArray();
    }
}
