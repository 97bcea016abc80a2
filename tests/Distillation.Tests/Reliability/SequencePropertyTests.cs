using CsCheck;
using Distillation.Kernels;
using Xunit.Abstractions;

namespace Distillation.Tests.Reliability;

/// <summary>
/// A tiny autoregressive model pair over a vocabulary of V tokens and sequences of length L: one teacher and one student
/// logit row for every prefix, so that the whole output space (V^L sequences) can be enumerated.
/// </summary>
internal sealed class TinyModels
{
    public TinyModels(int vocab, int length, float[] teacher, float[] student, float temperature)
    {
        Vocab = vocab;
        Length = length;
        TeacherLogits = teacher;
        StudentLogits = student;
        Temperature = temperature;
        for (int n = 0; n < length; n++)
        {
            foreach (int[] p in Enumerate(vocab, n))
            {
                PrefixIndex[Key(p)] = Prefixes.Count;
                Prefixes.Add(p);
            }
        }

        Sequences = Enumerate(vocab, length).ToList();
        TeacherSequenceLogProbabilities = Sequences.Select(y => LogProbability(TeacherLogits, y)).ToArray();
    }

    public int Vocab { get; }

    public int Length { get; }

    /// <summary>One row of V logits per prefix, in <see cref="Prefixes"/> order.</summary>
    public float[] TeacherLogits { get; }

    public float[] StudentLogits { get; }

    public float Temperature { get; }

    public List<int[]> Prefixes { get; } = [];

    public Dictionary<string, int> PrefixIndex { get; } = [];

    /// <summary>All V^L sequences.</summary>
    public List<int[]> Sequences { get; }

    /// <summary>a_k = log P_t(y_k) at T, in double.</summary>
    public double[] TeacherSequenceLogProbabilities { get; }

    public static int PrefixCount(int vocab, int length) => Enumerable.Range(0, length).Sum(n => (int)Math.Pow(vocab, n));

    /// <summary>P_t(prefix) = Σ over the sequences that start with it.</summary>
    public double PrefixProbability(int[] prefix) => Sequences
        .Select((y, k) => (y, k))
        .Where(t => t.y.Take(prefix.Length).SequenceEqual(prefix))
        .Sum(t => Math.Exp(TeacherSequenceLogProbabilities[t.k]));

    /// <summary>The candidates' student rows (teacher forcing): row k·L + n is the student's row for prefix y_k[..n].</summary>
    public (float[] Rows, int[] Tokens, int[] PrefixOfRow) CandidateRows()
    {
        int k = Sequences.Count;
        var rows = new float[k * Length * Vocab];
        var tokens = new int[k * Length];
        var prefixOfRow = new int[k * Length];
        for (int c = 0; c < k; c++)
        {
            for (int n = 0; n < Length; n++)
            {
                int row = (c * Length) + n, prefix = PrefixIndex[Key(Sequences[c].Take(n))];
                Array.Copy(StudentLogits, prefix * Vocab, rows, row * Vocab, Vocab);
                tokens[row] = Sequences[c][n];
                prefixOfRow[row] = prefix;
            }
        }

        return (rows, tokens, prefixOfRow);
    }

    public override string ToString() =>
        $"V={Vocab} L={Length} T={Temperature:R}\n  teacher=[{Batch.Show(TeacherLogits)}]\n  student=[{Batch.Show(StudentLogits)}]";

    private double LogProbability(float[] logits, int[] y)
    {
        double sum = 0;
        var lp = new double[Vocab];
        for (int n = 0; n < y.Length; n++)
        {
            int prefix = PrefixIndex[Key(y.Take(n))];
            StableReference.LogSoftmax(logits.AsSpan(prefix * Vocab, Vocab), DistributionKind.Logits, Temperature, lp);
            sum += lp[y[n]];
        }

        return sum;
    }

    private static string Key(IEnumerable<int> prefix) => string.Join(",", prefix);

    private static IEnumerable<int[]> Enumerate(int vocab, int length)
    {
        if (length == 0)
        {
            yield return [];
            yield break;
        }

        foreach (int[] head in Enumerate(vocab, length - 1))
        {
            for (int t = 0; t < vocab; t++)
            {
                yield return [.. head, t];
            }
        }
    }
}

/// <summary>Sequence-level identities on random tiny autoregressive models whose whole output space is enumerated.</summary>
public sealed class SequencePropertyTests(ITestOutputHelper output)
{
    private static readonly Gen<(int Vocab, int Length)> Shapes = Gen.OneOf(
        Gen.Select(Gen.Int[1, 4], Gen.Int[1, 3]),
        Gen.Select(Gen.Int[5, 9], Gen.Int[1, 2]),
        Gen.Select(Gen.Int[10, 20], Gen.Const(1)));

