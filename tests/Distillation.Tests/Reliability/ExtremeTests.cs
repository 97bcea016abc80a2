using System.Diagnostics;
using Distillation.Kernels;
using Xunit.Abstractions;

namespace Distillation.Tests.Reliability;

/// <summary>
/// Extremes: logits of ±1e30, T = 1e-3 and 1e3, V = 1 and V = 1,048,576, a single row, a million rows of V = 8. Values
/// are finite where the exact value is, nothing is NaN, gradients are finite, and every path matches the exact double
/// reference (<see cref="StableReference"/>). Sizes scale with <see cref="ReliabilitySettings.IsFull"/>.
/// </summary>
public sealed class ExtremeTests(ITestOutputHelper output)
{
    private static readonly float[] Temperatures = [1e-3f, 1f, 1e3f];

    /// <summary>
    /// Rows mixing ±1e30, moderate values and −∞ (several patterns per V), every divergence and the hard-label loss, on every
    /// path: all problems are collected and reported together.
    /// </summary>
    [Fact]
    public void HugeLogits_GiveFiniteValues_NoNaN_AndMatchTheExactReference()
    {
        var problems = new List<string>();
        int checkedRows = 0;
        foreach (int vocab in new[] { 1, 2, 7, 16, 17, 1000 })
        {
            (float[] t, float[] s, int rows) = HugeRows(vocab, seed: vocab);
            int[] labels = Enumerable.Range(0, rows).Select(r => (r * 7) % vocab).ToArray();
            foreach (float temperature in Temperatures)
            {
                foreach (KernelPath path in TestSupport.Paths)
                {
                    foreach (Divergence d in TestSupport.AllDivergences)
                    {
                        (float[] values, float[] gradient, LossResult result) = TestSupport.Run(d, temperature, t, s, vocab, path);
                        string where = $"{d} V={vocab} T={temperature} {path}";
                        if (double.IsNaN(result.Value) || values.Any(float.IsNaN) || !Calls.AllFinite(gradient))
                        {
                            problems.Add($"{where}: NaN value or non-finite gradient");
                            continue;
                        }

                        var reference = new double[vocab];
                        for (int r = 0; r < rows; r++, checkedRows++)
                        {
                            ReadOnlySpan<float> tr = t.AsSpan(r * vocab, vocab), sr = s.AsSpan(r * vocab, vocab);
                            double expected = StableReference.Row(d, tr, DistributionKind.Logits, sr, temperature, reference, out double termScale);
                            expected = d.IsDivergence ? Math.Max(expected, 0) : expected;
                            if (double.IsPositiveInfinity(expected) && float.IsFinite(values[r]))
                            {
                                // The exact value is +∞ but the infinite term's weight (e^-2e33) underflows: accepted when
                                // every path agrees, which the properties check; the finite rest has no reference.
                                continue;
                            }

                            if (!Calls.ValuesAgree(values[r], expected))
                            {
                                problems.Add($"{where} row {r}: {values[r]:R}, exact {expected:R}");
                                continue;
                            }

                            if (d.Kind == DivergenceKind.TotalVariation && DivergencePropertyTests.NearTie(tr, sr, temperature, exactToo: true))
                            {
                                continue;
                            }

                            double e = Calls.GradientError(gradient.AsSpan(r * vocab, vocab), reference, Calls.GradientFloor(temperature, termScale));
                            if (!(e <= 1e-5))
                            {
                                problems.Add($"{where} row {r}: gradient off the exact one by {e:E2}");
                            }
                        }
                    }

                    (float[] lmValues, float[] lmGradient) = TestSupport.RunLanguageModel(s, labels, vocab, path, smoothing: 0.1f);
                    var lmReference = new double[vocab];
                    for (int r = 0; r < rows; r++, checkedRows++)
                    {
                        double expected = StableReference.LanguageModel(s.AsSpan(r * vocab, vocab), labels[r], 0.1, lmReference);
                        if (float.IsNaN(lmValues[r]) || !Calls.ValuesAgree(lmValues[r], expected) || !Calls.AllFinite(lmGradient.AsSpan(r * vocab, vocab)))
                        {
                            problems.Add($"LanguageModel(ε=0.1) V={vocab} {path} row {r}: {lmValues[r]:R}, exact {expected:R}");
                        }
                    }
                }
            }
        }

        output.WriteLine($"{checkedRows} rows checked; {problems.Count} problems");
        foreach (var group in problems.GroupBy(p => System.Text.RegularExpressions.Regex.Replace(p, @"^(\S+) (V=\d+) T=\S+ (\w+).*$", "$2 $3 $1")).OrderBy(g => g.Key, StringComparer.Ordinal))
        {
            output.WriteLine($"{group.Count(),4} × {group.Key}   e.g. {group.First()}");
        }

        problems.Should().BeEmpty($"{problems.Count} of {checkedRows} rows are wrong; the first: {string.Join(" | ", problems.Take(12))}");
    }

