using Distillation.Kernels;

namespace Distillation.Tests;

/// <summary>The fused vector kernels against the double-precision scalar reference, on every row length 1..256 and real vocabularies.</summary>
public class VectorPathTests
{
    public static IEnumerable<object[]> Lengths() => Enumerable.Range(1, 256).Select(v => new object[] { v });

    [Theory]
    [MemberData(nameof(Lengths))]
    public void VectorKernels_MatchScalarReference_OnEveryLength(int vocab) => CompareWithReference(vocab, rows: 3, seed: vocab);

    [Theory]
    [InlineData(32000)]
    [InlineData(128256)]
    public void VectorKernels_MatchScalarReference_OnRealVocabularies(int vocab) => CompareWithReference(vocab, rows: 2, seed: vocab);

    [Theory]
    [InlineData(17)]
    [InlineData(1000)]
    public void TeacherKinds_GiveTheSameLossAsLogits(int vocab)
    {
        var random = new Random(vocab);
        const int rows = 3;
        float[] logits = TestSupport.RandomLogits(random, rows * vocab);
        logits[2] = float.NegativeInfinity;
        float[] student = TestSupport.RandomLogits(random, rows * vocab);
        float[] logProbabilities = new float[logits.Length], probabilities = new float[logits.Length];
        for (int r = 0; r < rows; r++)
        {
            double[] lp = DoubleFormulas.LogSoftmax(logits.Skip(r * vocab).Take(vocab).Select(v => (double)v).ToArray(), 1);
            for (int j = 0; j < vocab; j++)
            {
                logProbabilities[(r * vocab) + j] = (float)lp[j];
                probabilities[(r * vocab) + j] = (float)Math.Exp(lp[j]);
            }
        }

        foreach (KernelPath path in TestSupport.Paths)
        {
            foreach (Divergence d in TestSupport.AllDivergences)
            {
                (float[] fromLogits, float[] gLogits, _) = TestSupport.Run(d, 1.7f, logits, student, vocab, path);
                (float[] fromLogProbs, float[] gLogProbs, _) = TestSupport.Run(d, 1.7f, logProbabilities, student, vocab, path, DistributionKind.LogProbabilities);
                (float[] fromProbs, float[] gProbs, _) = TestSupport.Run(d, 1.7f, probabilities, student, vocab, path, DistributionKind.Probabilities);
                for (int r = 0; r < rows; r++)
                {
                    ReferenceValueTests.AssertValue(fromLogProbs[r], fromLogits[r], $"{d} log-probabilities row {r} {path}");
                    ReferenceValueTests.AssertValue(fromProbs[r], fromLogits[r], $"{d} probabilities row {r} {path}");
                }

                ReferenceValueTests.AssertGradientRow(gLogProbs, gLogits.Select(v => (double)v).ToArray(), $"{d} log-probabilities {path}");
                ReferenceValueTests.AssertGradientRow(gProbs, gLogits.Select(v => (double)v).ToArray(), $"{d} probabilities {path}");
            }
        }
    }

    [Theory]
    [InlineData("teacher-first-chunk-impossible")]
    [InlineData("student-first-chunk-impossible")]
    [InlineData("both-first-chunk-impossible")]
    [InlineData("maxima-in-last-chunk")]
    [InlineData("maxima-in-first-chunk")]
    [InlineData("far-apart-chunks")]
    public void ChunkedKernels_MergeChunksExactly(string shape)
    {
        const int vocab = 9000; // four chunks of the single-pass kernel, the last two split evenly
        var random = new Random(shape.Length);
        float[] t = TestSupport.RandomLogits(random, 2 * vocab);
        float[] s = TestSupport.RandomLogits(random, 2 * vocab);
        for (int j = 0; j < 2048; j++)
        {
            switch (shape)
            {
                case "teacher-first-chunk-impossible": t[j] = t[vocab + j] = float.NegativeInfinity; break;
                case "student-first-chunk-impossible": s[j] = float.NegativeInfinity; break;
                case "both-first-chunk-impossible": t[j] = s[j] = float.NegativeInfinity; break;
                case "maxima-in-last-chunk": t[vocab - 1 - j] += 30; s[(2 * vocab) - 1 - j] += 25; break;
                case "maxima-in-first-chunk": t[j] += 30; s[vocab + j] += 25; break;
                case "far-apart-chunks": t[j] -= 500; s[j] += 400; t[vocab + j] += 300; s[vocab + j] -= 600; break;
            }
        }

        foreach (Divergence d in TestSupport.AllDivergences)
        {
            foreach (float temperature in new[] { 0.5f, 1f, 4f })
            {
                (float[] expected, float[] expectedGradient, _) = TestSupport.Run(d, temperature, t, s, vocab, KernelPath.Scalar);
                foreach (KernelPath path in new[] { KernelPath.Vector256, KernelPath.Vector512 })
                {
                    (float[] actual, float[] gradient, _) = TestSupport.Run(d, temperature, t, s, vocab, path);
                    for (int r = 0; r < 2; r++)
                    {
                        string where = $"{shape} {d} T={temperature} row {r} {path}";
                        ReferenceValueTests.AssertValue(actual[r], expected[r], where);
                        double[] reference = expectedGradient.Skip(r * vocab).Take(vocab).Select(v => (double)v).ToArray();
                        if (d.Kind is DivergenceKind.ForwardKL or DivergenceKind.SoftCrossEntropy || shape != "far-apart-chunks")
                        {
                            ReferenceValueTests.AssertGradientRow(gradient.AsSpan(r * vocab, vocab), reference, where);
                        }
                        else
                        {
                            // The general kernels form log p and log q per element in float32: with log-ratios of
                            // ~1600 nats here the gradient carries the documented float bound, 1e-6 · max|log p − log q| / T.
                            double bound = 1e-6 * MaxLogRatio(t, s, r, vocab, temperature) / temperature;
                            double worst = reference.Select((g, j) => Math.Abs(gradient[(r * vocab) + j] - g)).Max();
                            worst.Should().BeLessThanOrEqualTo(1e-5 + bound, where);
                        }
                    }
                }
            }
        }
    }