    internal static readonly Gen<TinyModels> Models =
        from shape in Shapes
        from teacher in Generators.Rows(TinyModels.PrefixCount(shape.Vocab, shape.Length), shape.Vocab)
        from student in Generators.Rows(TinyModels.PrefixCount(shape.Vocab, shape.Length), shape.Vocab)
        from temperature in Generators.Temperature
        select new TinyModels(shape.Vocab, shape.Length, teacher, student, temperature);

    /// <summary>
    /// N-best over the whole output space equals Exact — CE, KL, H and every token-logit gradient — through both
    /// <see cref="SequenceDistillationLoss"/> and <see cref="SequenceLosses.FromLogProbabilities"/>.
    /// </summary>
    [Fact]
    public void NBest_OverTheWholeSpace_EqualsExact()
    {
        Calls.Property(output, "Sequence.nbest-equals-exact", Models, m =>
        {
            (float[] rows, int[] tokens, _) = m.CandidateRows();
            var layout = SequenceLayout.Rectangular(m.Sequences.Count, m.Length);
            var candidates = StudentDistribution.FromLogits(rows, m.Vocab, layout);
            var labels = new TokenLabels(tokens);
            double[] a = m.TeacherSequenceLogProbabilities;
            var gExact = new float[rows.Length];
            var gNBest = new float[rows.Length];
            SequenceLossResult exact = new SequenceDistillationLoss(SequenceEstimator.Exact, m.Temperature).Compute(candidates, labels, a, gExact);
            SequenceLossResult nbest = new SequenceDistillationLoss(SequenceEstimator.NBest, m.Temperature).Compute(candidates, labels, a, gNBest);
            Same(exact, nbest, 1e-9, m, "SequenceDistillationLoss");
            Ensure.That(Math.Abs(exact.TeacherMass - 1) <= 1e-9, () => $"teacher mass {exact.TeacherMass:R} over the whole space\n{m}");
            for (int i = 0; i < rows.Length; i += m.Vocab)
            {
                double e = Calls.GradientError(gNBest.AsSpan(i, m.Vocab), gExact.AsSpan(i, m.Vocab));
                Ensure.That(e <= 1e-6, () => $"row {i / m.Vocab}: N-best gradient differs from Exact by {e}\n{m}");
            }

            var b = new double[m.Sequences.Count];
            SequenceLosses.StudentLogProbabilities(candidates, labels, m.Temperature, b);
            var wExact = new double[b.Length];
            var wNBest = new double[b.Length];
            SequenceLossResult e2 = SequenceLosses.FromLogProbabilities(SequenceEstimator.Exact, a, b, wExact);
            SequenceLossResult n2 = SequenceLosses.FromLogProbabilities(SequenceEstimator.NBest, a, b, wNBest);
            Same(e2, n2, 1e-9, m, "FromLogProbabilities");
            Same(exact, e2, 1e-9, m, "Compute vs FromLogProbabilities");
            for (int k = 0; k < b.Length; k++)
            {
                Ensure.That(Math.Abs(wExact[k] - wNBest[k]) <= 1e-12, () => $"∂L/∂b_{k}: {wExact[k]:R} vs {wNBest[k]:R}\n{m}");
            }
        });
    }

