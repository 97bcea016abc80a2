using System;
using System.Buffers;

namespace Distillation.Kernels;

/// <summary>Which rows of a batch are real, and how they group into sequences.</summary>
internal readonly ref struct RowSelection(int rows, ReadOnlySpan<bool> mask, ReadOnlySpan<int> labels, int ignoreIndex, SequenceLayout? layout, ReadOnlySpan<float> weights = default)
{
    public readonly int Rows = rows;

    /// <summary>Per-row weights (finite, ≥ 0) on value and gradient; empty for all 1. Weights do not change the counts.</summary>
    public readonly ReadOnlySpan<float> Weights = weights;
    public readonly ReadOnlySpan<bool> Mask = mask;
    public readonly ReadOnlySpan<int> Labels = labels;
    public readonly int IgnoreIndex = ignoreIndex;
    public readonly SequenceLayout? Layout = layout;

    public bool IsReal(int row) => (Mask.IsEmpty || Mask[row]) && (Labels.IsEmpty || Labels[row] != IgnoreIndex);
}

/// <summary>
/// The one driver every loss runs through: masks and ignored labels, reductions, the T² factor, threading over
/// rows and error reporting. A loss supplies only its <see cref="IRowKernel"/>.
/// </summary>
/// <remarks>
/// Rows are split into contiguous ranges, one per thread; each row's value lands in its own slot and the slots
/// are summed in row order afterwards, so the result does not depend on the thread count.
/// </remarks>
internal static unsafe class LossDriver
{
    /// <summary>Below this many elements per thread a call stays on the calling thread.</summary>
    internal const int MinElementsPerThread = 1 << 16;

    /// <summary>The largest gradient scale accepted (see <see cref="Run"/>).</summary>
    internal const double MaxGradientScale = 1e30;

    /// <summary>Runs <paramref name="kernel"/> over every real row.</summary>
    /// <param name="kernel">The row math.</param>
    /// <param name="vocabularySize">Columns per row.</param>
    /// <param name="selection">Which rows are real, and the sequences.</param>
    /// <param name="gradient">rows × V gradient buffer, or empty for value only.</param>
    /// <param name="rowLosses">Per-row values before row weights (empty unless wanted); rows skipped (masked or weight 0) get 0.</param>
    /// <param name="reduction">The reduction.</param>
    /// <param name="valueScale">The factor on value and gradient (T² or 1).</param>
    /// <param name="maxThreads">The most threads to use.</param>
    /// <param name="failure">The lowest row a kernel rejected, if any; the caller turns it into an exception.</param>
    /// <returns>The result; meaningless when <paramref name="failure"/> is not <see cref="RowStatus.Ok"/>.</returns>
    public static LossResult Run<TKernel>(in TKernel kernel, int vocabularySize, in RowSelection selection, Span<float> gradient, Span<float> rowLosses, Reduction reduction, double valueScale, int maxThreads, out RowFailure failure)
        where TKernel : struct, IRowKernel
    {
        int rows = selection.Rows;
        int tokens = 0, sequences = 0;
        if (selection.Layout is { } layout)
        {
            ReadOnlySpan<int> offsets = layout.Offsets;
            for (int b = 0; b + 1 < offsets.Length; b++)
            {
                int before = tokens;
                for (int r = offsets[b]; r < offsets[b + 1]; r++)
                {
                    tokens += selection.IsReal(r) ? 1 : 0;
                }

                sequences += tokens > before ? 1 : 0;
            }
        }
        else
        {
            for (int r = 0; r < rows; r++)
            {
                tokens += selection.IsReal(r) ? 1 : 0;
            }

            sequences = tokens;
        }

        double divisor = reduction.Kind switch
        {
            ReductionKind.MeanOverTokens => Math.Max(tokens, 1),
            ReductionKind.MeanOverSequences => Math.Max(sequences, 1),
            ReductionKind.SumDividedBy => reduction.Divisor,
            _ => 1,
        };

        double[] values = ArrayPool<double>.Shared.Rent(Math.Max(rows, 1));
        float[] weights = ArrayPool<float>.Shared.Rent(Math.Max(rows, 1));
        try
        {
            float maxWeight = 0;
            for (int r = 0; r < rows; r++)
            {
                weights[r] = !selection.IsReal(r) ? 0f : selection.Weights.IsEmpty ? 1f : selection.Weights[r];
                maxWeight = Math.Max(maxWeight, weights[r]);
            }

            // Every gradient entry is a probability difference times this scale: past float's range it would overflow
            // and meet zeros as ∞ · 0 = NaN. Refuse it before anything is written.
            if (valueScale * maxWeight / divisor > MaxGradientScale)
            {
                throw new ArgumentOutOfRangeException(
                    selection.Weights.IsEmpty ? "reduction" : "rowWeights",
                    valueScale * maxWeight / divisor,
                    "The gradient scale (T² factor × row weight ÷ the reduction's divisor) exceeds 1e30; float32 gradients would overflow.");
            }

            long scratchFloats = kernel.ScratchFloats(vocabularySize);
            if (rows > 0 && scratchFloats + 16 > Array.MaxLength)
            {
                throw new ArgumentOutOfRangeException(nameof(vocabularySize), vocabularySize, "A row this long needs more per-thread scratch than one .NET array holds.");
            }

            long elements = (long)rows * vocabularySize;
            int threads = (int)Math.Clamp(Math.Min(elements / MinElementsPerThread, rows), 1, Math.Min(Math.Max(maxThreads, 1), Environment.ProcessorCount));
            fixed (float* g = gradient)
            {
                var work = new RangeWork<TKernel>(kernel, vocabularySize, gradient.IsEmpty ? null : g, valueScale, divisor, values, weights);
                failure = threads == 1 ? work.Process(0, rows) : work.ProcessParallel(rows, threads);
            }

            if (failure.Status != RowStatus.Ok)
            {
                return default;
            }

            double sum = 0;
            for (int r = 0; r < rows; r++)
            {
                // A weight of 0 skips its row entirely, so an infinite row value never becomes 0 · ∞.
                sum += weights[r] == 0 ? 0 : weights[r] == 1 ? values[r] : weights[r] * values[r];
            }

            sum *= valueScale;
            if (!rowLosses.IsEmpty)
            {
                for (int r = 0; r < rows; r++)
                {
                    rowLosses[r] = (float)(values[r] * valueScale);
                }
            }

            double value = reduction.Kind is ReductionKind.None or ReductionKind.Sum ? sum : tokens == 0 ? 0 : sum / divisor;
            return new LossResult(value, sum, tokens, sequences);
        }
        finally
        {
            ArrayPool<double>.Shared.Return(values);
            ArrayPool<float>.Shared.Return(weights);
        }
    }

