using System;
using System.Runtime.CompilerServices;

namespace Distillation.Kernels;

/// <summary>One half of a thread's scratch for a row of the chunked kernels (see <see cref="FusedKernels"/>).</summary>
/// <param name="expT">The teacher's exponentials (later q·g for a general divergence), n floats.</param>
/// <param name="expS">The student's exponentials, n floats.</param>
/// <param name="shifts">The chunk maxima, later the gradient's per-chunk factors.</param>
internal readonly unsafe struct RowBank(float* expT, float* expS, float* shifts)
{
    public readonly float* ExpT = expT;
    public readonly float* ExpS = expS;
    public readonly float* Shifts = shifts;
}

/// <summary>
/// A row's gradient whose statistics are final but which is not written yet: per chunk k, destination =
/// <see cref="GradientFormKind"/>(x, y, a_k, b_k) with (a_k, b_k) at <see cref="Factors"/>[4k] and [4k + 1].
/// </summary>
internal readonly unsafe struct DeferredGradient(float* destination, float* x, float* y, float* factors, int n, GradientFormKind form)
{
    /// <summary>The row's gradient; null when nothing is deferred.</summary>
    public readonly float* Destination = destination;
    public readonly float* X = x;
    public readonly float* Y = y;
    public readonly float* Factors = factors;
    public readonly int N = n;
    public readonly GradientFormKind Form = form;
}

/// <summary>The <see cref="IGradientForm"/>s a deferred gradient can take.</summary>
internal enum GradientFormKind
{
    /// <summary><see cref="RescaleForm"/>.</summary>
    Rescale = 0,

    /// <summary><see cref="DifferenceForm"/>.</summary>
    Difference = 1,

    /// <summary><see cref="RatioForm"/>.</summary>
    Ratio = 2,
}

/// <summary>How a deferred gradient combines its two scratch rows (specialised per form by the JIT).</summary>
internal interface IGradientForm
{
    /// <summary>Whether there is a gradient to write at all.</summary>
    static abstract bool Active { get; }

    /// <summary>One vector of the gradient from the two scratch rows and the chunk's factors.</summary>
    static abstract TV Combine<TS, TV>(TV x, TV y, TV a, TV b)
        where TS : ISimd<TV>
        where TV : struct;

    /// <summary>The same for one element, rounded exactly as a lane of the vector form.</summary>
    static abstract float Combine(float x, float y, float a, float b);
}

/// <summary>No deferred gradient.</summary>
internal readonly struct NoGradient : IGradientForm
{
    public static bool Active => false;

    public static TV Combine<TS, TV>(TV x, TV y, TV a, TV b)
        where TS : ISimd<TV>
        where TV : struct => x;

    public static float Combine(float x, float y, float a, float b) => x;
}

/// <summary>x · a + y · b (the teacher-weighted ops, and infinite rows).</summary>
internal readonly struct RescaleForm : IGradientForm
{
    public static bool Active => true;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TV Combine<TS, TV>(TV x, TV y, TV a, TV b)
        where TS : ISimd<TV>
        where TV : struct => TS.MultiplyAdd(x, a, TS.Multiply(y, b));

    public static float Combine(float x, float y, float a, float b) => MathF.FusedMultiplyAdd(x, a, y * b);
}

/// <summary>(x + y · b) · a (a general divergence: the difference formed before the coefficient).</summary>
internal readonly struct DifferenceForm : IGradientForm
{
    public static bool Active => true;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TV Combine<TS, TV>(TV x, TV y, TV a, TV b)
        where TS : ISimd<TV>
        where TV : struct => TS.Multiply(TS.MultiplyAdd(y, b, x), a);

    public static float Combine(float x, float y, float a, float b) => MathF.FusedMultiplyAdd(y, b, x) * a;
}

/// <summary>How the chunked kernels form the base-2 exponent y of a value v from the scale c and a chunk constant k.</summary>
internal interface IShift
{
    /// <summary>Whether the chunk loop also finds the first side's raw maximum as it goes.</summary>
    static virtual bool TracksFirst => false;

    /// <summary>Whether the chunk loop also finds the second side's raw maximum (and minimum, where the op's support rule needs it) as it goes.</summary>
    static virtual bool TracksSecond => false;

    static abstract TV Exponent<TS, TV>(TV v, TV c, TV k)
        where TS : ISimd<TV>
        where TV : struct;
}

/// <summary>
/// y = v · c + k with k = −fl(shift · c) for a shift that is not the chunk's own maximum (the maxima of the chunks
/// before it), so the loop finds the chunk's maxima itself (see FusedKernels.ChunkedPass).
/// </summary>
internal readonly struct RunningShift : IShift
{
    public static bool TracksFirst => true;

    public static bool TracksSecond => true;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TV Exponent<TS, TV>(TV v, TV c, TV k)
        where TS : ISimd<TV>
        where TV : struct => TS.MultiplyAdd(v, c, k);
}

/// <summary>y = v · c + k with k = −fl(shift · c): one FMA (the chunk's δ is corrected in double).</summary>
internal readonly struct FusedShift : IShift
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TV Exponent<TS, TV>(TV v, TV c, TV k)
        where TS : ISimd<TV>
        where TV : struct => TS.MultiplyAdd(v, c, k);
}

/// <summary>y = (v − k) · c, the first side's k the maxima of the chunks before it (found for this chunk as it goes).</summary>
internal readonly struct RunningFirstShift : IShift
{
    public static bool TracksFirst => true;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TV Exponent<TS, TV>(TV v, TV c, TV k)
        where TS : ISimd<TV>
        where TV : struct => SubtractShift.Exponent<TS, TV>(v, c, k);
}

/// <summary>y = (v − k) · c, the second side's k the maxima of the chunks before it (found for this chunk as it goes).</summary>
internal readonly struct RunningSecondShift : IShift
{
    public static bool TracksSecond => true;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TV Exponent<TS, TV>(TV v, TV c, TV k)
        where TS : ISimd<TV>
        where TV : struct => SubtractShift.Exponent<TS, TV>(v, c, k);
}

/// <summary>y = (v − k) · c with k = shift (where shift · c leaves float's range).</summary>
internal readonly struct SubtractShift : IShift
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TV Exponent<TS, TV>(TV v, TV c, TV k)
        where TS : ISimd<TV>
        where TV : struct => TS.Multiply(TS.Subtract(v, k), c);
}

/// <summary>
/// clamp(x + b, ±FLT_MAX) · (y · a) (reverse KL: x the stored log-ratio, b minus its mean, y the student's
/// exponential); the clamp keeps a token of y · a = 0 at 0 instead of ±∞ · 0.
/// </summary>
internal readonly struct RatioForm : IGradientForm
{
    public static bool Active => true;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TV Combine<TS, TV>(TV x, TV y, TV a, TV b)
        where TS : ISimd<TV>
        where TV : struct => TS.Multiply(TS.Min(TS.AtLeastLowest(TS.Add(x, b)), TS.Splat(float.MaxValue)), TS.Multiply(y, a));

    public static float Combine(float x, float y, float a, float b) => Math.Clamp(x + b, float.MinValue, float.MaxValue) * (y * a);
}