    /// <summary>The objective and the sequence loss with ±1e30 logits: no NaN, finite gradients.</summary>
    [Fact]
    public void HugeLogits_ObjectiveAndSequenceLoss_GiveNoNaN()
    {
        foreach (int vocab in new[] { 2, 16, 1000 })
        {
            (float[] t, float[] s, int rows) = HugeRows(vocab, seed: vocab + 1);
            int[] labels = Enumerable.Range(0, rows).Select(r => (r * 5) % vocab).ToArray();
            foreach (float temperature in Temperatures)
            {
                foreach (Divergence d in TestSupport.AllDivergences)
                {
                    var g = new float[s.Length];
                    ObjectiveResult r = new DistillationObjective(d, temperature, LambdaSchedule.Constant(0.5)).Compute(
                        TeacherDistribution.FromLogits(t, vocab), StudentDistribution.FromLogits(s, vocab), new TokenLabels(labels), g, step: 0, computeMetrics: true);
                    double.IsNaN(r.Total).Should().BeFalse($"{d} V={vocab} T={temperature}");
                    g.Should().OnlyContain(x => float.IsFinite(x), $"{d} V={vocab} T={temperature}");
                }

                var layout = SequenceLayout.FromLengths(Enumerable.Repeat(1, rows).ToArray());
                var gs = new float[s.Length];
                SequenceLossResult sr = new SequenceDistillationLoss(SequenceEstimator.NBest, temperature)
                    .Compute(StudentDistribution.FromLogits(s, vocab, layout), new TokenLabels(labels), Enumerable.Range(0, rows).Select(k => -1.0 - k).ToArray(), gs);
                double.IsNaN(sr.CrossEntropy).Should().BeFalse();
                gs.Should().OnlyContain(x => float.IsFinite(x));
            }
        }
    }

    /// <summary>V = 1: every divergence is 0 with a zero gradient, the hard-label loss is 0, on every path, for any values.</summary>
    [Fact]
    public void VocabularyOfOne_IsZeroEverywhere()
    {
        float[] t = [0f, 1e30f, -1e30f, 80f, -1e4f, 3.5f], s = [1e30f, 0f, 7f, -1e30f, 1e4f, -2f];
        foreach (float temperature in Temperatures)
        {
            foreach (KernelPath path in TestSupport.Paths)
            {
                foreach (Divergence d in TestSupport.AllDivergences)
                {
                    (float[] values, float[] gradient, _) = TestSupport.Run(d, temperature, t, s, 1, path);
                    values.Should().OnlyContain(v => v == 0, $"{d} T={temperature} {path}: p = q = 1");
                    gradient.Should().OnlyContain(g => g == 0, $"{d} T={temperature} {path}");
                }

                (float[] lm, float[] lmGradient) = TestSupport.RunLanguageModel(s, new int[s.Length], 1, path, 0.3f);
                lm.Should().OnlyContain(v => v == 0);
                lmGradient.Should().OnlyContain(g => g == 0);
            }
        }
    }

