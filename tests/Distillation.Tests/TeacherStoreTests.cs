using System.IO;

namespace Distillation.Tests;

/// <summary>The teacher store: bit-exact round trips, and every truncation and corruption rejected with a clear message.</summary>
public class TeacherStoreTests
{
    /// <summary>Synthetic top-k rows: distinct ids (some empty slots), log-probabilities ≤ 0 with Σ p ≤ 1.</summary>
    internal static (int[] Ids, Half[] LogP) Corpus(int rows, int k, int vocab, int seed)
    {
        var random = new Random(seed);
        var ids = new int[rows * k];
        var logp = new Half[rows * k];
        for (int r = 0; r < rows; r++)
        {
            var used = new HashSet<int>();
            double remaining = 1;
            for (int i = 0; i < k; i++)
            {
                int at = (r * k) + i;
                if (i == k - 1 && r % 7 == 3)
                {
                    ids[at] = TopKTeacherDistribution.EmptySlot;
                    logp[at] = Half.NegativeInfinity;
                    continue;
                }

                int id;
                do
                {
                    id = random.Next(vocab);
                }
                while (!used.Add(id));

                ids[at] = id;
                double p = remaining * random.NextDouble() * 0.6;
                remaining -= p;
                logp[at] = (Half)Math.Log(p);
            }
        }

        return (ids, logp);
    }

    private static byte[] Store(int vocab, int k, params (int[] Ids, Half[] LogP)[] blocks)
    {
        var stream = new MemoryStream();
        using (var writer = new TeacherStoreWriter(stream, vocab, k, generationTemperature: 0.8f, leaveOpen: true))
        {
            foreach ((int[] ids, Half[] logp) in blocks)
            {
                writer.WriteBlock(ids, logp);
            }

            writer.Complete();
            writer.BytesWritten.Should().Be(stream.Length);
        }

        return stream.ToArray();
    }

    private static List<TeacherStoreBlock> ReadAll(byte[] bytes)
    {
        using var reader = new TeacherStoreReader(new MemoryStream(bytes));
        var blocks = reader.ReadBlocks().ToList();
        reader.IsComplete.Should().BeTrue();
        return blocks;
    }

