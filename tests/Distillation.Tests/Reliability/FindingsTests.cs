using Distillation.Kernels;

namespace Distillation.Tests.Reliability;

/// <summary>
/// Library bugs found by the reliability work (property tests, fuzzing, extremes), each pinned by the smallest input
/// that shows it and asserting the documented behaviour. docs/RELIABILITY.md describes each (file, input,
/// expected against actual) and its fix.
/// </summary>
public sealed class FindingsTests
{
    private const float NegInf = float.NegativeInfinity;

    /// <summary>
    /// F1. The scalar reference (every row with V &lt; 8 on any machine) forms log p_j = z_j − (max + log Σ e^(z − max)):
    /// when |max| = |logit|/T is huge, log Σ is absorbed and every tied maximum gets p = 1. TVD, documented in [0, 1], is 1.5.
    /// </summary>
    [Fact]
    public void F1_ScalarPath_KeepsProbabilitiesNormalised_ForHugeLogits()
    {
        float tvd = Losses.TotalVariation([1e30f, 1e30f, 1e30f, 1e30f], [1e30f, -1e30f, -1e30f, -1e30f], new float[4], vocabularySize: 4);
        tvd.Should().BeApproximately(0.75f, 1e-6f, "p = (¼, ¼, ¼, ¼) and q = (1, 0, 0, 0)");

        LossResult kl = new DistillationLoss(Divergence.ForwardKL).Compute(TeacherDistribution.FromLogits(new[] { 1e30f, 1e30f }, 2), StudentDistribution.FromLogits(new[] { 1e30f, 0f }, 2), new float[2]);
        kl.Value.Should().BeApproximately(5e29, 1e24, "KL = ½ log ½ + ½ (log ½ + 1e30)");
    }

    /// <summary>
    /// F2. The hard-label loss forms −log softmax(s)_y as (max·invT + log Σ) − s_y·invT on every path: for huge logits the
    /// log Σ is absorbed and the loss of a row of equal logits is 0 instead of log V.
    /// </summary>
    [Theory]
    [InlineData(2)]
    [InlineData(16)]
    public void F2_LanguageModelLoss_IsLogV_ForEqualHugeLogits(int vocab)
    {
        float[] logits = Enumerable.Repeat(1e30f, vocab).ToArray();
        LossResult r = new LanguageModelLoss().Compute(StudentDistribution.FromLogits(logits, vocab), new TokenLabels(new[] { 0 }), new float[vocab]);
        r.Value.Should().BeApproximately(Math.Log(vocab), 1e-6, "every token has probability 1/V");
    }

    /// <summary>
    /// F3. Whether a row is +∞ depends on the kernel path: the scalar reference evaluates p, q in double (e^-100 &gt; 0: the
    /// row is +∞, the true value), the vector kernels in float (e^-100 flushed to 0: the row is finite, here 0). So a
    /// vocabulary of 7 (always scalar) and of 8 (vector) disagree on the same kind of row, value and gradient alike.
    /// </summary>
    [Theory]
    [InlineData("ReverseKL")]
    [InlineData("ForwardKL")]
    public void F3_AllPaths_AgreeOnInfiniteRows(string which)
    {
        // Reverse KL: the student gives e^-100 to a token the teacher forbids; forward KL: the other way round.
        float[] impossible = [0, NegInf, 0, 0, 0, 0, 0, 0], tiny = [0, -100, 0, 0, 0, 0, 0, 0];
        (Divergence d, float[] t, float[] s) = which == "ReverseKL" ? (Divergence.ReverseKL, impossible, tiny) : (Divergence.ForwardKL, tiny, impossible);
        float[] values = TestSupport.Paths.Select(path => TestSupport.Run(d, 1f, t, s, 8, path).Rows[0]).ToArray();
        values.Should().OnlyContain(v => float.IsPositiveInfinity(v), $"the true value is +∞ (got {string.Join(", ", TestSupport.Paths.Zip(values, (p, v) => $"{p} = {v}"))})");
    }

    /// <summary>
    /// F4. SkewReverseKLOp's scalar form computes α q²/r as α·q·q / exp(log r): where the teacher forbids a token and the
    /// student's log-probability there lies in (−745, −745 − log α), q·q and exp(log r) both underflow to 0 and the whole
    /// gradient row is NaN (0/0), on every path for V &lt; 8. "Gradients are never NaN."
    /// </summary>
    [Fact]
    public void F4_SkewReverseKL_GradientIsNeverNaN_WhenTheStudentsTinyMassUnderflows()
    {
        var gradient = new float[2];
        LossResult r = new DistillationLoss(Divergence.SkewReverseKL(0.1)).Compute(TeacherDistribution.FromLogits(new[] { 0f, NegInf }, 2), StudentDistribution.FromLogits(new[] { 0f, -743.5f }, 2), gradient);
        double.IsNaN(r.Value).Should().BeFalse();
        gradient.Should().OnlyContain(g => float.IsFinite(g), "the true gradient is ≈ 0");
    }

