using System.IO;
using Distillation.Kernels;

namespace Distillation.Tests;

/// <summary>Vocabulary-sharded losses: merged statistics and gradient slices equal the unsharded loss.</summary>
public class ShardingTests
{
    /// <summary>A random partition of [0, V) into <paramref name="count"/> contiguous shards of uneven lengths.</summary>
    private static VocabularyShard[] UnevenShards(int vocab, int count, Random random)
    {
        int[] cuts = Enumerable.Range(1, vocab - 1).OrderBy(_ => random.Next()).Take(count - 1).Order().ToArray();
        int[] bounds = [0, .. cuts, vocab];
        return Enumerable.Range(0, count).Select(i => new VocabularyShard(bounds[i], bounds[i + 1] - bounds[i])).ToArray();
    }

    private static float[] Slice(float[] rows, int vocab, VocabularyShard shard) =>
        Enumerable.Range(0, rows.Length / vocab).SelectMany(r => rows.Skip((r * vocab) + shard.Start).Take(shard.Length)).ToArray();

    /// <summary>Runs the whole protocol in one process, shards in a shuffled order, merged in two groups.</summary>
    internal static (LossResult Result, float[] Gradient) Sharded(VocabularyShardedLoss loss, float[] teacher, float[] student, int vocab, VocabularyShard[] shards, Reduction reduction, SequenceLayout? layout, Random random)
    {
        VocabularyShard[] order = shards.OrderBy(_ => random.Next()).ToArray();
        var slices = order.ToDictionary(s => s, s => (T: Slice(teacher, vocab, s), S: Slice(student, vocab, s)));
        ShardStatistics MergeInGroups(IEnumerable<ShardStatistics> parts)
        {
            ShardStatistics[] all = parts.ToArray();
            int half = all.Length / 2;
            return half == 0 ? ShardStatistics.Merge(all) : ShardStatistics.Merge([ShardStatistics.Merge(all[..half]), ShardStatistics.Merge(all[half..])]);
        }

        ShardStatistics merged = MergeInGroups(order.Select(s => loss.ComputeStatistics(s, slices[s].T, slices[s].S, layout)));
        merged.Covers(vocab).Should().BeTrue();
        if (loss.NeedsTermSums)
        {
            merged = MergeInGroups(order.Select(s => loss.ComputeTermSums(s, slices[s].T, slices[s].S, merged)));
        }

        float[] gradient = new float[student.Length];
        LossResult? result = null;
        foreach (VocabularyShard s in order)
        {
            float[] g = new float[slices[s].S.Length];
            LossResult r = loss.ComputeGradient(s, slices[s].T, slices[s].S, merged, g, reduction);
            result ??= r;
            r.Should().Be(result.Value, "every shard reports the same value");
            for (int row = 0; row < student.Length / vocab; row++)
            {
                g.AsSpan(row * s.Length, s.Length).CopyTo(gradient.AsSpan((row * vocab) + s.Start, s.Length));
            }
        }

        loss.Evaluate(merged, reduction).Should().Be(result!.Value);
        return (result.Value, gradient);
    }

    [Theory]
    [InlineData(37)]
    [InlineData(1000)]
    public void Sharded_EqualsUnsharded_ForEveryDivergence_With1To8UnevenShards(int vocab)
    {
        const int rows = 6;
        var random = new Random(vocab);
        float[] teacher = TestSupport.RandomLogits(random, rows * vocab);
        float[] student = TestSupport.RandomLogits(random, rows * vocab);
        teacher[3] = float.NegativeInfinity;                  // an impossible token for the teacher
        teacher.AsSpan(vocab, vocab / 2).Fill(float.NegativeInfinity); // row 1: the teacher has no mass in its first half
        var layout = SequenceLayout.Rectangular(2, 3, new[] { true, true, false, true, true, true });
        foreach (Divergence d in TestSupport.AllDivergences)
        {
            var reference = new DistillationLoss(d, 1.7f, TemperatureScaling.Squared) { MaxDegreeOfParallelism = 1 };
            float[] expectedGradient = new float[student.Length];
            LossResult expected = reference.ComputeCore(TeacherDistribution.FromLogits(teacher, vocab, layout), StudentDistribution.FromLogits(student, vocab, layout), expectedGradient, true, Reduction.MeanOverSequences, default, default, KernelPath.Scalar);
            var loss = new VocabularyShardedLoss(d, 1.7f, TemperatureScaling.Squared);
            for (int count = 1; count <= 8; count++)
            {
                VocabularyShard[] shards = UnevenShards(vocab, count, random);
                (LossResult result, float[] gradient) = Sharded(loss, teacher, student, vocab, shards, Reduction.MeanOverSequences, layout, random);
                string because = $"{d} over {count} shards ({string.Join(" ", shards)})";
                result.TokenCount.Should().Be(expected.TokenCount);
                result.SequenceCount.Should().Be(expected.SequenceCount);
                result.Value.Should().BeApproximately(expected.Value, 1e-9 * Math.Max(1, Math.Abs(expected.Value)), because);
                float scale = 1e-6f * Math.Max(1f, expectedGradient.Max(Math.Abs));
                for (int j = 0; j < gradient.Length; j++)
                {
                    gradient[j].Should().BeApproximately(expectedGradient[j], scale, because);
                }
            }
        }
    }

