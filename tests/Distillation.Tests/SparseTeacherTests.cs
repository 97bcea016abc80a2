using Distillation.Kernels;

namespace Distillation.Tests;

/// <summary>Top-k teachers against a dense student: the dense limit, the three residual policies, temperature, validation.</summary>
public class SparseTeacherTests
{
    public static readonly ResidualMassPolicy[] Policies = [ResidualMassPolicy.Renormalize, ResidualMassPolicy.RestBucket, ResidualMassPolicy.MissingAsZero];

    /// <summary>A top-k teacher built from dense teacher logits: the k largest (k = V keeps all, shuffled), as log-probabilities at T_gen.</summary>
    internal static (int[] Ids, float[] LogP) TopK(float[] teacherLogits, int vocab, int k, Random random, double generationTemperature = 1)
    {
        int rows = teacherLogits.Length / vocab;
        int[] ids = new int[rows * k];
        float[] logp = new float[rows * k];
        for (int r = 0; r < rows; r++)
        {
            double[] row = teacherLogits.Skip(r * vocab).Take(vocab).Select(x => (double)x).ToArray();
            double[] lp = DoubleFormulas.LogSoftmax(row, generationTemperature);
            int[] order = Enumerable.Range(0, vocab).OrderByDescending(j => lp[j]).Take(k).OrderBy(_ => random.Next()).ToArray();
            for (int i = 0; i < k; i++)
            {
                ids[(r * k) + i] = order[i];
                logp[(r * k) + i] = (float)lp[order[i]];
            }
        }

        return (ids, logp);
    }

    private static (float[] Rows, float[] Gradient) RunTopK(Divergence divergence, float temperature, TopKTeacherDistribution teacher, float[] student, KernelPath path, int threads = 1)
    {
        var loss = new DistillationLoss(divergence, temperature) { MaxDegreeOfParallelism = threads };
        var rows = new float[teacher.RowCount];
        var gradient = new float[student.Length];
        loss.ComputeCore(teacher, StudentDistribution.FromLogits(student, teacher.VocabularySize), gradient, true, Reduction.None, default, rows, path);
        return (rows, gradient);
    }

    [Theory]
    [InlineData(37)]
    [InlineData(300)]
    public void TopK_WithKEqualToV_EqualsTheDenseTeacher_ForEveryDivergencePolicyAndPath(int vocab)
    {
        const int rows = 5;
        var random = new Random(vocab);
        float[] teacherLogits = TestSupport.RandomLogits(random, rows * vocab);
        float[] student = TestSupport.RandomLogits(random, rows * vocab);
        (int[] ids, float[] logp) = TopK(teacherLogits, vocab, vocab, random);
        float[] dense = new float[rows * vocab];
        for (int n = 0; n < ids.Length; n++)
        {
            dense[((n / vocab) * vocab) + ids[n]] = logp[n];
        }

        foreach (KernelPath path in TestSupport.Paths)
        {
            foreach (Divergence d in TestSupport.AllDivergences)
            {
                (float[] denseRows, float[] denseGradient, _) = TestSupport.Run(d, 1.7f, dense, student, vocab, path, DistributionKind.LogProbabilities);
                foreach (ResidualMassPolicy policy in Policies)
                {
                    var teacher = TopKTeacherDistribution.FromLogProbabilities(ids, logp, vocab, vocab, policy);
                    (float[] sparseRows, float[] sparseGradient) = RunTopK(d, 1.7f, teacher, student, path);
                    string because = $"{d}, {policy}, {path}";
                    for (int r = 0; r < rows; r++)
                    {
                        sparseRows[r].Should().BeApproximately(denseRows[r], 1e-5f * Math.Max(1f, Math.Abs(denseRows[r])), because);
                    }

                    float scale = 1e-5f * Math.Max(1f, denseGradient.Max(Math.Abs));
                    for (int j = 0; j < denseGradient.Length; j++)
                    {
                        sparseGradient[j].Should().BeApproximately(denseGradient[j], scale, because);
                    }
                }
            }
        }
    }

