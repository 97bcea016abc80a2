namespace Distillation.Tests;

/// <summary>Sequence-level losses against the exact enumerations of the reference data, finite differences and estimator statistics.</summary>
public class SequenceTests
{
    public static IEnumerable<object[]> Cases() => ReferenceData.SequenceCases.Select(c => new object[] { c.Name });

    [Theory]
    [MemberData(nameof(Cases))]
    public void Exact_FromSequenceLogProbabilities_MatchesTheEnumeration(string name)
    {
        ReferenceData.SequenceCase c = ReferenceData.SequenceCases.Single(x => x.Name == name);
        var gradient = new double[c.Sequences.Length];
        SequenceLossResult r = SequenceLosses.FromLogProbabilities(SequenceEstimator.Exact, c.TeacherSeqLogprob, c.StudentSeqLogprob, gradient);
        AssertRelative(r.CrossEntropy, c.Expected["sequence_cross_entropy"], 1e-9, "CE");
        AssertRelative(r.KL, c.Expected["sequence_kl"], 1e-9, "KL");
        AssertRelative(r.TeacherEntropy, c.Expected["teacher_entropy"], 1e-9, "H");
        r.TeacherMass.Should().BeApproximately(1, 1e-9);
        gradient.Should().Equal(c.TeacherSeqLogprob.Select(a => -Math.Exp(a)), "∂CE/∂b_y = −P_t(y)");
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Exact_FromPerPrefixLogits_MatchesTheEnumeration(string name)
    {
        ReferenceData.SequenceCase c = ReferenceData.SequenceCases.Single(x => x.Name == name);
        (StudentDistribution teacherRows, StudentDistribution studentRows, TokenLabels tokens) = CandidateRows(c);
        var a = new double[c.Sequences.Length];
        SequenceLosses.StudentLogProbabilities(teacherRows, tokens, (float)c.Temperature, a);
        for (int k = 0; k < a.Length; k++)
        {
            a[k].Should().BeApproximately(c.TeacherSeqLogprob[k], 1e-5 * Math.Max(1, Math.Abs(c.TeacherSeqLogprob[k])), $"teacher log-probability of sequence {k}");
        }

        var gradient = new float[studentRows.Values.Length];
        SequenceLossResult r = new SequenceDistillationLoss(SequenceEstimator.Exact, (float)c.Temperature).Compute(studentRows, tokens, a, gradient);
        AssertRelative(r.CrossEntropy, c.Expected["sequence_cross_entropy"], 1e-5, "CE");
        AssertRelative(r.KL, c.Expected["sequence_kl"], 1e-5, "KL");
        AssertRelative(r.TeacherEntropy, c.Expected["teacher_entropy"], 1e-5, "H");
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void TeacherWeightedTokenCrossEntropies_SumToTheSequenceCrossEntropy(string name)
    {
        // −Σ_y P_t(y) log P_s(y) = Σ_prefix P_t(prefix) · CE(p_t(·|prefix), p_s(·|prefix)).
        ReferenceData.SequenceCase c = ReferenceData.SequenceCases.Single(x => x.Name == name);
        float[] prefixWeights = c.Prefixes.Select(prefix => (float)c.Sequences
            .Select((y, k) => (y, k))
            .Where(t => t.y.Take(prefix.Length).SequenceEqual(prefix))
            .Sum(t => Math.Exp(c.TeacherSeqLogprob[t.k]))).ToArray();
        var loss = new DistillationLoss(Divergence.SoftCrossEntropy, (float)c.Temperature);
        var gradient = new float[c.StudentLogits.Length];
        LossResult r = loss.Compute(TeacherDistribution.FromLogits(c.TeacherLogits, c.Vocab), StudentDistribution.FromLogits(c.StudentLogits, c.Vocab), gradient, Reduction.Sum, rowWeights: prefixWeights);
        AssertRelative(r.Value, c.Expected["sequence_cross_entropy"], 1e-5, "Σ_prefix P_t(prefix) CE_prefix");

        LossResult kl = new DistillationLoss(Divergence.ForwardKL, (float)c.Temperature).Evaluate(TeacherDistribution.FromLogits(c.TeacherLogits, c.Vocab), StudentDistribution.FromLogits(c.StudentLogits, c.Vocab), Reduction.Sum, rowWeights: prefixWeights);
        AssertRelative(kl.Value, c.Expected["sequence_kl"], 1e-5, "Σ_prefix P_t(prefix) KL_prefix (the chain rule of KL)");
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void NBest_EqualsExact_WhenTheCandidatesAreTheWholeSpace(string name)
    {
        ReferenceData.SequenceCase c = ReferenceData.SequenceCases.Single(x => x.Name == name);
        var ge = new double[c.Sequences.Length];
        var gn = new double[c.Sequences.Length];
        SequenceLossResult exact = SequenceLosses.FromLogProbabilities(SequenceEstimator.Exact, c.TeacherSeqLogprob, c.StudentSeqLogprob, ge);
        SequenceLossResult nbest = SequenceLosses.FromLogProbabilities(SequenceEstimator.NBest, c.TeacherSeqLogprob, c.StudentSeqLogprob, gn);
        AssertRelative(nbest.CrossEntropy, exact.CrossEntropy, 1e-9, "CE");
        AssertRelative(nbest.KL, exact.KL, 1e-9, "KL");
        AssertRelative(nbest.TeacherEntropy, exact.TeacherEntropy, 1e-9, "H");
        for (int k = 0; k < ge.Length; k++)
        {
            gn[k].Should().BeApproximately(ge[k], 1e-12);
        }
    }

    [Fact]
    public void NBest_OnASubset_RenormalisesTheTeacher_AndKLStaysNonNegative()
    {
        ReferenceData.SequenceCase c = ReferenceData.SequenceCases[0];
        int[] best = Enumerable.Range(0, c.Sequences.Length).OrderByDescending(k => c.TeacherSeqLogprob[k]).Take(5).ToArray();
        double[] a = best.Select(k => c.TeacherSeqLogprob[k]).ToArray();
        double[] b = best.Select(k => c.StudentSeqLogprob[k]).ToArray();
        SequenceLossResult r = SequenceLosses.FromLogProbabilities(SequenceEstimator.NBest, a, b);
        double z = a.Sum(Math.Exp);
        double[] w = a.Select(x => Math.Exp(x) / z).ToArray();
        r.CrossEntropy.Should().BeApproximately(-w.Zip(b).Sum(t => t.First * t.Second), 1e-12);
        r.KL.Should().BeApproximately(w.Zip(b).Sum(t => t.First * (Math.Log(t.First) - t.Second)), 1e-12);
        r.KL.Should().BeGreaterThanOrEqualTo(0);
        r.TeacherMass.Should().BeApproximately(z, 1e-12);
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void MonteCarlo_ConvergesToTheExactValue(string name)
    {
        ReferenceData.SequenceCase c = ReferenceData.SequenceCases.Single(x => x.Name == name);
        double[] p = c.TeacherSeqLogprob.Select(Math.Exp).ToArray();
        double exact = c.Expected["sequence_cross_entropy"];
        double variance = p.Zip(c.StudentSeqLogprob).Sum(t => t.First * Math.Pow(-t.Second - exact, 2));
        const int samples = 20000;
        var random = new Random(2026);
        int[] drawn = Enumerable.Range(0, samples).Select(_ => Sample(p, random)).ToArray();
        SequenceLossResult r = SequenceLosses.FromLogProbabilities(SequenceEstimator.MonteCarlo, drawn.Select(k => c.TeacherSeqLogprob[k]).ToArray(), drawn.Select(k => c.StudentSeqLogprob[k]).ToArray());
        double tolerance = 4 * Math.Sqrt(variance / samples); // four standard errors of the mean
        r.CrossEntropy.Should().BeApproximately(exact, tolerance);
        r.KL.Should().BeApproximately(c.Expected["sequence_kl"], 4 * Math.Sqrt(p.Select((pk, k) => pk * Math.Pow(c.TeacherSeqLogprob[k] - c.StudentSeqLogprob[k] - c.Expected["sequence_kl"], 2)).Sum() / samples));
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void ImportanceSampling_FromAUniformProposal_ConvergesToTheExactValue(string name)
    {
        ReferenceData.SequenceCase c = ReferenceData.SequenceCases.Single(x => x.Name == name);
        int n = c.Sequences.Length;
        double[] p = c.TeacherSeqLogprob.Select(Math.Exp).ToArray();
        double exact = c.Expected["sequence_cross_entropy"];
        // Delta-method variance of the self-normalised estimator under a uniform proposal q = 1/n.
        double variance = Enumerable.Range(0, n).Sum(k => (1.0 / n) * Math.Pow(p[k] * n, 2) * Math.Pow(-c.StudentSeqLogprob[k] - exact, 2));
        const int samples = 40000;
        var random = new Random(7);
        int[] drawn = Enumerable.Range(0, samples).Select(_ => random.Next(n)).ToArray();
        double[] proposal = drawn.Select(_ => -Math.Log(n)).ToArray();
        SequenceLossResult r = SequenceLosses.FromLogProbabilities(SequenceEstimator.ImportanceSampled, drawn.Select(k => c.TeacherSeqLogprob[k]).ToArray(), drawn.Select(k => c.StudentSeqLogprob[k]).ToArray(), default, proposal);
        r.CrossEntropy.Should().BeApproximately(exact, 5 * Math.Sqrt(variance / samples));
    }

    [Theory]
    [InlineData(SequenceEstimator.Exact)]
    [InlineData(SequenceEstimator.NBest)]
    [InlineData(SequenceEstimator.MonteCarlo)]
    [InlineData(SequenceEstimator.ImportanceSampled)]
    public void TokenGradient_MatchesFiniteDifferences(SequenceEstimator estimator)
    {
        const int vocab = 6, length = 3, candidates = 4;
        const float temperature = 1.7f;
        var random = new Random((int)estimator);
        int[] lengths = [3, 2, 3, 1];
        var layout = SequenceLayout.Padded(lengths, length);
        float[] logits = TestSupport.RandomLogits(random, layout.RowCount * vocab, 2);
        int[] tokens = Enumerable.Range(0, layout.RowCount).Select(r => layout.IsRowReal(r) ? random.Next(vocab) : -100).ToArray();
        double[] a = [-2.0, -1.2, -3.1, -0.9];
        double[] proposal = [-1.5, -1.5, -1.2, -1.0];
        ReadOnlySpan<double> q = estimator == SequenceEstimator.ImportanceSampled ? proposal : default;
        var gradient = new float[logits.Length];
        SequenceLossResult r = new SequenceDistillationLoss(estimator, temperature).Compute(StudentDistribution.FromLogits(logits, vocab, layout), new TokenLabels(tokens), a, gradient, q);

        double[] w = new double[candidates];
        SequenceLosses.FromLogProbabilities(estimator, a, new double[candidates], w, q);
        double CrossEntropy(double[] s)
        {
            double ce = 0;
            for (int row = 0; row < layout.RowCount; row++)
            {
                if (tokens[row] >= 0)
                {
                    double[] lq = DoubleFormulas.LogSoftmax(s.Skip(row * vocab).Take(vocab).ToArray(), temperature);
                    ce += w[row / length] * lq[tokens[row]]; // w holds −w_k
                }
            }

            return ce;
        }

        double[] all = logits.Select(v => (double)v).ToArray();
        r.CrossEntropy.Should().BeApproximately(CrossEntropy(all), 1e-5);
        ReferenceValueTests.AssertGradientRow(gradient, DoubleFormulas.Gradient(CrossEntropy, all), $"{estimator}");
    }

    [Fact]
    public void FromLogProbabilities_RejectsBadInput()
    {
        FluentActions.Invoking(() => SequenceLosses.FromLogProbabilities(SequenceEstimator.Exact, [-0.1, -0.1], [-1, -1]))
            .Should().ThrowExactly<ArgumentException>().WithParameterName("teacherLogProbabilities").WithMessage("*sum to*> 1*");
        FluentActions.Invoking(() => SequenceLosses.FromLogProbabilities(SequenceEstimator.NBest, [-1, double.NaN], [-1, -1]))
            .Should().ThrowExactly<ArgumentException>().WithParameterName("teacherLogProbabilities").WithMessage("*Entry 1 is NaN*");
        FluentActions.Invoking(() => SequenceLosses.FromLogProbabilities(SequenceEstimator.NBest, [-1, -2], [-1]))
            .Should().ThrowExactly<ArgumentException>().WithParameterName("studentLogProbabilities");
        FluentActions.Invoking(() => SequenceLosses.FromLogProbabilities(SequenceEstimator.ImportanceSampled, [-1, -2], [-1, -1]))
            .Should().ThrowExactly<ArgumentException>().WithParameterName("proposalLogProbabilities");
        FluentActions.Invoking(() => SequenceLosses.FromLogProbabilities(SequenceEstimator.MonteCarlo, [double.NegativeInfinity, -1], [-1, -1]))
            .Should().ThrowExactly<ArgumentException>().WithParameterName("teacherLogProbabilities").WithMessage("*cannot have been sampled*");
        FluentActions.Invoking(() => SequenceLosses.FromLogProbabilities(SequenceEstimator.NBest, [double.NegativeInfinity], [-1]))
            .Should().ThrowExactly<ArgumentException>().WithMessage("*cannot be normalised*");
        FluentActions.Invoking(() => new SequenceDistillationLoss(SequenceEstimator.NBest).Compute(StudentDistribution.FromLogits(new float[6], 3), new TokenLabels(new[] { 0, 1 }), [-1, -1], new float[6]))
            .Should().ThrowExactly<ArgumentException>().WithParameterName("candidates").WithMessage("*layout*");
    }

    [Fact]
    public void ZeroCandidates_AreValid()
    {
        SequenceLossResult r = SequenceLosses.FromLogProbabilities(SequenceEstimator.MonteCarlo, [], []);
        r.Should().Be(new SequenceLossResult(0, 0, 0, 0, 0));
    }

    [Fact]
    public void ImpossibleStudentCandidate_GivesInfiniteCrossEntropy_ButWeightZeroCandidatesAreSkipped()
    {
        SequenceLosses.FromLogProbabilities(SequenceEstimator.NBest, [-1, -2], [-1, double.NegativeInfinity]).CrossEntropy.Should().Be(double.PositiveInfinity);
        SequenceLossResult r = SequenceLosses.FromLogProbabilities(SequenceEstimator.Exact, [-0.5, double.NegativeInfinity], [-1, double.NegativeInfinity]);
        double.IsFinite(r.CrossEntropy).Should().BeTrue("a candidate the teacher never produces carries weight 0");
    }

    internal static (StudentDistribution Teacher, StudentDistribution Student, TokenLabels Tokens) CandidateRows(ReferenceData.SequenceCase c)
    {
        var prefixIndex = c.Prefixes.Select((p, i) => (Key: string.Join(",", p), i)).ToDictionary(t => t.Key, t => t.i);
        int v = c.Vocab, l = c.Length;
        var teacher = new float[c.Sequences.Length * l * v];
        var student = new float[c.Sequences.Length * l * v];
        var tokens = new int[c.Sequences.Length * l];
        for (int k = 0; k < c.Sequences.Length; k++)
        {
            for (int n = 0; n < l; n++)
            {
                int row = (k * l) + n, prefix = prefixIndex[string.Join(",", c.Sequences[k].Take(n))];
                Array.Copy(c.TeacherLogits, prefix * v, teacher, row * v, v);
                Array.Copy(c.StudentLogits, prefix * v, student, row * v, v);
                tokens[row] = c.Sequences[k][n];
            }
        }

        var layout = SequenceLayout.Rectangular(c.Sequences.Length, l);
        return (StudentDistribution.FromLogits(teacher, v, layout), StudentDistribution.FromLogits(student, v, layout), new TokenLabels(tokens));
    }

    private static int Sample(double[] p, Random random)
    {
        double u = random.NextDouble(), acc = 0;
        for (int k = 0; k < p.Length; k++)
        {
            acc += p[k];
            if (u < acc)
            {
                return k;
            }
        }

        return p.Length - 1;
    }

    private static void AssertRelative(double actual, double expected, double relative, string what) =>
        Math.Abs(actual - expected).Should().BeLessThanOrEqualTo(relative * Math.Max(1, Math.Abs(expected)), $"{what}: {actual} vs {expected}");
}
