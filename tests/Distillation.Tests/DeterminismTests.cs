using Distillation.Kernels;

namespace Distillation.Tests;

/// <summary>Results do not depend on the thread count, and calls from many threads agree with one.</summary>
public class DeterminismTests
{
    [Theory]
    [InlineData(64, 5000)]
    [InlineData(7, 40000)]
    [InlineData(1000, 70)]
    public void Results_AreBitIdentical_AcrossThreadCounts(int rows, int vocab)
    {
        var random = new Random(rows + vocab);
        float[] t = TestSupport.RandomLogits(random, rows * vocab);
        float[] s = TestSupport.RandomLogits(random, rows * vocab);
        foreach (Divergence d in new[] { Divergence.ForwardKL, Divergence.GeneralizedJsd(0.5), Divergence.TotalVariation })
        {
            (float[] rows1, float[] g1, LossResult r1) = TestSupport.Run(d, 2f, t, s, vocab, KernelPaths.Best, threads: 1);
            foreach (int threads in new[] { 2, 3, 8 })
            {
                (float[] rowsN, float[] gN, LossResult rN) = TestSupport.Run(d, 2f, t, s, vocab, KernelPaths.Best, threads: threads);
                rN.Should().Be(r1, $"{d} on {threads} threads");
                rowsN.Should().Equal(rows1);
                gN.Should().Equal(g1);
            }
        }
    }

    [Fact]
    public void SharedInstances_CalledFromManyThreads_GiveSingleThreadResults()
    {
        const int vocab = 3000, rows = 16;
        var random = new Random(5);
        float[] t = TestSupport.RandomLogits(random, rows * vocab);
        float[] s = TestSupport.RandomLogits(random, rows * vocab);
        var loss = new DistillationLoss(Divergence.SkewKL(0.1), 2f);
        var teacher = TeacherDistribution.FromLogits(t, vocab);
        var student = StudentDistribution.FromLogits(s, vocab);
        var expectedGradient = new float[t.Length];
        LossResult expected = loss.Compute(teacher, student, expectedGradient);

        var failures = new System.Collections.Concurrent.ConcurrentBag<string>();
        System.Threading.Tasks.Parallel.For(0, 64, new System.Threading.Tasks.ParallelOptions { MaxDegreeOfParallelism = 8 }, i =>
        {
            var gradient = new float[t.Length];
            LossResult result = loss.Compute(teacher, student, gradient);
            if (result != expected || !gradient.AsSpan().SequenceEqual(expectedGradient))
            {
                failures.Add($"call {i}");
            }
        });
        failures.Should().BeEmpty();
    }
}
