using System;
using System.Runtime.Intrinsics;
using Distillation.Kernels.Divergences;

namespace Distillation.Kernels;

/// <summary>One row of a loss: the part of the computation that differs between losses. The driver does the rest.</summary>
internal unsafe interface IRowKernel
{
    /// <summary>Scratch floats one thread needs for rows of <paramref name="vocabularySize"/>.</summary>
    long ScratchFloats(int vocabularySize);

    /// <summary>
    /// Computes row <paramref name="row"/>: its value, and its gradient into <paramref name="gradient"/> (when not null)
    /// scaled by (float)(<paramref name="numerator"/> / <paramref name="divisor"/>) — one rounding, so that every entry
    /// point that asks for the same scale gets bit-identical gradients.
    /// </summary>
    /// <param name="row">The row.</param>
    /// <param name="gradient">The row's gradient, or null for the value only.</param>
    /// <param name="numerator">The gradient scale's numerator.</param>
    /// <param name="divisor">The gradient scale's divisor.</param>
    /// <param name="scratch">The thread's scratch (<see cref="ScratchFloats"/>, 64-byte aligned).</param>
    /// <param name="deferred">
    /// A gradient this thread deferred (see <see cref="FusedKernels"/>): a kernel may write it while computing this row
    /// (and then clear it), and may leave this row's gradient here in its place.
    /// </param>
    /// <param name="value">The row's value.</param>
    RowStatus Row(int row, float* gradient, double numerator, double divisor, float* scratch, ref DeferredGradient deferred, out double value);

    /// <summary>Writes a gradient left in <paramref name="deferred"/> (the driver calls it after a thread's last row).</summary>
    void Finish(in DeferredGradient deferred);
}

