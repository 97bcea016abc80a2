namespace Distillation.Tests.Reliability;

/// <summary>A batch for the concurrency and determinism tests: logits, a padded layout, labels, and candidate data.</summary>
internal sealed class Workload
{
    public Workload(int sequences, int length, int vocab, int seed)
    {
        var random = new Random(seed);
        Vocab = vocab;
        int[] lengths = Enumerable.Range(0, sequences).Select(_ => random.Next(length + 1)).ToArray();
        lengths[0] = length; // at least one real row
        Layout = SequenceLayout.Padded(lengths, length);
        Rows = Layout.RowCount;
        Teacher = TestSupport.RandomLogits(random, Rows * vocab, 3);
        Student = TestSupport.RandomLogits(random, Rows * vocab, 3);
        for (int i = 0; vocab > 1 && i < Teacher.Length; i += 2 + random.Next(97))
        {
            Teacher[i] = float.NegativeInfinity; // impossible teacher tokens, never two in a row, so no row is all −∞
        }

        Labels = Enumerable.Range(0, Rows).Select(r => random.Next(10) == 0 ? TokenLabels.DefaultIgnoreIndex : random.Next(vocab)).ToArray();
        Probabilities = new float[Teacher.Length];
        var lp = new double[vocab];
        for (int r = 0; r < Rows; r++)
        {
            StableReference.LogSoftmax(Teacher.AsSpan(r * vocab, vocab), DistributionKind.Logits, 1, lp);
            for (int j = 0; j < vocab; j++)
            {
                Probabilities[(r * vocab) + j] = (float)Math.Exp(lp[j]);
            }
        }

        // Sequence-level: the sequences of the layout are the candidates, with teacher log-probabilities that sum to ≤ 1.
        CandidateLogProbabilities = Enumerable.Range(0, sequences).Select(_ => Math.Log(random.NextDouble() / sequences)).ToArray();
    }

    public int Vocab { get; }

    public int Rows { get; }

    public SequenceLayout Layout { get; }

    public float[] Teacher { get; }

    public float[] Probabilities { get; }

    public float[] Student { get; }

    public int[] Labels { get; }

    public double[] CandidateLogProbabilities { get; }

    public TeacherDistribution TeacherLogits => TeacherDistribution.FromLogits(Teacher, Vocab, Layout);

    public TeacherDistribution TeacherProbabilities => TeacherDistribution.FromProbabilities(Probabilities, Vocab, Layout);

    public StudentDistribution StudentLogits => StudentDistribution.FromLogits(Student, Vocab, Layout);

    public TokenLabels TokenLabels => new(Labels);

    public override string ToString() => $"{Rows} rows × V={Vocab}";
}

/// <summary>The bits of one call's results, for bit-for-bit comparisons.</summary>
internal readonly record struct Fingerprint(long A, long B, long C, int Length, ulong Hash)
{
    public static Fingerprint Of(double a, double b, double c, ReadOnlySpan<float> x)
    {
        ulong h = 14695981039346656037;
        foreach (float v in x)
        {
            h = (h ^ (uint)BitConverter.SingleToInt32Bits(v)) * 1099511628211;
        }

        return new Fingerprint(BitConverter.DoubleToInt64Bits(a), BitConverter.DoubleToInt64Bits(b), BitConverter.DoubleToInt64Bits(c), x.Length, h);
    }
}

/// <summary>Every public computing entry point on a workload, reduced to a fingerprint of all it returned and wrote.</summary>
internal static class Operations
{
    public const int Count = 6;

    public static readonly Divergence[] Divergences = TestSupport.AllDivergences;

    /// <summary>Runs operation <paramref name="op"/> (0 … <see cref="Count"/> − 1) with the shared instances.</summary>
    public static Fingerprint Run(int op, Workload w, Instances shared, float[] gradient, float[] rowLosses)
    {
        switch (op)
        {
            case 0:
            {
                LossResult r = shared.Distillation[w.Rows % shared.Distillation.Length].Compute(w.TeacherLogits, w.StudentLogits, gradient, Reduction.MeanOverSequences, w.TokenLabels, rowLosses);
                return Fingerprint.Of(r.Value, r.Sum, r.TokenCount, Concat(gradient, rowLosses));
            }

            case 1:
            {
                LossResult r = shared.Distillation[(w.Rows + 3) % shared.Distillation.Length].Compute(w.TeacherProbabilities, w.StudentLogits, gradient, Reduction.None, default, rowLosses);
                return Fingerprint.Of(r.Value, r.Sum, r.SequenceCount, Concat(gradient, rowLosses));
            }

            case 2:
            {
                LossResult r = shared.LanguageModel.Compute(w.StudentLogits, w.TokenLabels, gradient, Reduction.Sum, rowLosses);
                return Fingerprint.Of(r.Value, r.Sum, r.TokenCount, Concat(gradient, rowLosses));
            }

            case 3:
            {
                ObjectiveResult r = shared.Objective.Compute(w.TeacherLogits, w.StudentLogits, w.TokenLabels, gradient, step: w.Rows, Reduction.MeanOverTokens, computeMetrics: true);
                return Fingerprint.Of(r.Total, r.Distillation, r.LanguageModel + r.Metrics!.Value.TeacherEntropy + r.Metrics.Value.StudentEntropy, gradient);
            }

            case 4:
            {
                SequenceLossResult r = shared.Sequence.Compute(w.StudentLogits, w.TokenLabels, w.CandidateLogProbabilities, gradient);
                return Fingerprint.Of(r.CrossEntropy, r.KL, r.TeacherEntropy, gradient);
            }

            default:
            {
                float v = Losses.GeneralizedJsd(0.3, w.Teacher, w.Student, gradient, w.Vocab, temperature: 1.7f, Reduction.Sum);
                return Fingerprint.Of(v, 0, 0, gradient);
            }
        }
    }

    private static float[] Concat(float[] a, float[] b) => [.. a, .. b];
}

/// <summary>The shared, immutable loss instances many threads call at once.</summary>
internal sealed class Instances(int maxDegreeOfParallelism)
{
    public DistillationLoss[] Distillation { get; } = Operations.Divergences
        .Select((d, i) => new DistillationLoss(d, 0.5f + (0.5f * i), i % 2 == 0 ? TemperatureScaling.Squared : TemperatureScaling.None) { MaxDegreeOfParallelism = maxDegreeOfParallelism })
        .ToArray();

    public LanguageModelLoss LanguageModel { get; } = new(0.1f) { MaxDegreeOfParallelism = maxDegreeOfParallelism };

    public DistillationObjective Objective { get; } = new(new DistillationObjectiveOptions
    {
        Divergence = Divergence.GeneralizedJsd(0.5),
        Temperature = 2f,
        Lambda = LambdaSchedule.Linear(0.2, 0.9, 100),
        LabelSmoothing = 0.05f,
        TokenWeighting = TokenWeighting.TeacherConfidence,
    })
    { MaxDegreeOfParallelism = maxDegreeOfParallelism };

    public SequenceDistillationLoss Sequence { get; } = new(SequenceEstimator.Exact, 1.3f);
}
