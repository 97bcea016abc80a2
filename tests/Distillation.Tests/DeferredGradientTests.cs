using System.Runtime.Intrinsics;
using Distillation.Kernels;

namespace Distillation.Tests;

/// <summary>
/// The streamed kernels write each row's gradient during the next row's first pass (see FusedKernels): a batch must give
/// bit for bit the gradient of its rows computed one at a time, whatever the destination's alignment, the chunking of
/// the row, the rows skipped in between and the gradient's form (rescaled exponentials, q·g differences, infinite rows).
/// </summary>
public class DeferredGradientTests
{
    [Theory]
    [InlineData(37, 1)]
    [InlineData(1000, 0)]
    [InlineData(5000, 3)]
    [InlineData(9000, 2)]
    [InlineData(FusedKernels.DeferLimit + 1003, 1)] // rows too long to defer: each streamed at once
    public void BatchGradient_EqualsEachRowAlone_BitForBit(int vocab, int offset)
    {
        const int rows = 6;
        var random = new Random(vocab + offset);
        float[] teacher = TestSupport.RandomLogits(random, rows * vocab);
        float[] student = TestSupport.RandomLogits(random, rows * vocab);
        student[(2 * vocab) + 5] = float.NegativeInfinity; // row 2: forward KL and soft CE are +∞ there (the finite (q − p) gradient)
        teacher[(3 * vocab) + 7] = float.NegativeInfinity; // row 3: reverse KL is +∞ there
        float[] weights = [1f, 0f, 2.5f, 1f, 0.5f, 1f];   // row 1 skipped between two streamed rows
        foreach (Divergence d in TestSupport.AllDivergences)
        {
            foreach (KernelPath path in new[] { KernelPath.Vector256, KernelPath.Vector512 })
            {
                var loss = new DistillationLoss(d, 2f) { MaxDegreeOfParallelism = 1 };

                // The gradient starts `offset` floats into its buffer, so its rows are not 64-byte aligned.
                float[] buffer = new float[(rows * vocab) + offset];
                loss.ComputeCore(TeacherDistribution.FromLogits(teacher, vocab), StudentDistribution.FromLogits(student, vocab), buffer.AsSpan(offset, rows * vocab), true, Reduction.Sum, default, default, path, weights);
                for (int r = 0; r < rows; r++)
                {
                    float[] alone = new float[vocab];
                    loss.ComputeCore(
                        TeacherDistribution.FromLogits(teacher.AsSpan(r * vocab, vocab).ToArray(), vocab),
                        StudentDistribution.FromLogits(student.AsSpan(r * vocab, vocab).ToArray(), vocab),
                        alone,
                        true,
                        Reduction.Sum,
                        default,
                        default,
                        path,
                        [weights[r]]);
                    int mismatch = Enumerable.Range(0, vocab).FirstOrDefault(j => BitConverter.SingleToInt32Bits(buffer[offset + (r * vocab) + j]) != BitConverter.SingleToInt32Bits(alone[j]), -1);
                    mismatch.Should().Be(-1, $"{d} {path} V={vocab} offset {offset} row {r}: column {mismatch} differs from the row computed alone");
                    alone.Should().OnlyContain(v => float.IsFinite(v), $"{d} {path} V={vocab} row {r}");
                }
            }
        }
    }

    [Fact]
    public void GradientOfTheLastRow_IsWrittenBeforeTheCallReturns_OnEveryThreadCount()
    {
        const int vocab = 4099, rows = 5;
        var random = new Random(5);
        float[] teacher = TestSupport.RandomLogits(random, rows * vocab);
        float[] student = TestSupport.RandomLogits(random, rows * vocab);
        foreach (int threads in new[] { 1, 2 })
        {
            var loss = new DistillationLoss(Divergence.ForwardKL, 2f) { MaxDegreeOfParallelism = threads };
            float[] gradient = Enumerable.Repeat(float.NaN, rows * vocab).ToArray();
            loss.Compute(TeacherDistribution.FromLogits(teacher, vocab), StudentDistribution.FromLogits(student, vocab), gradient);

            // Every row's gradient sums to 0 (q and p both sum to 1); a row never written would still hold NaN.
            for (int r = 0; r < rows; r++)
            {
                gradient.AsSpan(r * vocab, vocab).ToArray().Should().OnlyContain(v => float.IsFinite(v), $"row {r} on {threads} threads");
                gradient.AsSpan(r * vocab, vocab).ToArray().Sum(v => (double)v).Should().BeApproximately(0, 1e-6, $"row {r} on {threads} threads");
            }
        }
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public void Gradient_InAFloatSpanNotFourByteAligned_IsTheAlignedGradient(int byteOffset)
    {
        // A span of floats cast from bytes need not be 4-byte aligned; streaming stores cannot reach a 64-byte boundary
        // from there, so such a row is written with ordinary stores — and must come out the same.
        const int rows = 4, vocab = 3000, k = 16;
        var random = new Random(byteOffset);
        float[] teacher = TestSupport.RandomLogits(random, rows * vocab);
        float[] student = TestSupport.RandomLogits(random, rows * vocab);
        int[] ids = Enumerable.Range(0, rows * k).Select(i => ((i % k) * 131) + (i / k)).ToArray();
        float[] logp = Enumerable.Repeat(MathF.Log(0.5f / k), rows * k).ToArray();
        var topK = TopKTeacherDistribution.FromLogProbabilities(ids, logp, k, vocab, ResidualMassPolicy.RestBucket);
        var s = StudentDistribution.FromLogits(student, vocab);
        byte[] raw = new byte[(rows * vocab * sizeof(float)) + 4];
        Span<float> misaligned = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(raw.AsSpan(byteOffset, rows * vocab * sizeof(float)));
        foreach (Divergence d in new[] { Divergence.ForwardKL, Divergence.ReverseKL, Divergence.GeneralizedJsd(0.5) })
        {
            var loss = new DistillationLoss(d, 2f);
            float[] expected = new float[rows * vocab];
            LossResult aligned = loss.Compute(TeacherDistribution.FromLogits(teacher, vocab), s, expected);
            loss.Compute(TeacherDistribution.FromLogits(teacher, vocab), s, misaligned).Should().Be(aligned, d.ToString());
            misaligned.ToArray().Should().Equal(expected, $"{d}, dense teacher, byte offset {byteOffset}");

            LossResult alignedTopK = loss.Compute(topK, s, expected);
            loss.Compute(topK, s, misaligned).Should().Be(alignedTopK, d.ToString());
            misaligned.ToArray().Should().Equal(expected, $"{d}, top-k teacher, byte offset {byteOffset}");
        }
    }
}