    [Fact]
    public void Store_RoundTripsALargeCorpusBitExactly_ThroughAFile()
    {
        const int vocab = 151936, k = 20, rows = 120_000;
        (int[] ids, Half[] logp) = Corpus(rows, k, vocab, 1);
        string path = Path.Combine(Path.GetTempPath(), $"teacher-store-{Guid.NewGuid():N}.bin");
        try
        {
            var random = new Random(2);
            using (TeacherStoreWriter writer = TeacherStoreWriter.Create(path, vocab, k))
            {
                for (int row = 0; row < rows;)
                {
                    int n = Math.Min(rows - row, 1 + random.Next(5000));
                    writer.WriteBlock(ids.AsSpan(row * k, n * k), logp.AsSpan(row * k, n * k));
                    row += n;
                }

                writer.BytesPerToken.Should().Be(6 * k);
                writer.Complete();
            }

            new FileInfo(path).Length.Should().BeLessThan((long)rows * k * 6 * 101 / 100, "6·k bytes per row plus small block overheads");
            using TeacherStoreReader reader = TeacherStoreReader.Open(path);
            reader.VocabularySize.Should().Be(vocab);
            reader.K.Should().Be(k);
            reader.GenerationTemperature.Should().Be(1f);
            long next = 0;
            foreach (TeacherStoreBlock block in reader.ReadBlocks())
            {
                block.FirstRow.Should().Be(next);
                int from = (int)next * k, count = block.RowCount * k;
                block.Ids.Span.SequenceEqual(ids.AsSpan(from, count)).Should().BeTrue();
                System.Runtime.InteropServices.MemoryMarshal.AsBytes(block.LogProbabilities.Span)
                    .SequenceEqual(System.Runtime.InteropServices.MemoryMarshal.AsBytes(logp.AsSpan(from, count))).Should().BeTrue("binary16 bits round-trip");
                next += block.RowCount;
            }

            next.Should().Be(rows);
            reader.RowsRead.Should().Be(rows);
            reader.IsComplete.Should().BeTrue();
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void Store_BlocksAreTopKTeachers_WithTheStoredGenerationTemperature()
    {
        const int vocab = 500, k = 8, rows = 40;
        (int[] ids, Half[] logp) = Corpus(rows, k, vocab, 3);
        byte[] bytes = Store(vocab, k, (ids, logp));
        TeacherStoreBlock block = ReadAll(bytes).Single();
        block.GenerationTemperature.Should().Be(0.8f);
        float[] student = TestSupport.RandomLogits(new Random(4), rows * vocab);
        var loss = new DistillationLoss(Divergence.ForwardKL, 2f);
        float[] g1 = new float[student.Length], g2 = new float[student.Length];
        LossResult fromStore = loss.Compute(block.ToTeacher(ResidualMassPolicy.RestBucket), StudentDistribution.FromLogits(student, vocab), g1);
        LossResult direct = loss.Compute(TopKTeacherDistribution.FromLogProbabilities(ids, logp.AsMemory(), k, vocab, ResidualMassPolicy.RestBucket, generationTemperature: 0.8f), StudentDistribution.FromLogits(student, vocab), g2);
        fromStore.Should().Be(direct);
        g1.Should().Equal(g2);
    }

    [Fact]
    public void Store_RejectsEveryTruncation()
    {
        byte[] bytes = Store(50, 3, Corpus(4, 3, 50, 5), Corpus(2, 3, 50, 6), Corpus(5, 3, 50, 7));
        for (int length = 0; length < bytes.Length; length++)
        {
            byte[] cut = bytes[..length];
            Action read = () => ReadAll(cut);
            read.Should().Throw<InvalidDataException>($"a store cut to {length} of {bytes.Length} bytes").WithMessage("*Truncated*byte offset*");
        }

        // Cut exactly between two blocks: the end marker is missing.
        int afterFirstBlock = 28 + 16 + (4 * 3 * 6) + 4;
        FluentActions.Invoking(() => ReadAll(bytes[..afterFirstBlock])).Should().Throw<InvalidDataException>()
            .WithMessage($"*ends at byte offset {afterFirstBlock}, after block 1 (4 rows), without its end marker*");
    }

    [Fact]
    public void Store_RejectsEverySingleByteCorruption()
    {
        byte[] bytes = Store(50, 3, Corpus(4, 3, 50, 5), Corpus(2, 3, 50, 6));
        for (int at = 0; at < bytes.Length; at++)
        {
            byte[] bad = (byte[])bytes.Clone();
            bad[at] ^= 0x5A;
            Action read = () => ReadAll(bad);
            read.Should().Throw<InvalidDataException>($"byte {at} of {bytes.Length} was changed");
        }
    }

    [Fact]
    public void Store_ErrorMessagesSayWhatFailedAndWhere()
    {
        byte[] bytes = Store(50, 3, Corpus(4, 3, 50, 5), Corpus(2, 3, 50, 6));
        int block1 = 28 + 16 + (4 * 3 * 6) + 4;

        byte[] payload = (byte[])bytes.Clone();
        payload[block1 + 20] ^= 1; // inside block 1's ids
        FluentActions.Invoking(() => ReadAll(payload)).Should().Throw<InvalidDataException>()
            .WithMessage($"*block 1 at byte offset {block1} (rows 4 to 5) fails its CRC32*");

        byte[] magic = (byte[])bytes.Clone();
        magic[0] = (byte)'X';
        FluentActions.Invoking(() => ReadAll(magic)).Should().Throw<InvalidDataException>().WithMessage("*Not a teacher store*magic*");

        byte[] version = (byte[])bytes.Clone();
        version[8] = 9;
        FluentActions.Invoking(() => ReadAll(version)).Should().Throw<InvalidDataException>().WithMessage("*Unsupported teacher-store version 9*");

        byte[] header = (byte[])bytes.Clone();
        header[13] ^= 1; // V
        FluentActions.Invoking(() => ReadAll(header)).Should().Throw<InvalidDataException>().WithMessage("*header's CRC32*");

        byte[] trailing = [.. bytes, 0];
        FluentActions.Invoking(() => ReadAll(trailing)).Should().Throw<InvalidDataException>().WithMessage($"*data after the end marker, at byte offset {bytes.Length}*");

        // Blocks swapped (each intact): the second block says it starts at row 4.
        byte[] first = bytes[28..block1], second = bytes[block1..^24];
        byte[] swapped = [.. bytes[..28], .. second, .. first, .. bytes[^24..]];
        FluentActions.Invoking(() => ReadAll(swapped)).Should().Throw<InvalidDataException>().WithMessage("*block 0*starts at row 4, but 0 rows precede it*");
    }

    [Fact]
    public void Writer_ValidatesRows_WithTheStoresRowNumbers_AndNeedsComplete()
    {
        var stream = new MemoryStream();
        using (var writer = new TeacherStoreWriter(stream, 50, 3, leaveOpen: true))
        {
            writer.WriteBlock(Corpus(4, 3, 50, 5).Ids, Corpus(4, 3, 50, 5).LogP);
            (int[] ids, Half[] logp) = Corpus(3, 3, 50, 6);
            ids[(2 * 3) + 1] = 50;
            FluentActions.Invoking(() => writer.WriteBlock(ids, logp)).Should().ThrowExactly<ArgumentOutOfRangeException>().WithParameterName("ids").WithMessage("*row 6, slot 1 is 50*");
            ids[(2 * 3) + 1] = ids[2 * 3];
            FluentActions.Invoking(() => writer.WriteBlock(ids, logp)).Should().ThrowExactly<ArgumentException>().WithParameterName("ids").WithMessage("*row 6 repeats id*");
            float[] positive = [-1f, -2f, 0.5f];
            FluentActions.Invoking(() => writer.WriteBlock([1, 2, 3], positive)).Should().ThrowExactly<ArgumentException>().WithParameterName("logProbabilities").WithMessage("*row 4, slot 2 is 0.5*");
            FluentActions.Invoking(() => writer.WriteBlock([1, 2], new float[2])).Should().ThrowExactly<ArgumentException>().WithParameterName("ids");
            writer.RowCount.Should().Be(4, "rejected blocks write nothing");
            // Disposed without Complete.
        }

        FluentActions.Invoking(() => ReadAll(stream.ToArray())).Should().Throw<InvalidDataException>().WithMessage("*without its end marker*");

        var completed = new TeacherStoreWriter(new MemoryStream(), 50, 3);
        completed.Complete();
        FluentActions.Invoking(() => completed.WriteBlock([1, 2, 3], new float[] { -1, -2, -3 })).Should().Throw<InvalidOperationException>();
        completed.Dispose();
        FluentActions.Invoking(() => completed.WriteBlock([1, 2, 3], new float[] { -1, -2, -3 })).Should().Throw<ObjectDisposedException>();
    }
}