    [Theory]
    [InlineData(1f, 1f)]
    [InlineData(2f, 1f)]
    [InlineData(1.5f, 0.7f)]
    public void TopK_SmallK_MatchesTheFormulas_ValuesAndFiniteDifferenceGradients(float temperature, float generationTemperature)
    {
        const int vocab = 40, k = 5, rows = 3;
        var random = new Random(11);
        float[] teacherLogits = TestSupport.RandomLogits(random, rows * vocab);
        float[] student = TestSupport.RandomLogits(random, rows * vocab, scale: 1.5);
        (int[] ids, float[] logp) = TopK(teacherLogits, vocab, k, random, generationTemperature);
        ids[(1 * k) + 3] = TopKTeacherDistribution.EmptySlot; // one empty slot
        logp[(1 * k) + 3] = float.NegativeInfinity;
        foreach (ResidualMassPolicy policy in Policies)
        {
            var teacher = TopKTeacherDistribution.FromLogProbabilities(ids, logp, k, vocab, policy, generationTemperature: generationTemperature);
            foreach (Divergence d in TestSupport.AllDivergences)
            {
                var results = TestSupport.Paths.Select(path => (Path: path, Result: RunTopK(d, temperature, teacher, student, path))).ToArray();
                for (int r = 0; r < rows; r++)
                {
                    int[] rowIds = ids.Skip(r * k).Take(k).ToArray();
                    double[] rowLogp = logp.Skip(r * k).Take(k).Select(x => (double)x).ToArray();
                    double[] s = student.Skip(r * vocab).Take(vocab).Select(x => (double)x).ToArray();
                    double f(double[] x) => SparseFormulas.Row(d, rowIds, rowLogp, policy, generationTemperature, x, temperature);
                    double expected = f(s);
                    bool infinite = double.IsPositiveInfinity(expected);
                    if (!infinite && d.IsDivergence && policy != ResidualMassPolicy.MissingAsZero)
                    {
                        expected = Math.Max(expected, 0);
                    }

                    double[] fd = infinite ? [] : DoubleFormulas.Gradient(f, s);
                    foreach ((KernelPath path, (float[] values, float[] gradient)) in results)
                    {
                        string because = $"{d}, {policy}, {path}, row {r}";
                        if (infinite)
                        {
                            values[r].Should().Be(float.PositiveInfinity, because);
                            continue;
                        }

                        values[r].Should().BeApproximately((float)expected, (float)(1e-5 * Math.Max(1, Math.Abs(expected))), because);
                        double scale = 1e-5 * Math.Max(1, fd.Max(Math.Abs));
                        for (int j = 0; j < vocab; j++)
                        {
                            gradient[(r * vocab) + j].Should().BeApproximately((float)fd[j], (float)scale, $"{because}, column {j}");
                        }
                    }
                }
            }
        }
    }

    [Fact]
    public void TopK_HandComputedForwardKL_UnderEachPolicy()
    {
        // V = 4, uniform student (q = 1/4), teacher keeps id 0 with p = 0.5 and id 2 with p = 0.3 (rest 0.2), T = 1.
        int[] ids = [0, 2];
        float[] logp = [MathF.Log(0.5f), MathF.Log(0.3f)];
        float[] student = new float[4];
        double p0 = Math.Exp(logp[0]), p2 = Math.Exp(logp[1]);
        var expected = new Dictionary<ResidualMassPolicy, double>
        {
            [ResidualMassPolicy.Renormalize] = (p0 / (p0 + p2) * Math.Log(p0 / (p0 + p2) / 0.25)) + (p2 / (p0 + p2) * Math.Log(p2 / (p0 + p2) / 0.25)),
            [ResidualMassPolicy.RestBucket] = (p0 * Math.Log(p0 / 0.25)) + (p2 * Math.Log(p2 / 0.25)) + ((1 - p0 - p2) * Math.Log((1 - p0 - p2) / 0.5)),
            [ResidualMassPolicy.MissingAsZero] = (p0 * Math.Log(p0 / 0.25)) + (p2 * Math.Log(p2 / 0.25)),
        };
        expected[ResidualMassPolicy.Renormalize].Should().BeApproximately(0.724731, 1e-6);
        expected[ResidualMassPolicy.RestBucket].Should().BeApproximately(0.218012, 1e-6);
        expected[ResidualMassPolicy.MissingAsZero].Should().BeApproximately(0.401270, 1e-6);
        foreach (ResidualMassPolicy policy in Policies)
        {
            var teacher = TopKTeacherDistribution.FromLogProbabilities(ids, logp, 2, 4, policy);
            var gradient = new float[4];
            LossResult result = new DistillationLoss(Divergence.ForwardKL).Compute(teacher, StudentDistribution.FromLogits(student, 4), gradient);
            result.Value.Should().BeApproximately(expected[policy], 1e-6, policy.ToString());

            // Forward KL's gradient: q − p on the kept ids; outside them q·(1 − p_rest/q_rest) (rest), q (renormalise), q·Σ_kept p (missing as zero).
            double keptMass = policy == ResidualMassPolicy.Renormalize ? 1 : p0 + p2;
            double off = policy == ResidualMassPolicy.RestBucket ? 0.25 * (1 - ((1 - p0 - p2) / 0.5)) : 0.25 * keptMass;
            double scale = policy == ResidualMassPolicy.Renormalize ? 1 / (p0 + p2) : 1;
            double s = policy == ResidualMassPolicy.MissingAsZero ? keptMass : 1;
            gradient[0].Should().BeApproximately((float)((0.25 * s) - (p0 * scale)), 1e-6f, policy.ToString());
            gradient[2].Should().BeApproximately((float)((0.25 * s) - (p2 * scale)), 1e-6f, policy.ToString());
            gradient[1].Should().BeApproximately((float)off, 1e-6f, policy.ToString());
            gradient[3].Should().BeApproximately((float)off, 1e-6f, policy.ToString());
        }
    }