    /// <summary>
    /// The chain rule of cross-entropy and KL: Σ_prefix P_t(prefix)·CE(p_t(·|prefix), p_s(·|prefix)) (token-level soft CE
    /// with row weights) is the sequence-level CE, the same with forward KL is the sequence KL, and the token-level
    /// gradient of each prefix row is the sum of the sequence-level gradients of the candidate rows that share it.
    /// </summary>
    [Fact]
    public void PrefixWeightedTokenLosses_AreTheSequenceLosses()
    {
        Calls.Property(output, "Sequence.prefix-weighted-token-ce", Gen.Select(Models, Generators.Path), c =>
        {
            (TinyModels m, KernelPath path) = c;
            (float[] rows, int[] tokens, int[] prefixOfRow) = m.CandidateRows();
            var layout = SequenceLayout.Rectangular(m.Sequences.Count, m.Length);
            var seqGradient = new float[rows.Length];
            SequenceLossResult seq = new SequenceDistillationLoss(SequenceEstimator.Exact, m.Temperature)
                .Compute(StudentDistribution.FromLogits(rows, m.Vocab, layout), new TokenLabels(tokens), m.TeacherSequenceLogProbabilities, seqGradient);

            double[] weights = m.Prefixes.Select(m.PrefixProbability).ToArray();
            float[] rowWeights = weights.Select(w => (float)w).ToArray();
            var teacher = TeacherDistribution.FromLogits(m.TeacherLogits, m.Vocab);
            var student = StudentDistribution.FromLogits(m.StudentLogits, m.Vocab);
            var tokenGradient = new float[m.StudentLogits.Length];
            LossResult ce = new DistillationLoss(Divergence.SoftCrossEntropy, m.Temperature) { MaxDegreeOfParallelism = 1 }
                .ComputeCore(teacher, student, tokenGradient, true, Reduction.Sum, default, default, path, rowWeights);
            LossResult kl = new DistillationLoss(Divergence.ForwardKL, m.Temperature) { MaxDegreeOfParallelism = 1 }
                .ComputeCore(teacher, student, default, false, Reduction.Sum, default, default, path, rowWeights);

            // Where the exact value is +∞ (a sequence the teacher can produce that the student cannot), a loss whose
            // infinite term has a weight that underflowed (a path probability below double's or a row weight below
            // float's range) is finite instead; either answer is accepted there, and never +∞ where the exact value is finite.
            bool infinite = ExactlyInfinite(m);
            double scale = Math.Max(1, Enumerable.Range(0, m.Sequences.Count).Sum(k => Math.Exp(m.TeacherSequenceLogProbabilities[k]) * Math.Abs(SequenceLogProbability(m, k, rows, tokens))));
            Agree(ce.Value, seq.CrossEntropy, scale, infinite, m, "Σ P_t(prefix)·CE_prefix vs sequence CE");
            Agree(kl.Value, seq.KL, scale, infinite, m, "Σ P_t(prefix)·KL_prefix vs sequence KL");
            if (infinite)
            {
                return; // the gradients of +∞ rows follow the documented (q − p)/T convention, not a sum of finite ones
            }

            var summed = new double[m.StudentLogits.Length];
            for (int r = 0; r < prefixOfRow.Length; r++)
            {
                for (int j = 0; j < m.Vocab; j++)
                {
                    summed[(prefixOfRow[r] * m.Vocab) + j] += seqGradient[(r * m.Vocab) + j];
                }
            }

            for (int p = 0; p < m.Prefixes.Count; p++)
            {
                double e = Calls.GradientError(tokenGradient.AsSpan(p * m.Vocab, m.Vocab), summed.AsSpan(p * m.Vocab, m.Vocab), 1 / m.Temperature);
                Ensure.That(e <= 1e-5, () => $"prefix [{string.Join(",", m.Prefixes[p])}] ({path}): token gradient vs summed sequence gradient differ by {e}\n  token  [{string.Join(", ", tokenGradient.Skip(p * m.Vocab).Take(m.Vocab))}]\n  summed [{string.Join(", ", summed.Skip(p * m.Vocab).Take(m.Vocab))}]\n{m}");
            }
        });
    }

    private static double SequenceLogProbability(TinyModels m, int k, float[] rows, int[] tokens)
    {
        double sum = 0;
        var lq = new double[m.Vocab];
        for (int n = 0; n < m.Length; n++)
        {
            int row = (k * m.Length) + n;
            StableReference.LogSoftmax(rows.AsSpan(row * m.Vocab, m.Vocab), DistributionKind.Logits, m.Temperature, lq);
            sum += lq[tokens[row]];
        }

        return double.IsFinite(sum) ? sum : 0;
    }

    private static void Agree(double token, double sequence, double scale, bool exactlyInfinite, TinyModels m, string what)
    {
        if (exactlyInfinite)
        {
            return;
        }

        bool ok = double.IsFinite(token) && double.IsFinite(sequence) && Math.Abs(token - sequence) <= 1e-5 * scale;
        Ensure.That(ok, () => $"{what}: {token:R} vs {sequence:R} (scale {scale:R}; the exact value is finite)\n{m}");
    }

    /// <summary>Whether some sequence the teacher can produce (no −∞ teacher logit on its path) is impossible for the student.</summary>
    private static bool ExactlyInfinite(TinyModels m) => m.Sequences.Any(y =>
    {
        bool teacherPossible = true, studentImpossible = false;
        for (int n = 0; n < y.Length; n++)
        {
            int row = m.PrefixIndex[string.Join(",", y.Take(n))];
            teacherPossible &= !float.IsNegativeInfinity(m.TeacherLogits[(row * m.Vocab) + y[n]]);
            studentImpossible |= float.IsNegativeInfinity(m.StudentLogits[(row * m.Vocab) + y[n]]);
        }

        return teacherPossible && studentImpossible;
    });

    private static void Same(SequenceLossResult x, SequenceLossResult y, double relative, TinyModels m, string what)
    {
        Ensure.That(
            Calls.ValuesAgree(y.CrossEntropy, x.CrossEntropy, relative) && Calls.ValuesAgree(y.KL, x.KL, relative) && Calls.ValuesAgree(y.TeacherEntropy, x.TeacherEntropy, relative) && x.CandidateCount == y.CandidateCount,
            () => $"{what}: {x} vs {y}\n{m}");
    }
}