    /// <summary>
    /// F5. The vector kernels cast α (and β) to float: α below float's normal range (1.2e-38) became 0 or subnormal and
    /// the vector paths computed a different function from the scalar reference (5.225 against 5.696). Fixed by refusing
    /// mixture weights within 1e-6 of an end (other than the ends themselves), where float32 cannot represent the mixture.
    /// </summary>
    [Fact]
    public void F5_TinyAlpha_IsRefused_AndTheSmallestAcceptedAlphaAgreesOnEveryPath()
    {
        FluentActions.Invoking(() => Divergence.SkewKL(1e-40)).Should().ThrowExactly<ArgumentOutOfRangeException>().WithParameterName("alpha");
        float[] t = new float[16], s = new float[16];
        s[1] = NegInf; // the teacher has mass 1/16 where the student has none: r = α p there
        var d = Divergence.SkewKL(Divergence.MinMixtureWeight);
        float[] values = TestSupport.Paths.Select(path => TestSupport.Run(d, 1f, t, s, 16, path).Rows[0]).ToArray();
        double expected = StableReference.Row(d, t, DistributionKind.Logits, s, 1, default);
        values.Should().OnlyContain(v => Math.Abs(v - expected) <= 1e-5 * expected, $"KL(p ‖ αp + (1 − α)q) = {expected} (got {string.Join(", ", values)})");
    }

    /// <summary>
    /// F6. The vector kernels formed the mixture r = αp + (1 − α)q as α·(p − q) + q: for α near 1, p − q lost p and r
    /// cancelled to 0. Fixed: r = α·p + (1 − α)·q with both weights rounded from double; α within 1e-6 of 1 is refused.
    /// </summary>
    [Fact]
    public void F6_AlphaNearOne_GradientMatchesTheReference()
    {
        float[] t = Enumerable.Repeat(NegInf, 16).ToArray(), s = Enumerable.Repeat(NegInf, 16).ToArray();
        t[0] = 0;
        t[1] = -60;
        s[1] = 0;
        s[2] = 0;
        FluentActions.Invoking(() => Divergence.SkewKL(0.999999999)).Should().ThrowExactly<ArgumentOutOfRangeException>().WithParameterName("alpha");
        var d = Divergence.SkewKL(1 - Divergence.MinMixtureWeight);
        var expected = new double[16];
        StableReference.Row(d, t, DistributionKind.Logits, s, 1, expected);
        foreach (KernelPath path in TestSupport.Paths)
        {
            float[] g = TestSupport.Run(d, 1f, t, s, 16, path).Gradient;
            Calls.GradientError(g, expected).Should().BeLessThanOrEqualTo(1e-5, $"{path}: [{string.Join(", ", g.Take(3))}] against [{string.Join(", ", expected.Take(3))}]");
        }
    }

    /// <summary>
    /// F7. With label smoothing the fused label kernel sums the raw logits in float lanes (FusedKernels.SumOf) before
    /// subtracting their mean from the log-normaliser: for logits near 1e4 the value is off by 3e-5 relative on the
    /// Vector256 path (3.9456015 against 3.9457236); the scalar path is exact.
    /// </summary>
    [Fact]
    public void F7_LabelSmoothing_IsAccurate_ForLargeLogits()
    {
        float[] s = Enumerable.Range(0, 16).Select(j => 10000f + (0.37f * j)).ToArray();
        double expected = StableReference.LanguageModel(s, 3, 1, new double[16]);
        foreach (KernelPath path in TestSupport.Paths)
        {
            float value = TestSupport.RunLanguageModel(s, [3], 16, path, smoothing: 1f).Rows[0];
            Calls.ValuesAgree(value, expected).Should().BeTrue($"{path}: {value:R} against {expected:R}");
        }
    }