    [Theory]
    [InlineData(-60f)]
    [InlineData(-200f)]
    [InlineData(float.NegativeInfinity)]
    public void TopK_RestBucket_KeepsTheStudentsTinyRestMass(float offLogit)
    {
        // The student puts (almost) all its mass on the kept ids: Q_out ≈ (V − k)·e^offLogit, far below float's 1e-7
        // relative resolution of Σ_kept q (and, at −200, below float's smallest exponential): summed, not subtracted.
        const int vocab = 64, k = 4;
        int[] ids = [3, 17, 40, 63];
        float[] logp = [MathF.Log(0.4f), MathF.Log(0.3f), MathF.Log(0.2f), MathF.Log(0.05f)];
        float[] student = Enumerable.Repeat(offLogit, vocab).ToArray();
        foreach (int id in ids)
        {
            student[id] = 0.5f * id / 63;
        }

        double expected = SparseFormulas.Row(Divergence.ForwardKL, ids, logp.Select(x => (double)x).ToArray(), ResidualMassPolicy.RestBucket, 1, student.Select(x => (double)x).ToArray(), 1);
        foreach (KernelPath path in TestSupport.Paths)
        {
            var teacher = TopKTeacherDistribution.FromLogProbabilities(ids, logp, k, vocab, ResidualMassPolicy.RestBucket);
            (float[] values, float[] gradient) = RunTopK(Divergence.ForwardKL, 1f, teacher, student, path);
            if (float.IsNegativeInfinity(offLogit))
            {
                values[0].Should().Be(float.PositiveInfinity, "the teacher's rest has mass 0.05 that the student cannot produce");
                gradient.Should().OnlyContain(g => float.IsFinite(g));
                continue;
            }

            values[0].Should().BeApproximately((float)expected, (float)(1e-5 * expected), path.ToString());
            gradient.Should().OnlyContain(g => float.IsFinite(g));
        }
    }

    [Fact]
    public void TopK_RestMass_IsComputedWithoutCancellation_WhenTheKeptMassIsNearlyOne()
    {
        // Σ_kept p = 1 − 2^-40: the rest bucket must hold ≈ 9.1e-13, not 0 or a rounding artefact.
        const int vocab = 32;
        double rest = Math.Pow(2, -40);
        int[] ids = [0, 1];
        float[] logp = [MathF.Log(0.5f), (float)Math.Log(0.5 - rest)];
        double kept = Math.Exp(logp[0]) + Math.Exp(logp[1]);
        double trueRest = -(kept - 1); // exact in double here
        float[] student = new float[vocab];
        var teacher = TopKTeacherDistribution.FromLogProbabilities(ids, logp, 2, vocab, ResidualMassPolicy.RestBucket);
        double qRest = 30.0 / 32;
        double expected = (Math.Exp(logp[0]) * Math.Log(Math.Exp(logp[0]) * 32)) + (Math.Exp(logp[1]) * Math.Log(Math.Exp(logp[1]) * 32)) + (trueRest * Math.Log(trueRest / qRest));
        LossResult result = new DistillationLoss(Divergence.ForwardKL).Evaluate(teacher, StudentDistribution.FromLogits(student, vocab));
        result.Value.Should().BeApproximately(expected, 1e-7);
    }

