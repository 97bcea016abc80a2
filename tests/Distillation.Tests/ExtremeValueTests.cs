using Distillation.Kernels;

namespace Distillation.Tests;

/// <summary>
/// Values at the edges of float32 that once broke a path (from an independent review): huge logits, extreme
/// temperatures across chunk boundaries, and +∞ decided by the support of the logits, not by underflow.
/// </summary>
public class ExtremeValueTests
{
    [Theory]
    [InlineData(3f)]
    [InlineData(1e-6f)]
    [InlineData(1e6f)]
    public void HugeIdenticalLogits_GiveZeroOnEveryPath(float temperature)
    {
        float[] row = new float[16];
        row[0] = 1e30f;
        foreach (KernelPath path in TestSupport.Paths)
        {
            foreach (Divergence d in TestSupport.AllDivergences.Where(d => d.IsDivergence))
            {
                (float[] values, float[] gradient, _) = TestSupport.Run(d, temperature, row, (float[])row.Clone(), 16, path);
                values[0].Should().Be(0, $"{d} T={temperature} {path}");

                // The exact gradient is 0; float rounding of q·g − q·Σ q·g is scaled by 1/T like every gradient.
                gradient.Should().OnlyContain(g => Math.Abs(g) <= 1e-6 / temperature, $"{d} T={temperature} {path}");
            }
        }
    }

    [Fact]
    public void NearTiedMaximaInDifferentChunks_AtATinyTemperature_MatchTheReference()
    {
        const int vocab = 4096;
        float[] t = Enumerable.Repeat(float.NegativeInfinity, vocab).ToArray();
        t[0] = 10f;
        t[2048] = MathF.BitIncrement(10f);
        float[] s = TestSupport.RandomLogits(new Random(1), vocab);
        foreach (Divergence d in TestSupport.AllDivergences)
        {
            (float[] expected, float[] expectedGradient, _) = TestSupport.Run(d, 1e-6f, t, s, vocab, KernelPath.Scalar);
            foreach (KernelPath path in new[] { KernelPath.Vector256, KernelPath.Vector512 })
            {
                (float[] actual, float[] gradient, _) = TestSupport.Run(d, 1e-6f, t, s, vocab, path);
                ReferenceValueTests.AssertValue(actual[0], expected[0], $"{d} {path}");
                if (float.IsFinite(expected[0]))
                {
                    // Gradients scale with 1/T = 1e6, and so does float rounding: allow a few float ulps of 1/T on top of
                    // the usual tolerance. Merging the chunks with the wrong weights (p off by 0.01) would miss by ~1e4.
                    double bound = (1e-5 * Math.Max(1, expectedGradient.Max(v => Math.Abs(v)))) + (4 * 1.2e-7 / 1e-6);
                    expectedGradient.Zip(gradient).Max(z => (double)Math.Abs(z.First - z.Second)).Should().BeLessThanOrEqualTo(bound, $"{d} {path}");
                }
            }
        }
    }

    [Fact]
    public void Infinity_IsDecidedByTheSupport_NotByUnderflow()
    {
        // Forward KL: the teacher's column 1 has probability e^{-100} > 0 where the student has none.
        float[] t = Pad([0f, -100f], 16), s = Pad([0f, float.NegativeInfinity], 16);
        // Reverse KL: the student's column 1 has probability ~e^{-90} at T = 0.1 where the teacher has none.
        float[] rt = Pad([0f, float.NegativeInfinity], 16), rs = Pad([0f, -9f], 16);
        foreach (KernelPath path in TestSupport.Paths)
        {
            foreach (int vocab in new[] { 2, 16 })
            {
                TestSupport.Run(Divergence.ForwardKL, 1f, t[..vocab], s[..vocab], vocab, path).Rows[0].Should().Be(float.PositiveInfinity, $"forward KL V={vocab} {path}");
                TestSupport.Run(Divergence.SoftCrossEntropy, 1f, t[..vocab], s[..vocab], vocab, path).Rows[0].Should().Be(float.PositiveInfinity, $"soft CE V={vocab} {path}");
                (float[] rkl, float[] g, _) = TestSupport.Run(Divergence.ReverseKL, 0.1f, rt[..vocab], rs[..vocab], vocab, path);
                rkl[0].Should().Be(float.PositiveInfinity, $"reverse KL V={vocab} {path}");
                g.Should().OnlyContain(v => float.IsFinite(v));
                TestSupport.Run(Divergence.ForwardKL, 0.1f, rt[..vocab], rs[..vocab], vocab, path).Rows[0].Should().BeLessThan(float.PositiveInfinity, $"forward KL is finite there, V={vocab} {path}");
            }
        }
    }

    [Fact]
    public void HugeLogits_KeepLogZ_OnEveryPath()
    {
        // p = [½, ½, 0, …], q = [1, 0, …] with log q_1 = −1e20: forward KL ≈ ½·1e20, gradient (q − p) = [½, −½, 0, …].
        foreach (int vocab in new[] { 4, 16 })
        {
            float[] t = new float[vocab], s = new float[vocab];
            t[0] = t[1] = s[0] = 1e20f;
            foreach (KernelPath path in TestSupport.Paths)
            {
                (float[] values, float[] gradient, _) = TestSupport.Run(Divergence.ForwardKL, 1f, t, s, vocab, path);
                values[0].Should().BeApproximately(0.5e20f, 1e15f, $"V={vocab} {path}");
                gradient[0].Should().BeApproximately(0.5f, 1e-6f);
                gradient[1].Should().BeApproximately(-0.5f, 1e-6f);

                (float[] nll, float[] lmGradient) = TestSupport.RunLanguageModel(t, [0], vocab, path);
                nll[0].Should().BeApproximately(MathF.Log(2), 1e-6f, $"hard loss V={vocab} {path}");
                lmGradient[0].Should().BeApproximately(-0.5f, 1e-6f);
                lmGradient[1].Should().BeApproximately(0.5f, 1e-6f);
            }

            var options = new DistillationObjectiveOptions { Lambda = LambdaSchedule.Constant(1), TokenWeighting = TokenWeighting.TeacherConfidence };
            ObjectiveResult r = new DistillationObjective(options).Compute(TeacherDistribution.FromLogits(t, vocab), StudentDistribution.FromLogits(s, vocab), new TokenLabels(new[] { 0 }), new float[vocab], 0);
            r.MeanTokenLambda.Should().BeApproximately(0.5, 1e-6, "the teacher's top probability is ½");
        }
    }

    [Fact]
    public void SkewReverseKL_ReferenceGradient_HasNoNaNWhenEverythingUnderflows()
    {
        (float[] values, float[] gradient, _) = TestSupport.Run(Divergence.SkewReverseKL(0.1), 0.05f, [0f, float.NegativeInfinity], [0f, -37.15f], 2, KernelPath.Scalar);
        float.IsFinite(values[0]).Should().BeTrue();
        gradient.Should().OnlyContain(g => float.IsFinite(g));
    }

    private static float[] Pad(float[] head, int length) =>
        head.Concat(Enumerable.Repeat(float.NegativeInfinity, length - head.Length)).ToArray();
}