    [Fact]
    public void Sharded_EqualsTheFusedKernels_AtBenchmarkLikeScale()
    {
        const int vocab = 32000, rows = 4;
        var random = new Random(3);
        float[] teacher = TestSupport.RandomLogits(random, rows * vocab);
        float[] student = TestSupport.RandomLogits(random, rows * vocab);
        foreach (Divergence d in new[] { Divergence.ForwardKL, Divergence.SoftCrossEntropy, Divergence.ReverseKL, Divergence.GeneralizedJsd(0.5) })
        {
            float[] expectedGradient = new float[student.Length];
            LossResult expected = new DistillationLoss(d, 2f).Compute(TeacherDistribution.FromLogits(teacher, vocab), StudentDistribution.FromLogits(student, vocab), expectedGradient, Reduction.Sum);
            (LossResult result, float[] gradient) = Sharded(new VocabularyShardedLoss(d, 2f), teacher, student, vocab, VocabularyShard.Split(vocab, 8), Reduction.Sum, null, random);
            result.Value.Should().BeApproximately(expected.Value, 1e-5 * Math.Abs(expected.Value), d.ToString());
            float scale = 1e-5f * Math.Max(1f, expectedGradient.Max(Math.Abs));
            for (int j = 0; j < gradient.Length; j++)
            {
                gradient[j].Should().BeApproximately(expectedGradient[j], scale);
            }
        }
    }

    [Fact]
    public void Sharded_InfiniteValues_AreThoseOfTheUnshardedLoss()
    {
        const int vocab = 20;
        float[] teacher = TestSupport.RandomLogits(new Random(1), vocab);
        float[] student = TestSupport.RandomLogits(new Random(2), vocab);
        student[15] = float.NegativeInfinity; // the teacher has mass where the student has none
        var shards = VocabularyShard.Split(vocab, 3);
        (LossResult fkl, float[] g) = Sharded(new VocabularyShardedLoss(Divergence.ForwardKL), teacher, student, vocab, shards, Reduction.Sum, null, new Random(3));
        fkl.Value.Should().Be(double.PositiveInfinity);
        float[] expected = new float[vocab];
        new DistillationLoss(Divergence.ForwardKL).Compute(TeacherDistribution.FromLogits(teacher, vocab), StudentDistribution.FromLogits(student, vocab), expected, Reduction.Sum);
        for (int j = 0; j < vocab; j++)
        {
            g[j].Should().BeApproximately(expected[j], 1e-6f);
        }

        Sharded(new VocabularyShardedLoss(Divergence.GeneralizedJsd(0.5)), teacher, student, vocab, shards, Reduction.Sum, null, new Random(3)).Result.Value.Should().BeApproximately(
            new DistillationLoss(Divergence.GeneralizedJsd(0.5)).Evaluate(TeacherDistribution.FromLogits(teacher, vocab), StudentDistribution.FromLogits(student, vocab), Reduction.Sum).Value, 1e-6);
    }