    [Fact]
    public void TopK_GenerationTemperature_IsCorrectedExactlyUnderRenormalize()
    {
        // Log-probabilities produced at T_gen = 2, distilled at T = 1: the teacher is softmax(logits / 1) over the kept ids.
        const int vocab = 50, rows = 4;
        var random = new Random(5);
        float[] teacherLogits = TestSupport.RandomLogits(random, rows * vocab);
        float[] student = TestSupport.RandomLogits(random, rows * vocab);
        (int[] ids, float[] logp) = TopK(teacherLogits, vocab, vocab, random, generationTemperature: 2);
        var teacher = TopKTeacherDistribution.FromLogProbabilities(ids, logp, vocab, vocab, ResidualMassPolicy.Renormalize, generationTemperature: 2f);
        foreach (Divergence d in TestSupport.AllDivergences)
        {
            (float[] sparse, _) = RunTopK(d, 1f, teacher, student, KernelPaths.Best);
            (float[] dense, _, _) = TestSupport.Run(d, 1f, teacherLogits, student, vocab, KernelPaths.Best);
            for (int r = 0; r < rows; r++)
            {
                sparse[r].Should().BeApproximately(dense[r], 2e-5f * Math.Max(1, Math.Abs(dense[r])), d.ToString());
            }
        }
    }

    [Fact]
    public void TopK_HalfLogProbabilities_AreTheWidenedFloats()
    {
        const int vocab = 100, k = 8, rows = 6;
        var random = new Random(2);
        (int[] ids, float[] logp) = TopK(TestSupport.RandomLogits(random, rows * vocab), vocab, k, random);
        Half[] half = logp.Select(x => (Half)x).ToArray();
        float[] widened = half.Select(x => (float)x).ToArray();
        float[] student = TestSupport.RandomLogits(random, rows * vocab);
        foreach (ResidualMassPolicy policy in Policies)
        {
            var h = TopKTeacherDistribution.FromLogProbabilities(ids, half.AsMemory(), k, vocab, policy);
            var f = TopKTeacherDistribution.FromLogProbabilities(ids, widened, k, vocab, policy);
            h.BytesPerToken.Should().Be(k * 6);
            f.BytesPerToken.Should().Be(k * 8);
            h.DenseBytesPerToken.Should().Be(vocab * 4);
            (float[] a, float[] ga) = RunTopK(Divergence.GeneralizedJsd(0.5), 2f, h, student, KernelPaths.Best);
            (float[] b, float[] gb) = RunTopK(Divergence.GeneralizedJsd(0.5), 2f, f, student, KernelPaths.Best);
            a.Should().Equal(b);
            ga.Should().Equal(gb);
        }
    }

    [Fact]
    public void TopK_ResultDoesNotDependOnTheThreadCount_AndReductionsDivideAsForDense()
    {
        const int vocab = 2000, k = 20, rows = 64;
        var random = new Random(8);
        (int[] ids, float[] logp) = TopK(TestSupport.RandomLogits(random, rows * vocab), vocab, k, random);
        float[] student = TestSupport.RandomLogits(random, rows * vocab);
        var mask = Enumerable.Range(0, rows).Select(r => r % 5 != 0).ToArray();
        var layout = SequenceLayout.Rectangular(8, 8, mask);
        var teacher = TopKTeacherDistribution.FromLogProbabilities(ids, logp, k, vocab, ResidualMassPolicy.RestBucket, layout);
        var s = StudentDistribution.FromLogits(student, vocab, layout);
        float[] g1 = new float[student.Length], g4 = new float[student.Length];
        LossResult one = new DistillationLoss(Divergence.ReverseKL, 2f, TemperatureScaling.Squared) { MaxDegreeOfParallelism = 1 }.Compute(teacher, s, g1);
        LossResult four = new DistillationLoss(Divergence.ReverseKL, 2f, TemperatureScaling.Squared) { MaxDegreeOfParallelism = 4 }.Compute(teacher, s, g4);
        one.Should().Be(four);
        g1.Should().Equal(g4);
        one.TokenCount.Should().Be(mask.Count(m => m));
        one.Value.Should().BeApproximately(one.Sum / one.TokenCount, 1e-12);
        g1.Skip(0).Take(vocab).Should().OnlyContain(x => x == 0, "row 0 is padding");
    }

