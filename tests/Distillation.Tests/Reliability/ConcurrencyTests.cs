using System.Threading;
using Xunit.Abstractions;

namespace Distillation.Tests.Reliability;

/// <summary>
/// Many threads calling shared <see cref="DistillationLoss"/>, <see cref="LanguageModelLoss"/>, <see cref="DistillationObjective"/>,
/// <see cref="SequenceDistillationLoss"/> instances and <see cref="Losses"/> at once get, bit for bit, what one thread gets;
/// the pooled per-thread scratch stays correct under contention with mixed sizes (a buffer last used for another V).
/// </summary>
public sealed class ConcurrencyTests(ITestOutputHelper output)
{
    /// <summary>Mixed sizes, from one column to calls large enough to split over threads themselves.</summary>
    private static readonly (int Sequences, int Length, int Vocab)[] Shapes =
    [
        (1, 1, 1), (3, 2, 7), (2, 3, 16), (4, 1, 17), (4, 3, 100), (2, 2, 1000), (3, 1, 5000), (4, 4, 3000), (8, 8, 2048),
    ];

    [Fact]
    public void SharedInstances_UnderContention_GiveSingleThreadResults_BitForBit()
    {
        int threads = ReliabilitySettings.Scaled(16, 32), calls = ReliabilitySettings.Scaled(200, 1000);
        Workload[] workloads = Shapes.Select((s, i) => new Workload(s.Sequences, s.Length, s.Vocab, seed: 100 + i)).ToArray();
        var shared = new Instances(Environment.ProcessorCount);

        // What one thread gets, before any contention.
        var expected = new Fingerprint[workloads.Length, Operations.Count];
        for (int w = 0; w < workloads.Length; w++)
        {
            for (int op = 0; op < Operations.Count; op++)
            {
                expected[w, op] = Operations.Run(op, workloads[w], shared, new float[workloads[w].Rows * workloads[w].Vocab], new float[workloads[w].Rows]);
            }
        }

        var failures = new System.Collections.Concurrent.ConcurrentQueue<string>();
        long done = 0;
        using var start = new Barrier(threads);
        Thread[] workers = Enumerable.Range(0, threads).Select(t => new Thread(() =>
        {
            var random = new Random(t);
            start.SignalAndWait();
            for (int c = 0; c < calls; c++)
            {
                int w = random.Next(workloads.Length), op = random.Next(Operations.Count);
                Workload work = workloads[w];
                try
                {
                    // Output buffers pre-filled with garbage: every call must overwrite them entirely.
                    float[] gradient = Enumerable.Repeat(float.NaN, work.Rows * work.Vocab).ToArray();
                    float[] rowLosses = Enumerable.Repeat(12345f, work.Rows).ToArray();
                    Fingerprint got = Operations.Run(op, work, shared, gradient, rowLosses);
                    if (got != expected[w, op])
                    {
                        failures.Enqueue($"thread {t} call {c}: operation {op} on {work} differs from the single-thread result");
                    }
                }
                catch (Exception e)
                {
                    failures.Enqueue($"thread {t} call {c}: operation {op} on {work} threw {e.GetType().Name}: {e.Message}");
                }

                Interlocked.Increment(ref done);
            }
        })).ToArray();
        foreach (Thread w in workers)
        {
            w.Start();
        }

        foreach (Thread w in workers)
        {
            w.Join();
        }

        output.WriteLine($"{threads} threads × {calls} calls = {done} concurrent calls over {workloads.Length} sizes and {Operations.Count} operations; {failures.Count} mismatches");
        failures.Should().BeEmpty();
        done.Should().Be((long)threads * calls);
    }
}