    /// <summary>A single row of 1,048,576 columns (3 rows in the full run), every divergence, every path, against the exact reference.</summary>
    [Fact]
    public void MillionColumnVocabulary_MatchesTheExactReference()
    {
        const int vocab = 1 << 20;
        int rows = ReliabilitySettings.Scaled(1, 3);
        var random = new Random(20);
        float[] t = TestSupport.RandomLogits(random, rows * vocab, 4), s = TestSupport.RandomLogits(random, rows * vocab, 4);
        for (int i = 0; i < t.Length; i += 1 + random.Next(5000))
        {
            t[i] = float.NegativeInfinity;
            s[i + 1 < s.Length ? i + 1 : i] += 30; // a few far-out student logits
        }

        var clock = Stopwatch.StartNew();
        Divergence[] divergences = ReliabilitySettings.IsFull ? TestSupport.AllDivergences : [Divergence.ForwardKL, Divergence.ReverseKL, Divergence.GeneralizedJsd(0.5), Divergence.SkewReverseKL(0.1), Divergence.TotalVariation];
        var reference = new double[vocab];
        foreach (Divergence d in divergences)
        {
            var expected = new double[rows];
            var kappa = new double[rows];
            var expectedGradient = new double[rows][];
            for (int r = 0; r < rows; r++)
            {
                expected[r] = StableReference.Row(d, t.AsSpan(r * vocab, vocab), DistributionKind.Logits, s.AsSpan(r * vocab, vocab), 2, reference, out kappa[r]);
                expectedGradient[r] = (double[])reference.Clone();
            }

            foreach (KernelPath path in TestSupport.Paths)
            {
                (float[] values, float[] gradient, _) = TestSupport.Run(d, 2f, t, s, vocab, path, threads: Environment.ProcessorCount);
                for (int r = 0; r < rows; r++)
                {
                    ReferenceValueTests.AssertValue(values[r], d.IsDivergence ? Math.Max(expected[r], 0) : expected[r], $"{d} V=2^20 row {r} {path}");
                    if (d.Kind != DivergenceKind.TotalVariation)
                    {
                        Calls.GradientError(gradient.AsSpan(r * vocab, vocab), expectedGradient[r], Calls.GradientFloor(2, kappa[r])).Should().BeLessThanOrEqualTo(1e-5, $"{d} V=2^20 row {r} {path}");
                    }
                    else
                    {
                        Calls.AllFinite(gradient).Should().BeTrue();
                    }
                }
            }
        }

        (float[] lm, float[] lmGradient) = TestSupport.RunLanguageModel(s, Enumerable.Range(0, rows).Select(r => r * 1000).ToArray(), vocab, KernelPaths.Best, 0.1f);
        for (int r = 0; r < rows; r++)
        {
            ReferenceValueTests.AssertValue(lm[r], StableReference.LanguageModel(s.AsSpan(r * vocab, vocab), r * 1000, 0.1, reference), "LM V=2^20");
        }

        Calls.AllFinite(lmGradient).Should().BeTrue();
        output.WriteLine($"V = 2^20, {rows} row(s), {divergences.Length} divergences × 3 paths + LM: {clock.Elapsed.TotalSeconds:F1} s");
    }