    [Fact]
    public void TopK_Validation_NamesTheRowAndSlot()
    {
        const int vocab = 10, k = 3;
        int[] good = [0, 1, 2, 3, 4, 5];
        float[] logp = [-1f, -2f, -3f, -1f, -2f, -3f];
        var loss = new DistillationLoss(Divergence.ForwardKL);
        var student = StudentDistribution.FromLogits(new float[2 * vocab], vocab);
        void Check(int[] ids, float[] values, ResidualMassPolicy policy, string message, bool outOfRange = false)
        {
            Action act = () => loss.Compute(TopKTeacherDistribution.FromLogProbabilities(ids, values, k, vocab, policy), student, new float[2 * vocab]);
            if (outOfRange)
            {
                act.Should().ThrowExactly<ArgumentOutOfRangeException>().WithParameterName("teacher").WithMessage(message);
            }
            else
            {
                act.Should().ThrowExactly<ArgumentException>().WithParameterName("teacher").WithMessage(message);
            }
        }

        Check([0, 1, 2, 3, 10, 5], logp, ResidualMassPolicy.Renormalize, "*row 1, slot 1 is 10*[0, 10)*", outOfRange: true);
        Check([0, 1, 2, 3, -2, 5], logp, ResidualMassPolicy.Renormalize, "*row 1, slot 1 is -2*", outOfRange: true);
        Check([0, 1, 2, 3, 5, 3], logp, ResidualMassPolicy.Renormalize, "*row 1 repeats id 3 (slots 0 and 2)*");
        Check(good, [-1f, float.NaN, -3f, -1f, -2f, -3f], ResidualMassPolicy.RestBucket, "*row 0, slot 1 is NaN*");
        Check(good, [-1f, -2f, -3f, -1f, 0.5f, -3f], ResidualMassPolicy.RestBucket, "*row 1, slot 1 is 0.5*≤ 0*");
        Check(good, [-0.1f, -0.2f, -3f, -1f, -2f, -3f], ResidualMassPolicy.MissingAsZero, "*row 0 sum to 1.7*more than 1*");
        Check([0, 1, -1, 3, 4, 5], [-1f, -2f, -3f, -1f, -2f, -3f], ResidualMassPolicy.RestBucket, "*row 0, slot 2 is empty*must hold −∞*");
        Check(good, [-1f, -2f, -3f, float.NegativeInfinity, float.NegativeInfinity, float.NegativeInfinity], ResidualMassPolicy.Renormalize, "*row 1 has no possible token*");

        // The same no-mass row is valid when the missing mass is a rest bucket (the teacher is all "rest").
        loss.Compute(TopKTeacherDistribution.FromLogProbabilities(good, new[] { -1f, -2f, -3f, float.NegativeInfinity, float.NegativeInfinity, float.NegativeInfinity }, k, vocab, ResidualMassPolicy.RestBucket), student, new float[2 * vocab]).Value.Should().BeGreaterThan(0);

        // A masked row is never read, NaN and bad ids included.
        var layout = SequenceLayout.Rectangular(2, 1, new[] { true, false });
        var masked = TopKTeacherDistribution.FromLogProbabilities(new[] { 0, 1, 2, 99, 99, 99 }, new[] { -1f, -2f, -3f, float.NaN, 5f, 0f }, k, vocab, ResidualMassPolicy.Renormalize, layout);
        loss.Compute(masked, StudentDistribution.FromLogits(new float[2 * vocab], vocab, layout), new float[2 * vocab]).TokenCount.Should().Be(1);
    }