    /// <summary>
    /// F8. SequenceDistillationLoss.Compute passes each candidate's weight to the row kernel as a float: a candidate whose
    /// teacher probability is &gt; 0 in double but below float's range (here e^-546.6) is skipped, its student
    /// log-probability taken as 0 instead of −∞, and CE comes out 0 (KL −2e-235) instead of +∞ — which
    /// SequenceLosses.FromLogProbabilities, given the same candidates, does return.
    /// </summary>
    [Fact]
    public void F8_SequenceLoss_IsInfinite_WhenAWeightedCandidateIsImpossibleForTheStudent()
    {
        double[] a = [-546.6, -Math.Exp(-546.6)];
        var candidates = StudentDistribution.FromLogits(new[] { NegInf, 0f, NegInf, 0f }, 2, SequenceLayout.Rectangular(2, 1));
        var tokens = new TokenLabels(new[] { 0, 1 });
        SequenceLossResult r = new SequenceDistillationLoss(SequenceEstimator.Exact, 0.01f).Compute(candidates, tokens, a, new float[4]);
        var b = new double[2];
        SequenceLosses.StudentLogProbabilities(candidates, tokens, 0.01f, b);
        SequenceLossResult reference = SequenceLosses.FromLogProbabilities(SequenceEstimator.Exact, a, b);
        reference.CrossEntropy.Should().Be(double.PositiveInfinity);
        r.CrossEntropy.Should().Be(double.PositiveInfinity, "candidate 0 has teacher probability e^-546.6 > 0 and student probability 0");
        r.KL.Should().Be(double.PositiveInfinity);
    }

    /// <summary>
    /// F9. At the smallest accepted temperature (1e-6) with logits ±1e30, reverse KL's gradient (∝ 1/T²) overflows float:
    /// the vector kernels then multiply a zero probability by −∞ (FusedKernels.Rescale) and write NaN into the gradient.
    /// "Gradients are never NaN."
    /// </summary>
    [Fact]
    public void F9_GradientIsNeverNaN_AtTheSmallestTemperatureWithHugeLogits()
    {
        float[] t = Enumerable.Range(0, 16).Select(j => j == 0 ? 1e30f : -1e30f).ToArray();
        float[] s = Enumerable.Range(0, 16).Select(j => j < 2 ? 1e30f : -1e30f).ToArray();
        foreach (KernelPath path in TestSupport.Paths)
        {
            float[] g = TestSupport.Run(Divergence.ReverseKL, 1e-6f, t, s, 16, path).Gradient;
            g.Should().NotContain(float.NaN, $"{path}: [{string.Join(", ", g.Take(4))}, …]");
        }
    }

    /// <summary>
    /// F10. The driver handed each row its scale as (float)(numerator / divisor): Reduction.SumDividedBy(1e-300), or a
    /// row weight like 1e30 times T², overflowed it to +∞ and the kernels formed ∞ · 0 = NaN. Fixed: divisors below 1e-6
    /// and gradient scales above 1e30 are refused before anything is written.
    /// </summary>
    [Fact]
    public void F10_OverflowingGradientScales_AreRefused()
    {
        FluentActions.Invoking(() => Reduction.SumDividedBy(1e-300)).Should().ThrowExactly<ArgumentOutOfRangeException>().WithParameterName("divisor");
        var weighted = Enumerable.Repeat(7f, 2).ToArray();
        FluentActions.Invoking(() => new DistillationLoss(Divergence.ForwardKL, 1e6f, TemperatureScaling.Squared).Compute(TeacherDistribution.FromLogits(new[] { 0f, 1f }, 2), StudentDistribution.FromLogits(new[] { 0f, 1f }, 2), weighted, rowWeights: new[] { 1e30f }))
            .Should().ThrowExactly<ArgumentOutOfRangeException>().WithParameterName("rowWeights").WithMessage("*exceeds 1e30*");
        weighted.Should().OnlyContain(g => g == 7f, "nothing was written");
        var gradient = new float[2];
        new DistillationLoss(Divergence.ForwardKL).Compute(TeacherDistribution.FromLogits(new[] { 0f, 1f }, 2), StudentDistribution.FromLogits(new[] { 0f, 1f }, 2), gradient, Reduction.SumDividedBy(Reduction.MinDivisor));
        gradient.Should().OnlyContain(g => g == 0, "identical rows: the gradient is 0 at the smallest divisor accepted");
    }

    /// <summary>
    /// F11. With label smoothing, logits near float.MaxValue make the fused label kernel's float-lane sum of the row
    /// overflow (+∞ + −∞): the loss is NaN (exact: 3.0e37) for a row of finite logits.
    /// </summary>
    [Fact]
    public void F11_LabelSmoothing_IsNotNaN_ForLogitsNearFloatMax()
    {
        float[] s = Enumerable.Range(0, 32).Select(j => j % 2 == 0 ? 3e38f : -3e38f).ToArray();
        LossResult r = new LanguageModelLoss(0.1f).Compute(StudentDistribution.FromLogits(s, 32), new TokenLabels(new[] { 0 }), new float[32]);
        double expected = StableReference.LanguageModel(s, 0, 0.1, new double[32]);
        r.Value.Should().BeApproximately(expected, 1e-5 * expected);
    }

