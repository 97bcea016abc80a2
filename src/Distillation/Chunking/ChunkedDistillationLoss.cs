using System;
using System.Buffers;
using System.Collections.Generic;
using Distillation.Internal;

namespace Distillation;

/// <summary>Receives one block's gradient; the span is valid only during the call (the buffer is reused for the next block).</summary>
/// <param name="blockIndex">The block's position in the sequence of blocks (0, 1, …).</param>
/// <param name="firstRow">The index of the block's first row among all rows (the rows of the blocks before it).</param>
/// <param name="gradient">The block's rows × V gradient of the reduced loss with respect to its student logits.</param>
public delegate void RowBlockGradientHandler(int blockIndex, long firstRow, ReadOnlySpan<float> gradient);

/// <summary>
/// A <see cref="DistillationLoss"/> over a batch far larger than memory, processed in blocks of rows (an enumerable that
/// may produce them lazily, for example from a <see cref="TeacherStoreReader"/>): the (sum, count) parts are
/// accumulated and each block's gradient is handed to a callback, with scratch bounded by one block's gradient plus
/// the loss's O(V) per thread. The result equals one call over all the rows.
/// </summary>
/// <remarks>
/// <para><b>Reductions.</b> A block's gradient must be final when it is handed out, so the divisor must be known before
/// the first block: <see cref="Compute"/> takes <see cref="Reduction.Sum"/> or <see cref="Reduction.SumDividedBy"/>(N).
/// For the mean over tokens pass N = the real rows of all blocks — <see cref="RowBlock.CountRealRows"/> counts them
/// from masks and labels without reading logits — and the gradients are bit-identical to one call with
/// <see cref="Reduction.MeanOverTokens"/>; or use <see cref="Reduction.Sum"/> and divide your accumulated parameter
/// gradients by the returned <see cref="LossAccumulator.TokenCount"/> at the end. <see cref="Evaluate"/> (no
/// gradient) takes any reduction but <see cref="Reduction.None"/>.</para>
/// <para>Blocks should hold whole sequences when sequence counts matter (a sequence split across two blocks counts in
/// each). The value is the sum of the blocks' sums, added in block order, divided once.</para>
/// </remarks>
public sealed class ChunkedDistillationLoss
{
    /// <summary>Wraps a loss.</summary>
    /// <param name="loss">The loss each block is computed with (its divergence, temperature, T² and threads).</param>
    /// <exception cref="ArgumentNullException"><paramref name="loss"/> is null.</exception>
    public ChunkedDistillationLoss(DistillationLoss loss)
    {
        ArgumentNullException.ThrowIfNull(loss);
        Loss = loss;
    }

    /// <summary>The loss each block is computed with.</summary>
    public DistillationLoss Loss { get; }

    /// <summary>
    /// Computes the loss over every block, handing each block's gradient to <paramref name="onGradient"/> before the
    /// next block is requested, and returns the accumulated sum and counts (its value: Sum ÷ the reduction's divisor).
    /// </summary>
    /// <param name="blocks">The blocks, in row order; enumerated once.</param>
    /// <param name="reduction"><see cref="Reduction.Sum"/> or <see cref="Reduction.SumDividedBy"/>(N), for example N = the real rows of all blocks.</param>
    /// <param name="onGradient">Receives each block's gradient (valid during the call only).</param>
    /// <returns>The accumulated sum and counts.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="blocks"/> or <paramref name="onGradient"/> is null.</exception>
    /// <exception cref="ArgumentException">The reduction is a mean or <see cref="Reduction.None"/>; or a block is invalid (as for <see cref="DistillationLoss"/>; the message names the block).</exception>
    /// <exception cref="ArgumentOutOfRangeException">A block holds an out-of-range id or label (the message names the block).</exception>
    public LossAccumulator Compute(IEnumerable<RowBlock> blocks, Reduction reduction, RowBlockGradientHandler onGradient)
    {
        ArgumentNullException.ThrowIfNull(blocks);
        ArgumentNullException.ThrowIfNull(onGradient);
        if (reduction.Kind is not (ReductionKind.Sum or ReductionKind.SumDividedBy))
        {
            ThrowHelper.Argument(nameof(reduction), "A chunked loss hands out final gradients block by block, so its divisor must be known first: pass Reduction.SumDividedBy(real rows of all blocks) (RowBlock.CountRealRows counts them without reading logits), or Reduction.Sum and divide by the returned TokenCount.");
        }

        return Run(blocks, reduction, onGradient);
    }

    /// <summary>The loss over every block, without gradients: the accumulated sum and counts (any reduction's value from <see cref="LossAccumulator.Value"/>).</summary>
    /// <param name="blocks">The blocks; enumerated once.</param>
    /// <returns>The accumulated sum and counts.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="blocks"/> is null.</exception>
    /// <exception cref="ArgumentException">A block is invalid (the message names the block).</exception>
    /// <exception cref="ArgumentOutOfRangeException">A block holds an out-of-range id or label.</exception>
    public LossAccumulator Evaluate(IEnumerable<RowBlock> blocks)
    {
        ArgumentNullException.ThrowIfNull(blocks);
        return Run(blocks, Reduction.Sum, null);
    }

    private LossAccumulator Run(IEnumerable<RowBlock> blocks, Reduction reduction, RowBlockGradientHandler? onGradient)
    {
        var total = new LossAccumulator();
        int index = 0;
        long firstRow = 0;
        foreach (RowBlock block in blocks)
        {
            int length = block.Student.Values.Length;
            float[]? buffer = onGradient is null ? null : ArrayPool<float>.Shared.Rent(Math.Max(length, 1));
            try
            {
                Span<float> gradient = buffer is null ? default : buffer.AsSpan(0, length);
                LossResult result;
                try
                {
                    result = (block.IsTopK, onGradient is null) switch
                    {
                        (true, false) => Loss.Compute(block.TopKTeacher, block.Student, gradient, reduction, block.Labels),
                        (true, true) => Loss.Evaluate(block.TopKTeacher, block.Student, reduction, block.Labels),
                        (false, false) => Loss.Compute(block.Teacher, block.Student, gradient, reduction, block.Labels),
                        _ => Loss.Evaluate(block.Teacher, block.Student, reduction, block.Labels),
                    };
                }
                catch (ArgumentOutOfRangeException e)
                {
                    throw new ArgumentOutOfRangeException(nameof(blocks), e.ActualValue, ThrowHelper.Format($"Block {index} (rows from {firstRow}): {e.Message}"));
                }
                catch (ArgumentException e)
                {
                    throw new ArgumentException(ThrowHelper.Format($"Block {index} (rows from {firstRow}): {e.Message}"), nameof(blocks), e);
                }

                total.Add(result);
                onGradient?.Invoke(index, firstRow, gradient);
            }
            finally
            {
                if (buffer is not null)
                {
                    ArrayPool<float>.Shared.Return(buffer);
                }
            }

            firstRow += block.RowCount;
            index++;
        }

        return total;
    }
}