    [Fact]
    public void TopK_StructuralErrors_NameTheParameter()
    {
        FluentActions.Invoking(() => TopKTeacherDistribution.FromLogProbabilities(new int[6], new float[6], 4, 10, ResidualMassPolicy.Renormalize))
            .Should().ThrowExactly<ArgumentException>().WithParameterName("ids");
        FluentActions.Invoking(() => TopKTeacherDistribution.FromLogProbabilities(new int[6], new float[5], 3, 10, ResidualMassPolicy.Renormalize))
            .Should().ThrowExactly<ArgumentException>().WithParameterName("logProbabilities");
        FluentActions.Invoking(() => TopKTeacherDistribution.FromLogProbabilities(new int[6], new float[6], 11, 10, ResidualMassPolicy.Renormalize))
            .Should().ThrowExactly<ArgumentOutOfRangeException>().WithParameterName("k");
        FluentActions.Invoking(() => TopKTeacherDistribution.FromLogProbabilities(new int[6], new float[6], 3, 10, (ResidualMassPolicy)7))
            .Should().ThrowExactly<ArgumentOutOfRangeException>().WithParameterName("residual");
        FluentActions.Invoking(() => TopKTeacherDistribution.FromLogProbabilities(new int[6], new float[6], 3, 10, ResidualMassPolicy.Renormalize, generationTemperature: 0))
            .Should().ThrowExactly<ArgumentOutOfRangeException>().WithParameterName("generationTemperature");
        var teacher = TopKTeacherDistribution.FromLogProbabilities(new[] { 0, 1, 2 }, new[] { -1f, -2f, -3f }, 3, 10, ResidualMassPolicy.Renormalize);
        FluentActions.Invoking(() => new DistillationLoss(Divergence.ForwardKL).Compute(teacher, StudentDistribution.FromLogits(new float[12], 12), new float[12]))
            .Should().ThrowExactly<ArgumentException>().WithParameterName("student").WithMessage("*VocabularyMapping*");
        FluentActions.Invoking(() => new DistillationLoss(Divergence.ForwardKL).Compute(teacher, StudentDistribution.FromLogits(new float[10], 10), new float[9]))
            .Should().ThrowExactly<ArgumentException>().WithParameterName("studentGradient");
        float[] student = new float[10];
        student[4] = float.NaN;
        FluentActions.Invoking(() => new DistillationLoss(Divergence.ForwardKL).Compute(teacher, StudentDistribution.FromLogits(student, 10), new float[10]))
            .Should().ThrowExactly<ArgumentException>().WithParameterName("student").WithMessage("*row 0, column 4 is NaN*");
    }

    [Fact]
    public void TopK_StreamedGradient_IsTheSameWhereverTheBufferStarts_WithKeptIdsAtEveryEdge()
    {
        // The vector path streams each gradient row from its first 64-byte boundary and patches the kept entries in as
        // it goes; ids at the row's ends, at vector boundaries and in the unaligned head must come out the same at every
        // offset of the buffer, and as the scalar reference says.
        const int vocab = 100, rows = 3, k = 8;
        var random = new Random(17);
        float[] student = TestSupport.RandomLogits(random, rows * vocab);
        int[] ids = new int[rows * k];
        int[][] chosen = [[0, 1, 2, 15, 16, 17, 98, 99], [3, 31, 32, 47, 48, 64, 80, 97], [5, 6, 7, 8, 9, 10, 11, 12]];
        float[] logp = new float[rows * k];
        for (int r = 0; r < rows; r++)
        {
            int[] shuffled = chosen[r].OrderBy(_ => random.Next()).ToArray(); // ids arrive in any order
            for (int i = 0; i < k; i++)
            {
                ids[(r * k) + i] = shuffled[i];
                logp[(r * k) + i] = MathF.Log(0.9f / k);
            }
        }

        var teacher = TopKTeacherDistribution.FromLogProbabilities(ids, logp, k, vocab, ResidualMassPolicy.RestBucket);
        foreach (Divergence d in new[] { Divergence.ForwardKL, Divergence.GeneralizedJsd(0.5) })
        {
            (_, float[] reference) = RunTopK(d, 1.5f, teacher, student, KernelPath.Scalar);
            float[]? first = null;
            for (int offset = 0; offset < 16; offset++)
            {
                float[] buffer = new float[(rows * vocab) + 16];
                new DistillationLoss(d, 1.5f).Compute(teacher, StudentDistribution.FromLogits(student, vocab), buffer.AsSpan(offset, rows * vocab), Reduction.Sum);
                float[] gradient = buffer.AsSpan(offset, rows * vocab).ToArray();
                first ??= gradient;
                gradient.Should().Equal(first, $"{d}, buffer offset {offset}");
                buffer.Take(offset).All(x => x == 0).Should().BeTrue("nothing is written before the row");
                buffer.Skip(offset + (rows * vocab)).All(x => x == 0).Should().BeTrue("nothing is written after the row");
            }

            for (int j = 0; j < reference.Length; j++)
            {
                first![j].Should().BeApproximately(reference[j], 1e-6f, $"{d}, column {j % vocab} of row {j / vocab}");
            }
        }
    }
}
