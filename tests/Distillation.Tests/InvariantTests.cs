using Distillation.Kernels;

namespace Distillation.Tests;

/// <summary>Properties every divergence must have, on every kernel path.</summary>
public class InvariantTests
{
    public static IEnumerable<object[]> PathsAndSizes() =>
        from p in TestSupport.Paths
        from v in new[] { 5, 16, 100, 3001 }
        select new object[] { p.ToString(), v };

    [Theory]
    [MemberData(nameof(PathsAndSizes))]
    public void Divergences_AreNonNegative_AndGradientRowsSumToZero(string pathName, int vocab)
    {
        KernelPath path = Enum.Parse<KernelPath>(pathName);
        var random = new Random(vocab);
        const int rows = 8;
        foreach (float temperature in new[] { 0.25f, 1f, 3f })
        {
            float[] teacher = TestSupport.RandomLogits(random, rows * vocab, 4);
            float[] student = TestSupport.RandomLogits(random, rows * vocab, 4);
            foreach (Divergence d in TestSupport.AllDivergences)
            {
                (float[] values, float[] gradient, _) = TestSupport.Run(d, temperature, teacher, student, vocab, path);
                for (int r = 0; r < rows; r++)
                {
                    if (d.IsDivergence)
                    {
                        values[r].Should().BeGreaterThanOrEqualTo(0, $"{d} row {r}");
                    }

                    double sum = 0, scale = 1;
                    for (int j = 0; j < vocab; j++)
                    {
                        sum += gradient[(r * vocab) + j];
                        scale = Math.Max(scale, Math.Abs(gradient[(r * vocab) + j]));
                    }

                    Math.Abs(sum).Should().BeLessThan(1e-5 * scale * Math.Sqrt(vocab), $"{d} T={temperature} row {r}: softmax gradients sum to 0");
                }
            }
        }
    }

    [Theory]
    [MemberData(nameof(PathsAndSizes))]
    public void Divergences_AreZero_ForIdenticalAndShiftedRows(string pathName, int vocab)
    {
        KernelPath path = Enum.Parse<KernelPath>(pathName);
        var random = new Random(vocab + 1);
        const int rows = 4;
        float[] teacher = TestSupport.RandomLogits(random, rows * vocab);
        teacher[0] = float.NegativeInfinity;
        float[] shifted = teacher.Select((v, i) => v + (3.5f * ((i / vocab) - 1))).ToArray();
        foreach (Divergence d in TestSupport.AllDivergences.Where(d => d.IsDivergence))
        {
            foreach (float[] student in new[] { teacher, shifted })
            {
                (float[] values, float[] gradient, _) = TestSupport.Run(d, 2f, teacher, (float[])student.Clone(), vocab, path);
                values.Should().OnlyContain(v => v >= 0 && v <= 1e-6, $"{d}: identical distributions");
                if (d.Kind == DivergenceKind.TotalVariation && student == shifted)
                {
                    // TVD is not differentiable at p = q: rounding of the shifted logits breaks the ties either way,
                    // and the subgradient ½ sign(q − p) follows. Only exact ties give sign 0.
                    continue;
                }

                gradient.Should().OnlyContain(g => Math.Abs(g) <= 1e-6, $"{d}: identical distributions are a minimum");
            }
        }
    }

    [Theory]
    [MemberData(nameof(PathsAndSizes))]
    public void JsdHalf_IsSymmetric(string pathName, int vocab)
    {
        KernelPath path = Enum.Parse<KernelPath>(pathName);
        var random = new Random(vocab + 2);
        const int rows = 5;
        float[] a = TestSupport.RandomLogits(random, rows * vocab);
        float[] b = TestSupport.RandomLogits(random, rows * vocab);
        (float[] ab, _, _) = TestSupport.Run(Divergence.GeneralizedJsd(0.5), 1.3f, a, b, vocab, path);
        (float[] ba, _, _) = TestSupport.Run(Divergence.GeneralizedJsd(0.5), 1.3f, b, a, vocab, path);
        for (int r = 0; r < rows; r++)
        {
            ab[r].Should().BeApproximately(ba[r], 1e-6f * Math.Max(1, ab[r]), $"row {r}");
            ab[r].Should().BeLessThanOrEqualTo((float)Math.Log(2) + 1e-6f, "JSD(0.5) is bounded by log 2");
        }
    }