    [Fact]
    public void Sharded_MisuseIsReported()
    {
        const int vocab = 10;
        var loss = new VocabularyShardedLoss(Divergence.GeneralizedJsd(0.5));
        var shards = VocabularyShard.Split(vocab, 2);
        shards.Select(s => s.Length).Should().Equal(5, 5);
        VocabularyShard.Split(11, 3).Select(s => (s.Start, s.Length)).Should().Equal((0, 4), (4, 4), (8, 3));
        float[] t = new float[5], s = new float[5];
        ShardStatistics a = loss.ComputeStatistics(shards[0], t, s);
        ShardStatistics b = loss.ComputeStatistics(shards[1], t, s);
        FluentActions.Invoking(() => ShardStatistics.Merge([a, a])).Should().ThrowExactly<ArgumentException>().WithMessage("*overlap*");
        FluentActions.Invoking(() => loss.ComputeTermSums(shards[1], t, s, a)).Should().ThrowExactly<ArgumentException>().WithParameterName("merged").WithMessage("*merge the statistics of every shard*");
        ShardStatistics merged = ShardStatistics.Merge([b, a]);
        FluentActions.Invoking(() => loss.ComputeGradient(shards[0], t, s, merged, new float[5])).Should().ThrowExactly<ArgumentException>().WithMessage("*needs the second round*");
        FluentActions.Invoking(() => loss.ComputeStatistics(shards[0], new float[5], new float[4])).Should().ThrowExactly<ArgumentException>().WithParameterName("studentLogits");
        float[] nan = new float[5];
        nan[2] = float.NaN;
        FluentActions.Invoking(() => loss.ComputeStatistics(shards[1], t, nan)).Should().ThrowExactly<ArgumentException>().WithParameterName("studentLogits").WithMessage("*row 0, column 7*NaN*");
        FluentActions.Invoking(() => new VocabularyShard(3, 0)).Should().ThrowExactly<ArgumentOutOfRangeException>().WithParameterName("length");
    }

    [Fact]
    public void Statistics_SentAsBytes_GiveBitForBitTheSameLossAndGradient_AsInOneProcess()
    {
        const int vocab = 300, rows = 6;
        var random = new Random(11);
        float[] teacher = TestSupport.RandomLogits(random, rows * vocab);
        float[] student = TestSupport.RandomLogits(random, rows * vocab);
        teacher[7] = float.NegativeInfinity;
        var layout = SequenceLayout.Rectangular(2, 3, new[] { true, false, true, true, true, true });
        VocabularyShard[] shards = UnevenShards(vocab, 4, random);
        foreach (Divergence d in new[] { Divergence.ForwardKL, Divergence.ReverseKL, Divergence.GeneralizedJsd(0.3), Divergence.TotalVariation })
        {
            foreach (SequenceLayout? l in new[] { layout, null })
            {
                var loss = new VocabularyShardedLoss(d, 1.5f);
                ShardStatistics Local(VocabularyShard sh) => loss.ComputeStatistics(sh, Slice(teacher, vocab, sh), Slice(student, vocab, sh), l);

                // Every worker's statistics travel as bytes (and back), against the same objects kept in memory.
                ShardStatistics[] kept = shards.Select(Local).ToArray();
                ShardStatistics[] received = kept.Select(k => ShardStatistics.ReadFrom(k.ToBytes(), l)).ToArray();
                ShardStatistics merged = ShardStatistics.Merge(kept), mergedReceived = ShardStatistics.Merge(received);
                mergedReceived.ToBytes().Should().Equal(merged.ToBytes(), $"{d}: merging received statistics");
                if (loss.NeedsTermSums)
                {
                    // The merged first round is sent to every worker, and each worker's term sums come back as bytes.
                    ShardStatistics firstRound = merged;
                    merged = ShardStatistics.Merge(shards.Select(sh => loss.ComputeTermSums(sh, Slice(teacher, vocab, sh), Slice(student, vocab, sh), firstRound)));
                    mergedReceived = ShardStatistics.Merge(shards.Select(sh =>
                        ShardStatistics.ReadFrom(loss.ComputeTermSums(sh, Slice(teacher, vocab, sh), Slice(student, vocab, sh), ShardStatistics.ReadFrom(firstRound.ToBytes(), l)).ToBytes(), l)));
                    mergedReceived.HasTermSums.Should().BeTrue();
                    mergedReceived.ToBytes().Should().Equal(merged.ToBytes(), $"{d}: merging received term sums");
                }

                foreach (VocabularyShard sh in shards)
                {
                    float[] g = new float[rows * sh.Length], gReceived = new float[rows * sh.Length];
                    LossResult r = loss.ComputeGradient(sh, Slice(teacher, vocab, sh), Slice(student, vocab, sh), merged, g);
                    LossResult rReceived = loss.ComputeGradient(sh, Slice(teacher, vocab, sh), Slice(student, vocab, sh), mergedReceived, gReceived);
                    rReceived.Should().Be(r, $"{d}, shard {sh}");
                    gReceived.Should().Equal(g, $"{d}, shard {sh}");
                }

                byte[] bytes = merged.ToBytes();
                merged.SerializedLength.Should().Be(bytes.Length).And.Be(20 + (8 * shards.Length) + (80 * rows) + 4);
                merged.WriteTo(new byte[bytes.Length + 3]).Should().Be(bytes.Length);
            }
        }
    }