    /// <summary>
    /// A million rows of V = 8 (10^5 rows in CI): every divergence and the hard-label loss on the vector path (V = 8 is one
    /// Vector256) — no NaN, finite gradients, the counts right — and a sample of rows (every row in the full run) against
    /// the exact reference.
    /// </summary>
    [Fact]
    public void MillionRowsOfEight_AreAllFiniteAndExact()
    {
        const int vocab = 8;
        int rows = ReliabilitySettings.Scaled(100_000, 1_000_000), stride = ReliabilitySettings.Scaled(101, 1);
        var random = new Random(8);
        float[] t = TestSupport.RandomLogits(random, rows * vocab, 5), s = TestSupport.RandomLogits(random, rows * vocab, 5);
        for (int i = 0; i < t.Length; i += 2 + random.Next(50))
        {
            t[i] = float.NegativeInfinity;
        }

        var clock = Stopwatch.StartNew();
        var reference = new double[vocab];
        long compared = 0;
        foreach (Divergence d in TestSupport.AllDivergences)
        {
            var loss = new DistillationLoss(d, 1.5f, TemperatureScaling.Squared);
            var g = new float[t.Length];
            var values = new float[rows];
            LossResult result = loss.Compute(TeacherDistribution.FromLogits(t, vocab), StudentDistribution.FromLogits(s, vocab), g, Reduction.None, rowLosses: values);
            result.TokenCount.Should().Be(rows);
            double.IsNaN(result.Sum).Should().BeFalse();
            Calls.AllFinite(g).Should().BeTrue($"{d}: finite gradients over {rows} rows");
            values.Should().NotContain(float.NaN);
            for (int r = 0; r < rows; r += stride, compared++)
            {
                ReadOnlySpan<float> tr = t.AsSpan(r * vocab, vocab), sr = s.AsSpan(r * vocab, vocab);
                double expected = 2.25 * StableReference.Row(d, tr, DistributionKind.Logits, sr, 1.5, reference, out double kappa);
                if (!Calls.ValuesAgree(values[r], d.IsDivergence ? Math.Max(expected, 0) : expected))
                {
                    throw new PropertyViolation($"{d} row {r}: {values[r]:R} against {expected:R}");
                }

                if (d.Kind != DivergenceKind.TotalVariation || !DivergencePropertyTests.NearTie(tr, sr, 1.5f, exactToo: true))
                {
                    for (int j = 0; j < vocab; j++)
                    {
                        reference[j] *= 2.25;
                    }

                    double e = Calls.GradientError(g.AsSpan(r * vocab, vocab), reference, 2.25 * Calls.GradientFloor(1.5, kappa));
                    Ensure.That(e <= 1e-5, () => $"{d} row {r}: gradient off by {e}");
                }
            }
        }

        int[] labels = Enumerable.Range(0, rows).Select(r => r % vocab).ToArray();
        var lmGradient = new float[s.Length];
        LossResult lm = new LanguageModelLoss(0.1f).Compute(StudentDistribution.FromLogits(s, vocab), new TokenLabels(labels), lmGradient);
        lm.TokenCount.Should().Be(rows);
        double.IsFinite(lm.Value).Should().BeTrue();
        Calls.AllFinite(lmGradient).Should().BeTrue();
        output.WriteLine($"{rows} rows × V = 8: {TestSupport.AllDivergences.Length} divergences + LM, {compared} rows compared with the exact reference, {clock.Elapsed.TotalSeconds:F1} s");
    }

    /// <summary>Rows for V: ±1e30 mixed with moderate values and −∞, in several patterns (every row has a possible token).</summary>
    private static (float[] Teacher, float[] Student, int Rows) HugeRows(int vocab, int seed)
    {
        var random = new Random(seed);
        const int rows = 6;
        float[] t = new float[rows * vocab], s = new float[rows * vocab];
        for (int r = 0; r < rows; r++)
        {
            for (int j = 0; j < vocab; j++)
            {
                t[(r * vocab) + j] = Value(random, r, j, teacher: true);
                s[(r * vocab) + j] = Value(random, r, j, teacher: false);
            }

            // Every row keeps a possible token on each side.
            if (t.AsSpan(r * vocab, vocab).IndexOfAnyExcept(float.NegativeInfinity) < 0)
            {
                t[r * vocab] = 1e30f;
            }

            if (s.AsSpan(r * vocab, vocab).IndexOfAnyExcept(float.NegativeInfinity) < 0)
            {
                s[(r * vocab) + (vocab - 1)] = -1e30f;
            }
        }

        return (t, s, rows);
    }

    private static float Value(Random random, int row, int column, bool teacher) => (row, random.Next(6)) switch
    {
        (0, _) => teacher ? 1e30f : -1e30f,                                      // opposite extremes, all columns
        (1, _) => column % 2 == 0 ? 1e30f : -1e30f,                              // ties at ±1e30 on both sides
        (2, < 3) => 1e30f,                                                       // ties at the top mixed with moderate values
        (2, _) => (float)((random.NextDouble() * 20) - 10),
        (3, 0) => float.NegativeInfinity,                                        // −∞ next to ±1e30
        (3, _) => random.Next(2) == 0 ? 1e30f : -1e30f,
        (4, _) => (float)(1e30 * ((random.NextDouble() * 2) - 1)),               // spread over ±1e30
        _ => random.Next(3) == 0 ? -1e30f : (float)((random.NextDouble() * 6) - 3), // moderate with far-out lows
    };
}
