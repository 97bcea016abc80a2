namespace Distillation.Tests;

/// <summary>Chunked rows: blocks processed one at a time give the result of one call over all rows.</summary>
public class ChunkedLossTests
{
    private const int Vocab = 96;

    /// <summary>Blocks of whole sequences (a padded layout per block), produced lazily from one big batch.</summary>
    private static IEnumerable<RowBlock> Blocks(float[] teacher, float[] student, int[] lengths, int maxLength, int[] labels, int sequencesPerBlock, bool topK, List<int> produced)
    {
        for (int b = 0; b < lengths.Length; b += sequencesPerBlock)
        {
            int count = Math.Min(sequencesPerBlock, lengths.Length - b);
            int from = b * maxLength * Vocab, length = count * maxLength * Vocab;
            var layout = SequenceLayout.Padded(lengths.AsSpan(b, count), maxLength);
            var s = StudentDistribution.FromLogits(student.AsMemory(from, length), Vocab, layout);
            var y = new TokenLabels(labels.AsMemory(b * maxLength, count * maxLength));
            produced.Add(b);
            if (topK)
            {
                (int[] ids, float[] logp) = TopKOf(teacher.AsSpan(from, length).ToArray());
                yield return new RowBlock(TopKTeacherDistribution.FromLogProbabilities(ids, logp, 12, Vocab, ResidualMassPolicy.RestBucket, layout), s, y);
            }
            else
            {
                yield return new RowBlock(TeacherDistribution.FromLogits(teacher.AsMemory(from, length), Vocab, layout), s, y);
            }
        }
    }

    private static (int[] Ids, float[] LogP) TopKOf(float[] teacher) => SparseTeacherTests.TopK(teacher, Vocab, 12, new Random(teacher.Length));

    [Theory]
    [InlineData(false, 1)]
    [InlineData(false, 3)]
    [InlineData(true, 2)]
    public void Chunked_EqualsOneCall_ValueAndGradients(bool topK, int sequencesPerBlock)
    {
        const int maxLength = 7;
        var random = new Random(sequencesPerBlock);
        int[] lengths = [7, 3, 0, 5, 6, 1, 7, 2];
        int rows = lengths.Length * maxLength;
        float[] teacher = TestSupport.RandomLogits(random, rows * Vocab);
        float[] student = TestSupport.RandomLogits(random, rows * Vocab);
        int[] labels = Enumerable.Range(0, rows).Select(r => r % 9 == 4 ? -100 : random.Next(Vocab)).ToArray();
        var loss = new DistillationLoss(Divergence.SkewKL(0.1), 2f, TemperatureScaling.Squared);

        // One call over everything, MeanOverTokens.
        var layout = SequenceLayout.Padded(lengths, maxLength);
        float[] expectedGradient = new float[student.Length];
        LossResult expected;
        if (topK)
        {
            var parts = Enumerable.Range(0, lengths.Length).Select(b => TopKOf(teacher.AsSpan(b * maxLength * Vocab, maxLength * Vocab).ToArray())).ToArray();
            var (ids, logp) = Chunks(parts, sequencesPerBlock);
            expected = loss.Compute(TopKTeacherDistribution.FromLogProbabilities(ids, logp, 12, Vocab, ResidualMassPolicy.RestBucket, layout), StudentDistribution.FromLogits(student, Vocab, layout), expectedGradient, Reduction.MeanOverTokens, new TokenLabels(labels));
        }
        else
        {
            expected = loss.Compute(TeacherDistribution.FromLogits(teacher, Vocab, layout), StudentDistribution.FromLogits(student, Vocab, layout), expectedGradient, Reduction.MeanOverTokens, new TokenLabels(labels));
        }

        // The divisor counted from masks and labels alone, block by block.
        int tokens = 0;
        for (int b = 0; b < lengths.Length; b += sequencesPerBlock)
        {
            int count = Math.Min(sequencesPerBlock, lengths.Length - b);
            tokens += RowBlock.CountRealRows(count * maxLength, SequenceLayout.Padded(lengths.AsSpan(b, count), maxLength), new TokenLabels(labels.AsMemory(b * maxLength, count * maxLength))).Tokens;
        }

        tokens.Should().Be(expected.TokenCount);
        var produced = new List<int>();
        float[] gradient = new float[student.Length];
        var blocksSeen = new List<int>();
        LossAccumulator total = new ChunkedDistillationLoss(loss).Compute(
            Blocks(teacher, student, lengths, maxLength, labels, sequencesPerBlock, topK, produced),
            Reduction.SumDividedBy(tokens),
            (index, firstRow, g) =>
            {
                produced.Count.Should().Be(index + 1, "each block's gradient is handed out before the next block is produced");
                blocksSeen.Add(index);
                g.CopyTo(gradient.AsSpan((int)firstRow * Vocab));
            });

        total.TokenCount.Should().Be(expected.TokenCount);
        total.SequenceCount.Should().Be(expected.SequenceCount);
        total.Value(Reduction.SumDividedBy(tokens)).Should().BeApproximately(expected.Value, 1e-12 * Math.Abs(expected.Value));
        total.Value(Reduction.MeanOverTokens).Should().BeApproximately(expected.Value, 1e-12 * Math.Abs(expected.Value));
        gradient.Should().Equal(expectedGradient, "SumDividedBy(real rows) scales each row exactly as one MeanOverTokens call");
        blocksSeen.Should().Equal(Enumerable.Range(0, (lengths.Length + sequencesPerBlock - 1) / sequencesPerBlock));

        LossAccumulator evaluated = new ChunkedDistillationLoss(loss).Evaluate(Blocks(teacher, student, lengths, maxLength, labels, sequencesPerBlock, topK, []));
        evaluated.Value(Reduction.MeanOverSequences).Should().BeApproximately(expected.Sum / expected.SequenceCount, 1e-12 * Math.Abs(expected.Value));
    }

    private static (int[] Ids, float[] LogP) Chunks((int[] Ids, float[] LogP)[] parts, int sequencesPerBlock) =>
        (parts.SelectMany(p => p.Ids).ToArray(), parts.SelectMany(p => p.LogP).ToArray());

    [Fact]
    public void Chunked_RejectsMeanReductions_AndNamesTheFailingBlock()
    {
        var chunked = new ChunkedDistillationLoss(new DistillationLoss(Divergence.ForwardKL));
        FluentActions.Invoking(() => chunked.Compute([], Reduction.MeanOverTokens, (_, _, _) => { })).Should().ThrowExactly<ArgumentException>()
            .WithParameterName("reduction").WithMessage("*SumDividedBy*CountRealRows*");
        float[] bad = new float[2 * Vocab];
        bad[Vocab + 5] = float.NaN;
        RowBlock[] blocks =
        [
            new(TeacherDistribution.FromLogits(new float[2 * Vocab], Vocab), StudentDistribution.FromLogits(new float[2 * Vocab], Vocab)),
            new(TeacherDistribution.FromLogits(new float[2 * Vocab], Vocab), StudentDistribution.FromLogits(bad, Vocab)),
        ];
        FluentActions.Invoking(() => chunked.Compute(blocks, Reduction.Sum, (_, _, _) => { })).Should().ThrowExactly<ArgumentException>()
            .WithParameterName("blocks").WithMessage("Block 1 (rows from 2):*row 1, column 5 is NaN*");
        var accumulator = new LossAccumulator();
        accumulator.Value(Reduction.MeanOverTokens).Should().Be(0);
        FluentActions.Invoking(() => accumulator.Value(Reduction.None)).Should().ThrowExactly<ArgumentException>();
    }
}