    /// <summary>The state one call shares between its threads.</summary>
    internal readonly struct RangeWork<TKernel>(TKernel kernel, int vocabularySize, float* gradient, double valueScale, double divisor, double[] values, float[] weights)
        where TKernel : struct, IRowKernel
    {
        public RowFailure ProcessParallel(int rows, int threads)
        {
            RangeJob<TKernel> job = RangeJob<TKernel>.ForThisThread();
            job.Work = this;
            job.Rows = rows;
            job.Parts = threads;
            try
            {
                if (!RowWorkers.TryRun(job, threads))
                {
                    return Process(0, rows); // the pool is busy with another call: same rows, same result, one thread
                }

                for (int k = 0; k < threads; k++)
                {
                    if (job.Failures[k].Status != RowStatus.Ok)
                    {
                        return job.Failures[k];
                    }
                }

                return default;
            }
            finally
            {
                job.Work = default;
            }
        }

        public RowFailure Process(int first, int end)
        {
            if (first >= end)
            {
                return default;
            }

            // 16 floats more than asked, so that the scratch can start on a 64-byte boundary.
            float[] scratch = ArrayPool<float>.Shared.Rent((int)Math.Max(kernel.ScratchFloats(vocabularySize) + 16, 1));
            var deferred = default(DeferredGradient);
            try
            {
                fixed (float* rented = scratch)
                {
                    float* s = (float*)(((nuint)rented + 63) & ~(nuint)63);
                    for (int r = first; r < end; r++)
                    {
                        float* g = gradient == null ? null : gradient + ((nint)r * vocabularySize);
                        float weight = weights[r];
                        if (weight == 0)
                        {
                            values[r] = 0;
                            if (g != null)
                            {
                                new Span<float>(g, vocabularySize).Clear();
                            }

                            continue;
                        }

                        RowStatus status = kernel.Row(r, g, valueScale * weight, divisor, s, ref deferred, out double value);
                        if (status != RowStatus.Ok)
                        {
                            return new RowFailure(r, status);
                        }

                        values[r] = value;
                    }

                    kernel.Finish(deferred);
                }
            }
            finally
            {
                ArrayPool<float>.Shared.Return(scratch);

                // Non-temporal gradient stores are weakly ordered: fence them before the caller (or another thread) reads.
                if (System.Runtime.Intrinsics.X86.Sse.IsSupported)
                {
                    System.Runtime.Intrinsics.X86.Sse.StoreFence();
                }
            }

            return default;
        }
    }
}

/// <summary>A call's rows split into contiguous parts; cached per thread and kernel type so a call allocates nothing.</summary>
internal sealed class RangeJob<TKernel> : IRangeJob
    where TKernel : struct, IRowKernel
{
    [ThreadStatic]
    private static RangeJob<TKernel>? _cached;

    public RowFailure[] Failures { get; } = new RowFailure[RowWorkers.MaxParts];

    public LossDriver.RangeWork<TKernel> Work { get; set; }

    public int Rows { get; set; }

    public int Parts { get; set; }

    public static RangeJob<TKernel> ForThisThread() => _cached ??= new RangeJob<TKernel>();

    public void Run(int part) =>
        Failures[part] = Work.Process((int)((long)Rows * part / Parts), (int)((long)Rows * (part + 1) / Parts));
}

/// <summary>The first row a kernel rejected (or <see cref="RowStatus.Ok"/>).</summary>
internal readonly record struct RowFailure(int Row, RowStatus Status);