    [Fact]
    public void Jsd_EndsAreForwardAndReverseKL_AndTheLimitIsDiscontinuous()
    {
        var random = new Random(9);
        const int vocab = 50;
        float[] t = TestSupport.RandomLogits(random, vocab);
        float[] s = TestSupport.RandomLogits(random, vocab);
        float Value(Divergence d) => TestSupport.Run(d, 1f, t, s, vocab, KernelPaths.Best).Rows[0];

        Value(Divergence.GeneralizedJsd(0)).Should().Be(Value(Divergence.ForwardKL));
        Value(Divergence.GeneralizedJsd(1)).Should().Be(Value(Divergence.ReverseKL));
        Value(Divergence.GeneralizedJsd(1e-6)).Should().BeLessThan(1e-4f, "JSD(β) → 0 as β → 0, unlike the β = 0 convention");
        Value(Divergence.GeneralizedJsd(1 - 1e-6)).Should().BeLessThan(1e-4f, "JSD(β) → 0 as β → 1");
        Value(Divergence.ForwardKL).Should().BeGreaterThan(0.1f);
        Value(Divergence.SkewKL(0)).Should().Be(Value(Divergence.ForwardKL));
        Value(Divergence.SkewReverseKL(0)).Should().Be(Value(Divergence.ReverseKL));
    }

    [Fact]
    public void SoftCrossEntropy_IsForwardKLPlusTeacherEntropy()
    {
        var random = new Random(10);
        const int vocab = 300;
        float[] t = TestSupport.RandomLogits(random, 2 * vocab);
        float[] s = TestSupport.RandomLogits(random, 2 * vocab);
        (float[] ce, float[] gCe, _) = TestSupport.Run(Divergence.SoftCrossEntropy, 2f, t, s, vocab, KernelPaths.Best);
        (float[] kl, float[] gKl, _) = TestSupport.Run(Divergence.ForwardKL, 2f, t, s, vocab, KernelPaths.Best);
        for (int r = 0; r < 2; r++)
        {
            double[] lp = DoubleFormulas.LogSoftmax(t.Skip(r * vocab).Take(vocab).Select(v => (double)v).ToArray(), 2);
            double entropy = -lp.Sum(l => Math.Exp(l) * l);
            ReferenceValueTests.AssertValue(ce[r], kl[r] + entropy, $"row {r}");
        }

        ReferenceValueTests.AssertGradientRow(gCe, gKl.Select(v => (double)v).ToArray(), "same gradient");
    }

    [Fact]
    public void TemperatureSquared_MultipliesValueAndGradientByTSquared()
    {
        var random = new Random(11);
        const int vocab = 64;
        float[] t = TestSupport.RandomLogits(random, 4 * vocab);
        float[] s = TestSupport.RandomLogits(random, 4 * vocab);
        var teacher = TeacherDistribution.FromLogits(t, vocab);
        var student = StudentDistribution.FromLogits(s, vocab);
        var plainGradient = new float[s.Length];
        var scaledGradient = new float[s.Length];
        LossResult plain = new DistillationLoss(Divergence.ReverseKL, 3f).Compute(teacher, student, plainGradient);
        LossResult scaled = new DistillationLoss(Divergence.ReverseKL, 3f, TemperatureScaling.Squared).Compute(teacher, student, scaledGradient);
        scaled.Value.Should().BeApproximately(9 * plain.Value, 1e-6 * scaled.Value);
        scaled.Sum.Should().BeApproximately(9 * plain.Sum, 1e-6 * scaled.Sum);
        for (int i = 0; i < s.Length; i++)
        {
            scaledGradient[i].Should().BeApproximately(9 * plainGradient[i], 1e-6f + (1e-5f * Math.Abs(scaledGradient[i])));
        }
    }
}