/// <summary>A divergence between teacher and student rows, on the chosen kernel path.</summary>
internal readonly unsafe struct DivergenceRowKernel<TOp>(TOp op, float* teacher, DistributionKind teacherKind, float* student, int vocabularySize, float temperature, KernelPath path, Half* teacherHalf = null, bool streaming = true) : IRowKernel
    where TOp : struct, IDivergenceOp
{
    /// <summary>Two <see cref="RowBank"/>s (a deferred gradient keeps one while the next row fills the other) and a row for a converted teacher.</summary>
    public long ScratchFloats(int vocabularySize) => (2L * BankFloats(vocabularySize)) + FusedKernels.RoundUp(vocabularySize);

    private static long BankFloats(int n) => (2L * FusedKernels.RoundUp(n)) + FusedKernels.ChunkShiftFloats(n);

    public void Finish(in DeferredGradient deferred)
    {
        if (deferred.Destination == null)
        {
            return;
        }

        if (KernelPaths.ForRow(path, vocabularySize) == KernelPath.Vector512)
        {
            FusedKernels.Write<Simd512, Vector512<float>>(deferred, streaming: true);
        }
        else
        {
            FusedKernels.Write<Simd256, Vector256<float>>(deferred, streaming: true);
        }
    }

    public RowStatus Row(int row, float* gradient, double numerator, double divisor, float* scratch, ref DeferredGradient deferred, out double value)
    {
        int n = vocabularySize;
        float scale = (float)(numerator / divisor);
        float* t = teacher + ((nint)row * n), s = student + ((nint)row * n);
        float invT = 1f / temperature;
        float coef = scale * invT;
        // The bank the deferred gradient (if any) does not use; every part starts on a 64-byte boundary.
        int rounded = (int)FusedKernels.RoundUp(n); // the driver refused scratch beyond Array.MaxLength, so this fits
        float* second = scratch + BankFloats(n), logT = second + BankFloats(n);
        float* expT = deferred.Destination != null && (deferred.X == scratch || deferred.Y == scratch) ? second : scratch;
        var bank = new RowBank(expT, expT + rounded, expT + (2 * rounded));
        KernelPath rowPath = KernelPaths.ForRow(path, n);
        Half* half = teacherHalf == null ? null : teacherHalf + ((nint)row * n);
        bool singlePass = TOp.StudentWeighted || TOp.WeightedSum != TeacherWeightedSum.None;
        if (half != null && (!singlePass || rowPath == KernelPath.Scalar || teacherKind == DistributionKind.Probabilities))
        {
            // Half storage: 2 bytes per value read once and widened exactly into the per-thread row buffer. The
            // single-pass kernels instead widen it chunk by chunk as they go (into the same buffer).
            System.Numerics.Tensors.TensorPrimitives.ConvertToSingle(new ReadOnlySpan<Half>(half, n), new Span<float>(logT, n));
            t = logT;
            half = null;
        }

        if (teacherKind == DistributionKind.Probabilities && rowPath != KernelPath.Scalar)
        {
            // The vector kernels take logits: validate the probabilities and take their logarithms once, here.
            RowStatus status = rowPath == KernelPath.Vector512
                ? FusedKernels.LogOfProbabilities<Simd512, Vector512<float>>(t, n, logT)
                : FusedKernels.LogOfProbabilities<Simd256, Vector256<float>>(t, n, logT);
            if (status != RowStatus.Ok)
            {
                value = 0;
                return status;
            }

            t = logT;
        }

        return rowPath switch
        {
            KernelPath.Vector512 when TOp.StudentWeighted => FusedKernels.StudentWeightedRow<Simd512, Vector512<float>>(t, half, logT, s, n, invT, gradient, coef, bank, streaming, ref deferred, out value),
            KernelPath.Vector256 when TOp.StudentWeighted => FusedKernels.StudentWeightedRow<Simd256, Vector256<float>>(t, half, logT, s, n, invT, gradient, coef, bank, streaming, ref deferred, out value),
            KernelPath.Vector512 when TOp.WeightedSum != TeacherWeightedSum.None => FusedKernels.TeacherWeightedRow<Simd512, Vector512<float>, TOp>(t, half, logT, s, n, invT, gradient, coef, bank, streaming, ref deferred, out value),
            KernelPath.Vector256 when TOp.WeightedSum != TeacherWeightedSum.None => FusedKernels.TeacherWeightedRow<Simd256, Vector256<float>, TOp>(t, half, logT, s, n, invT, gradient, coef, bank, streaming, ref deferred, out value),
            KernelPath.Vector512 => FusedKernels.DivergenceRow<Simd512, Vector512<float>, TOp>(op, t, s, n, invT, gradient, coef, bank, streaming, ref deferred, out value),
            KernelPath.Vector256 => FusedKernels.DivergenceRow<Simd256, Vector256<float>, TOp>(op, t, s, n, invT, gradient, coef, bank, streaming, ref deferred, out value),
            _ => ReferenceKernels.DivergenceRow(op, t, teacherKind, s, n, 1.0 / temperature, gradient, (double)scale / temperature, out value),
        };
    }
}

/// <summary>
/// The label loss −Σ target log softmax(s/T) on student rows: the hard-label LM loss at T = 1, and (ε = 0) minus a
/// sequence's token log-probabilities at T for the sequence-level losses.
/// </summary>
internal readonly unsafe struct LabelRowKernel(float* student, int* labels, int vocabularySize, float labelSmoothing, float temperature, KernelPath path, bool accumulate = false) : IRowKernel
{
    public int VocabularySize => vocabularySize;

    public long ScratchFloats(int vocabularySize) => vocabularySize;

    public void Finish(in DeferredGradient deferred)
    {
    }

    public RowStatus Row(int row, float* gradient, double numerator, double divisor, float* scratch, ref DeferredGradient deferred, out double value)
    {
        int n = vocabularySize;
        float scale = (float)(numerator / divisor);
        float* s = student + ((nint)row * n);
        int label = labels[row];
        float invT = 1f / temperature;
        return KernelPaths.ForRow(path, n) switch
        {
            KernelPath.Vector512 => FusedKernels.LabelRow<Simd512, Vector512<float>>(s, n, label, labelSmoothing, invT, gradient, scale * invT, accumulate, scratch, out value),
            KernelPath.Vector256 => FusedKernels.LabelRow<Simd256, Vector256<float>>(s, n, label, labelSmoothing, invT, gradient, scale * invT, accumulate, scratch, out value),
            _ => ReferenceKernels.LabelRow(s, n, label, labelSmoothing, 1.0 / temperature, gradient, (double)scale / temperature, accumulate, out value),
        };
    }
}