    /// <summary>
    /// F12. Monte-Carlo weighted every candidate 1/K whatever its teacher log-probability: a candidate with a = −∞ and
    /// b = −∞ gave KL = NaN. Fixed: a Monte-Carlo sample of teacher probability 0 is refused (it cannot have been drawn).
    /// </summary>
    [Fact]
    public void F12_MonteCarlo_RefusesASampleTheTeacherCannotDraw() =>
        FluentActions.Invoking(() => SequenceLosses.FromLogProbabilities(SequenceEstimator.MonteCarlo, [-0.5, double.NegativeInfinity], [-1, double.NegativeInfinity]))
            .Should().ThrowExactly<ArgumentException>().WithParameterName("teacherLogProbabilities");

    /// <summary>
    /// F13. The per-thread scratch size is computed in int: DivergenceRowKernel.ScratchFloats(V) = 3V + … overflows for
    /// V &gt; 715,827,882. It wraps negative (the driver then rents 1 float and the kernels write 3V floats through raw
    /// pointers past it: memory corruption, for a 2.9 GB student row that fits in memory) or to a huge positive size. The
    /// scratch is rented even for zero rows: the fuzzer found LanguageModelLoss on an empty batch with V = 2,147,483,593
    /// throwing OutOfMemoryException (fuzz/regressions/F13-huge-vocabulary-scratch-oom.bin).
    /// </summary>
    [Fact]
    public unsafe void F13_ScratchSize_DoesNotOverflow_ForHugeVocabularies()
    {
        // Two banks of two rows each (a deferred gradient keeps one) and a converted teacher row: five rows of V floats,
        // each rounded up to 64 bytes, so the sizes must not wrap even for V near int.MaxValue.
        foreach (int vocab in new[] { 800_000_000, int.MaxValue - 7, int.MaxValue })
        {
            var kernel = new DivergenceRowKernel<Kernels.Divergences.ForwardKLOp>(default, null, DistributionKind.Logits, null, vocab, 1f, KernelPath.Vector512);
            long floats = kernel.ScratchFloats(vocab);
            floats.Should().BeGreaterThanOrEqualTo(5L * vocab, $"five rows of V = {vocab} floats are written into the scratch");
        }
    }

    /// <summary>
    /// F14 (the full property run of 2026-11-23, seed 3wgR7biQYvQ3). Exact over the whole output space returned
    /// KL = −1.6e-8 for a student equal to the teacher (logits −9999 and −10000: the student's log-probabilities come
    /// from float logits), while N-best clamped its KL at 0, so the two disagreed. Fixed: Exact clamps too when the
    /// candidates carry all the teacher's mass; a partial sum over a smaller set is still returned as it is.
    /// </summary>
    [Fact]
    public void F14_ExactSequenceKL_OverTheWholeSpace_IsNeverNegative()
    {
        float[] rows = [-9999f, -10000f, -9999f, -10000f];   // the two one-token sequences, the student's logits at each
        var candidates = StudentDistribution.FromLogits(rows, 2, SequenceLayout.Rectangular(2, 1));
        var tokens = new TokenLabels(new[] { 0, 1 });
        double lse = -9999 + Math.Log(1 + Math.Exp(-1));
        double[] teacher = [-9999 - lse, -10000 - lse];       // the same distribution, exactly, in double
        SequenceLossResult exact = new SequenceDistillationLoss(SequenceEstimator.Exact, 1f).Compute(candidates, tokens, teacher, new float[4]);
        SequenceLossResult nbest = new SequenceDistillationLoss(SequenceEstimator.NBest, 1f).Compute(candidates, tokens, teacher, new float[4]);
        exact.KL.Should().BeGreaterThanOrEqualTo(0, "a divergence over the whole space is never negative");
        exact.KL.Should().Be(nbest.KL, "N-best over the whole space is Exact");
        exact.KL.Should().BeLessThan(1e-6, "teacher and student are the same distribution");

        // Over a smaller set Exact is a partial sum, which may be negative.
        SequenceLosses.FromLogProbabilities(SequenceEstimator.Exact, [Math.Log(0.25)], [Math.Log(0.5)]).KL.Should().BeLessThan(0);
    }
}