    private static double MaxLogRatio(float[] t, float[] s, int r, int vocab, float temperature)
    {
        double[] lp = DoubleFormulas.LogSoftmax(t.Skip(r * vocab).Take(vocab).Select(v => (double)v).ToArray(), temperature);
        double[] lq = DoubleFormulas.LogSoftmax(s.Skip(r * vocab).Take(vocab).Select(v => (double)v).ToArray(), temperature);
        return lp.Zip(lq).Where(z => double.IsFinite(z.First) && double.IsFinite(z.Second)).Max(z => Math.Abs(z.First - z.Second));
    }

    private static void CompareWithReference(int vocab, int rows, int seed)
    {
        var random = new Random(seed);
        float[] teacher = TestSupport.RandomLogits(random, rows * vocab);
        float[] student = TestSupport.RandomLogits(random, rows * vocab);
        if (vocab > 4)
        {
            // Impossible tokens in every position class: teacher only, both, and (forward-KL-infinite) student only on the last row.
            teacher[random.Next(vocab)] = float.NegativeInfinity;
            int both = vocab + random.Next(vocab);
            teacher[both] = student[both] = float.NegativeInfinity;
            student[((rows - 1) * vocab) + random.Next(vocab)] = float.NegativeInfinity;
        }

        int[] labels = Enumerable.Range(0, rows).Select(_ => random.Next(vocab)).ToArray();
        foreach (Divergence d in TestSupport.AllDivergences)
        {
            (float[] expected, float[] expectedGradient, _) = TestSupport.Run(d, 1.5f, teacher, student, vocab, KernelPath.Scalar);
            foreach (KernelPath path in new[] { KernelPath.Vector256, KernelPath.Vector512 })
            {
                (float[] actual, float[] gradient, _) = TestSupport.Run(d, 1.5f, teacher, student, vocab, path);
                for (int r = 0; r < rows; r++)
                {
                    string where = $"{d} V={vocab} row {r} {path}";
                    ReferenceValueTests.AssertValue(actual[r], expected[r], where);
                    ReferenceValueTests.AssertGradientRow(gradient.AsSpan(r * vocab, vocab), expectedGradient.Skip(r * vocab).Take(vocab).Select(v => (double)v).ToArray(), where);
                }
            }
        }

        (float[] lmExpected, float[] lmGradient) = TestSupport.RunLanguageModel(student, labels, vocab, KernelPath.Scalar, 0.1f);
        foreach (KernelPath path in new[] { KernelPath.Vector256, KernelPath.Vector512 })
        {
            (float[] lmActual, float[] lmActualGradient) = TestSupport.RunLanguageModel(student, labels, vocab, path, 0.1f);
            for (int r = 0; r < rows; r++)
            {
                ReferenceValueTests.AssertValue(lmActual[r], lmExpected[r], $"nll V={vocab} row {r} {path}");
                if (float.IsFinite(lmExpected[r]))
                {
                    ReferenceValueTests.AssertGradientRow(lmActualGradient.AsSpan(r * vocab, vocab), lmGradient.Skip(r * vocab).Take(vocab).Select(v => (double)v).ToArray(), $"nll V={vocab} row {r} {path}");
                }
            }
        }
    }
}
