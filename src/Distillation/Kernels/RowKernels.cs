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
    RowStatus Row(int row, float* gradient, double numerator, double divisor, float* scratch, out double value);
}

/// <summary>A divergence between teacher and student rows, on the chosen kernel path.</summary>
internal readonly unsafe struct DivergenceRowKernel<TOp>(TOp op, float* teacher, DistributionKind teacherKind, float* student, int vocabularySize, float temperature, KernelPath path, Half* teacherHalf = null, bool streaming = true) : IRowKernel
    where TOp : struct, IDivergenceOp
{
    public long ScratchFloats(int vocabularySize) => (3L * vocabularySize) + FusedKernels.ChunkShiftFloats(vocabularySize);

    public RowStatus Row(int row, float* gradient, double numerator, double divisor, float* scratch, out double value)
    {
        int n = vocabularySize;
        float scale = (float)(numerator / divisor);
        float* t = teacher + ((nint)row * n), s = student + ((nint)row * n);
        float invT = 1f / temperature;
        float coef = scale * invT;
        float* expT = scratch, expS = scratch + n, logT = scratch + (2 * n), shifts = scratch + (3 * n);
        if (teacherHalf != null)
        {
            // Half storage: 2 bytes per value read once and widened exactly into the per-thread row buffer.
            System.Numerics.Tensors.TensorPrimitives.ConvertToSingle(new ReadOnlySpan<Half>(teacherHalf + ((nint)row * n), n), new Span<float>(logT, n));
            t = logT;
        }

        KernelPath rowPath = KernelPaths.ForRow(path, n);
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
            KernelPath.Vector512 when TOp.WeightedSum != TeacherWeightedSum.None => FusedKernels.TeacherWeightedRow<Simd512, Vector512<float>, TOp>(t, s, n, invT, gradient, coef, expT, expS, shifts, streaming, out value),
            KernelPath.Vector256 when TOp.WeightedSum != TeacherWeightedSum.None => FusedKernels.TeacherWeightedRow<Simd256, Vector256<float>, TOp>(t, s, n, invT, gradient, coef, expT, expS, shifts, streaming, out value),
            KernelPath.Vector512 => FusedKernels.DivergenceRow<Simd512, Vector512<float>, TOp>(op, t, s, n, invT, gradient, coef, expT, expS, shifts, streaming, out value),
            KernelPath.Vector256 => FusedKernels.DivergenceRow<Simd256, Vector256<float>, TOp>(op, t, s, n, invT, gradient, coef, expT, expS, shifts, streaming, out value),
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

    public RowStatus Row(int row, float* gradient, double numerator, double divisor, float* scratch, out double value)
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