    [Fact]
    public void Statistics_FromBytes_RejectCorruptionTruncationAndAnotherLayout()
    {
        const int vocab = 40;
        var random = new Random(5);
        float[] teacher = TestSupport.RandomLogits(random, 6 * vocab), student = TestSupport.RandomLogits(random, 6 * vocab);
        var layout = SequenceLayout.Rectangular(2, 3, new[] { true, true, false, true, true, true });
        var loss = new VocabularyShardedLoss(Divergence.ForwardKL);
        var shard = new VocabularyShard(0, vocab);
        byte[] bytes = loss.ComputeStatistics(shard, teacher, student, layout).ToBytes();

        // Any single flipped bit, anywhere, is an InvalidDataException (header checks or the CRC-32), never other statistics.
        for (int i = 0; i < bytes.Length; i++)
        {
            byte[] bad = (byte[])bytes.Clone();
            bad[i] ^= (byte)(1 << (i % 8));
            FluentActions.Invoking(() => ShardStatistics.ReadFrom(bad, layout)).Should().ThrowExactly<InvalidDataException>($"byte {i} flipped");
        }

        FluentActions.Invoking(() => ShardStatistics.ReadFrom(bytes.AsSpan(0, bytes.Length - 8).ToArray(), layout)).Should().ThrowExactly<InvalidDataException>().WithMessage("*needs*bytes*");
        FluentActions.Invoking(() => ShardStatistics.ReadFrom(new byte[10], layout)).Should().ThrowExactly<InvalidDataException>().WithMessage("*not shard statistics*");
        byte[] future = (byte[])bytes.Clone();
        future[4] = 2;
        FluentActions.Invoking(() => ShardStatistics.ReadFrom(future, layout)).Should().ThrowExactly<InvalidDataException>().WithMessage("*version 2*");

        // The layout is not sent: the reader must give the same one.
        FluentActions.Invoking(() => ShardStatistics.ReadFrom(bytes)).Should().ThrowExactly<ArgumentException>().WithParameterName("layout").WithMessage("*with a sequence layout*");
        var other = SequenceLayout.Rectangular(2, 3, new[] { true, true, true, true, true, false });
        FluentActions.Invoking(() => ShardStatistics.ReadFrom(bytes, other)).Should().ThrowExactly<ArgumentException>().WithParameterName("layout").WithMessage("*not the one*");
        FluentActions.Invoking(() => ShardStatistics.ReadFrom(bytes, SequenceLayout.FromLengths([4, 2]))).Should().ThrowExactly<ArgumentException>().WithParameterName("layout");
        ShardStatistics.ReadFrom(bytes, SequenceLayout.Rectangular(2, 3, new[] { true, true, false, true, true, true })).RowCount.Should().Be(6, "an equal layout object reads them");
        byte[] plain = loss.ComputeStatistics(shard, teacher, student).ToBytes();
        FluentActions.Invoking(() => ShardStatistics.ReadFrom(plain, layout)).Should().ThrowExactly<ArgumentException>().WithParameterName("layout").WithMessage("*without a sequence layout*");
        FluentActions.Invoking(() => ShardStatistics.ReadFrom(plain).WriteTo(new byte[plain.Length - 1])).Should().ThrowExactly<ArgumentException>().WithParameterName("destination");

        // A record whose CRC is right but which is not what WriteTo writes (a fingerprint without a layout) is refused too.
        byte[] odd = (byte[])plain.Clone();
        odd[16] = 1;
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(odd.AsSpan(odd.Length - 4), System.IO.Hashing.Crc32.HashToUInt32(odd.AsSpan(0, odd.Length - 4)));
        FluentActions.Invoking(() => ShardStatistics.ReadFrom(odd)).Should().ThrowExactly<InvalidDataException>().WithMessage("*fingerprint*");
    }
}
