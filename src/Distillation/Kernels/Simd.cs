using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Distillation.Kernels;

/// <summary>
/// The vector operations the fused kernels use, as static abstract members so that one kernel body is
/// specialised by the JIT for each width (no virtual calls, everything inlined).
/// </summary>
/// <typeparam name="TV">The vector type (<see cref="Vector512{T}"/> or <see cref="Vector256{T}"/> of float).</typeparam>
internal unsafe interface ISimd<TV>
    where TV : struct
{
    static abstract int Count { get; }

    static abstract TV Zero { get; }

    static abstract TV Load(float* p);

    static abstract void Store(TV v, float* p);

    static abstract TV Splat(float x);

    static abstract TV Add(TV a, TV b);

    static abstract TV Subtract(TV a, TV b);

    static abstract TV Multiply(TV a, TV b);

    static abstract TV Divide(TV a, TV b);

    /// <summary>a · b + c.</summary>
    static abstract TV MultiplyAdd(TV a, TV b, TV c);

    /// <summary>
    /// The hardware maximum (MaxNative): which operand a NaN yields is unspecified, so kernels never rely on a max to
    /// find NaN — every NaN input reaches a sum through <see cref="SimdMath.Exp{TS, TV}"/>, which propagates it.
    /// </summary>
    static abstract TV Max(TV a, TV b);

    /// <summary>The hardware minimum (MinNative).</summary>
    static abstract TV Min(TV a, TV b);

    /// <summary>Rounds each lane down to an integral value.</summary>
    static abstract TV Floor(TV a);

    /// <summary>floor(log2 a) as a float, for positive normal a (one vgetexpps where AVX-512 has it).</summary>
    static abstract TV Exponent(TV a);

    /// <summary>The significand of a positive normal a, in [1, 2) (one vgetmantps where AVX-512 has it).</summary>
    static abstract TV Significand(TV a);

    /// <summary>a − floor(a) in [0, 1), exact (one vreduceps where AVX-512 DQ has it); −∞ gives NaN.</summary>
    static abstract TV FractionAboveFloor(TV a);

    /// <summary>
    /// y · 2^floor(n) (one vscalefps where AVX-512 has it, which rounds results below float's range to subnormals or
    /// 0; without it, floor(n) below −126 gives exactly 0). n ≤ 127.
    /// </summary>
    static abstract TV ScaleByPow2OfFloor(TV y, TV n);

    /// <summary>
    /// max(−float.MaxValue, a) with NaN kept: −∞ becomes the lowest finite float, a NaN lane stays NaN (the
    /// hardware max returns its second operand when either is NaN, and <paramref name="a"/> is passed second).
    /// </summary>
    static abstract TV AtLeastLowest(TV a);

    /// <summary>2^n for lanes holding integral values n in [−126, 127], built from the exponent bits.</summary>
    static abstract TV Pow2(TV n);

    /// <summary>y · 2^n for integral n in [−126, 127] (one vscalefps where AVX-512 has it).</summary>
    static abstract TV ScaleByPow2(TV y, TV n);

    /// <summary>Whether <see cref="StoreNonTemporal"/> exists (otherwise it is an ordinary store).</summary>
    static abstract bool HasNonTemporalStore { get; }

    /// <summary>
    /// Whether <see cref="FractionAboveFloor"/> and <see cref="ScaleByPow2OfFloor"/> take −∞ as it is (vreduceps
    /// gives 0 and vscalefps by −∞ gives exactly 0, so 2^−∞ = 0 without the <see cref="AtLeastLowest"/> clamp;
    /// NaN still gives NaN). Without AVX-512, a − floor(a) is NaN at −∞.
    /// </summary>
    static abstract bool Exp2TakesNegativeInfinity { get; }

    /// <summary>A store that bypasses the caches; <paramref name="p"/> must be aligned to the vector size.</summary>
    static abstract void StoreNonTemporal(TV v, float* p);

    static abstract TV Abs(TV a);

    static abstract TV Log(TV a);

    /// <summary>
    /// log(a) for positive normal a, within 3 ulp (tested on every 16th float of [1/2, 2)) (see <see cref="SimdMath.LogOfNormal{TS, TV}"/>): with AVX-512 from a
    /// 16-entry table, otherwise <see cref="SimdMath.CephesLog{TS, TV}"/>.
    /// </summary>
    static abstract TV LogOfNormal(TV a);

    /// <summary>All-ones lanes where a &gt; b.</summary>
    static abstract TV GreaterThan(TV a, TV b);

    /// <summary>All-ones lanes where a &lt; b.</summary>
    static abstract TV LessThan(TV a, TV b);

    /// <summary>Lanes of <paramref name="ifTrue"/> where <paramref name="mask"/> is set, else of <paramref name="ifFalse"/>.</summary>
    static abstract TV Select(TV mask, TV ifTrue, TV ifFalse);

    /// <summary>A mask keeping the last <paramref name="valid"/> lanes (used for the overlapping last vector of a row).</summary>
    static abstract TV TailMask(int valid);

    static abstract float MaxAcross(TV a);

    static abstract double SumAcross(TV a);
}

/// <summary>512-bit lanes (16 floats).</summary>
internal unsafe struct Simd512 : ISimd<Vector512<float>>
{
    public static int Count => Vector512<float>.Count;

    public static Vector512<float> Zero => Vector512<float>.Zero;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Load(float* p) => Vector512.Load(p);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Store(Vector512<float> v, float* p) => v.Store(p);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Splat(float x) => Vector512.Create(x);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Add(Vector512<float> a, Vector512<float> b) => a + b;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Subtract(Vector512<float> a, Vector512<float> b) => a - b;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Multiply(Vector512<float> a, Vector512<float> b) => a * b;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Divide(Vector512<float> a, Vector512<float> b) => a / b;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> MultiplyAdd(Vector512<float> a, Vector512<float> b, Vector512<float> c) => Vector512.FusedMultiplyAdd(a, b, c);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Max(Vector512<float> a, Vector512<float> b) => Vector512.MaxNative(a, b);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Min(Vector512<float> a, Vector512<float> b) => Vector512.MinNative(a, b);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Floor(Vector512<float> a) => Vector512.Floor(a);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Exponent(Vector512<float> a) =>
        Avx512F.IsSupported ? Avx512F.GetExponent(a) : Vector512.ConvertToSingle(((a.AsInt32() >>> 23) & Vector512.Create(0xFF)) - Vector512.Create(127));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Significand(Vector512<float> a) =>
        Avx512F.IsSupported ? Avx512F.GetMantissa(a, 0) : ((a.AsInt32() & Vector512.Create(0x007FFFFF)) | Vector512.Create(0x3F800000)).AsSingle();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> FractionAboveFloor(Vector512<float> a) =>
        Avx512DQ.IsSupported ? Avx512DQ.Reduce(a, 0x09) : a - Vector512.Floor(a);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> ScaleByPow2OfFloor(Vector512<float> y, Vector512<float> n) =>
        Avx512F.IsSupported ? Avx512F.Scale(y, n) : y * Pow2(Vector512.Max(Vector512.Floor(n), Vector512.Create(-127f)));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> AtLeastLowest(Vector512<float> a) =>
        Avx512F.IsSupported ? Avx512F.Max(Vector512.Create(float.MinValue), a) : Vector512.Max(Vector512.Create(float.MinValue), a);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Pow2(Vector512<float> n) =>
        Vector512.ShiftLeft(Vector512.ConvertToInt32(n) + Vector512.Create(127), 23).AsSingle();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> ScaleByPow2(Vector512<float> y, Vector512<float> n) =>
        Avx512F.IsSupported ? Avx512F.Scale(y, n) : y * Pow2(n);

    public static bool HasNonTemporalStore => Avx512F.IsSupported;

    public static bool Exp2TakesNegativeInfinity => Avx512F.IsSupported && Avx512DQ.IsSupported;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void StoreNonTemporal(Vector512<float> v, float* p)
    {
        if (Avx512F.IsSupported)
        {
            Avx512F.StoreAlignedNonTemporal(p, v);
        }
        else
        {
            v.Store(p);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Abs(Vector512<float> a) => Vector512.Abs(a);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Log(Vector512<float> a) => Vector512.Log(a);

    /// <summary>
    /// log(a) = k · ln2 + log z: z = a's significand normalised into [3/4, 3/2) (vgetmantps), so a = z · 2^k with
    /// k = floor(log2 a) − floor(log2 z) (two vgetexpps); z's top four significand bits pick 1/c and −log(1/c) from two
    /// 16-entry tables (vpermps), r = z · (1/c) − 1 is exact to one rounding with |r| ≤ 1/16, and log z = −log(1/c) +
    /// r + r² · P(r) with P of degree 3 (a Chebyshev fit, 4e-10 absolute in exact arithmetic). The bins beside 1 have
    /// c = 1, so log 1 is exactly 0 and a near 1 (k = 0, r = z − 1 exact) keeps its relative accuracy; below 1 the
    /// exponent k absorbs the halving of z (no ln 2 in the table, whose rounding near −ln 2 + ln 2 cost up to 4.6 ulp in
    /// [0.81, 1)). 14 instructions against Cephes' 27; without AVX-512, <see cref="SimdMath.CephesLog{TS, TV}"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> LogOfNormal(Vector512<float> a)
    {
        if (!Avx512F.IsSupported)
        {
            return SimdMath.CephesLog<Simd512, Vector512<float>>(a);
        }

        // The table, as constants in the code (a static readonly field brings a class-initialisation check into every
        // loop that inlines this, and the check's call spills the loop's registers). Per bin i (z's top four significand
        // bits): bins 0–7 cover z in [1 + i/16, 1 + (i+1)/16), bins 8–15 cover [1/2 + i/32, 1/2 + (i+1)/32); c is the
        // bin's centre, 1 for the two bins beside 1; the first column is 1/c in float, the second −log(1/c) computed in
        // double from that float and rounded once.
        Vector512<float> inverses = Vector512.Create(
            1f, 0.914285719f, 0.864864886f, 0.820512831f, 0.780487776f, 0.744186044f, 0.711111128f, 0.680851042f,
            1.30612242f, 1.25490201f, 1.20754719f, 1.16363633f, 1.12280703f, 1.08474576f, 1.04918027f, 1f);
        Vector512<float> terms = Vector512.Create(
            0f, 0.0896121562f, 0.145181984f, 0.19782573f, 0.247836202f, 0.295464218f, 0.340926558f, 0.384411722f,
            -0.267062753f, -0.227057487f, -0.188591182f, -0.151549861f, -0.115831822f, -0.0813456401f, -0.0480091646f, 0f);
        Vector512<float> z = Avx512F.GetMantissa(a, 0b0011);
        Vector512<float> k = Avx512F.GetExponent(a) - Avx512F.GetExponent(z);
        Vector512<int> bin = Vector512.ShiftRightLogical(z.AsInt32(), 19);
        Vector512<float> r = Vector512.FusedMultiplyAdd(z, Avx512F.PermuteVar16x32(inverses, bin), Vector512.Create(-1f));
        Vector512<float> y0 = Vector512.FusedMultiplyAdd(k, Vector512.Create(0.693147182f), Avx512F.PermuteVar16x32(terms, bin));
        Vector512<float> p = Vector512.FusedMultiplyAdd(Vector512.Create(0.190212563f), r, Vector512.Create(-0.250123143f));
        p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(0.333341777f));
        p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(-0.49999997f));
        return Vector512.FusedMultiplyAdd(p, r * r, r) + y0;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> GreaterThan(Vector512<float> a, Vector512<float> b) => Vector512.GreaterThan(a, b);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> LessThan(Vector512<float> a, Vector512<float> b) => Vector512.LessThan(a, b);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Select(Vector512<float> mask, Vector512<float> ifTrue, Vector512<float> ifFalse) =>
        Vector512.ConditionalSelect(mask, ifTrue, ifFalse);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> TailMask(int valid) =>
        Vector512.GreaterThanOrEqual(Vector512<int>.Indices, Vector512.Create(Vector512<float>.Count - valid)).AsSingle();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float MaxAcross(Vector512<float> a) => Simd256.MaxAcross(Vector256.Max(a.GetLower(), a.GetUpper()));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static double SumAcross(Vector512<float> a) =>
        Vector512.Sum(Vector512.WidenLower(a)) + Vector512.Sum(Vector512.WidenUpper(a));
}

/// <summary>256-bit lanes (8 floats).</summary>
internal unsafe struct Simd256 : ISimd<Vector256<float>>
{
    public static int Count => Vector256<float>.Count;

    public static Vector256<float> Zero => Vector256<float>.Zero;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Load(float* p) => Vector256.Load(p);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Store(Vector256<float> v, float* p) => v.Store(p);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Splat(float x) => Vector256.Create(x);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Add(Vector256<float> a, Vector256<float> b) => a + b;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Subtract(Vector256<float> a, Vector256<float> b) => a - b;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Multiply(Vector256<float> a, Vector256<float> b) => a * b;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Divide(Vector256<float> a, Vector256<float> b) => a / b;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> MultiplyAdd(Vector256<float> a, Vector256<float> b, Vector256<float> c) => Vector256.FusedMultiplyAdd(a, b, c);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Max(Vector256<float> a, Vector256<float> b) => Vector256.MaxNative(a, b);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Min(Vector256<float> a, Vector256<float> b) => Vector256.MinNative(a, b);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Floor(Vector256<float> a) => Vector256.Floor(a);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Exponent(Vector256<float> a) =>
        Avx512F.VL.IsSupported ? Avx512F.VL.GetExponent(a) : Vector256.ConvertToSingle(((a.AsInt32() >>> 23) & Vector256.Create(0xFF)) - Vector256.Create(127));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Significand(Vector256<float> a) =>
        Avx512F.VL.IsSupported ? Avx512F.VL.GetMantissa(a, 0) : ((a.AsInt32() & Vector256.Create(0x007FFFFF)) | Vector256.Create(0x3F800000)).AsSingle();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> FractionAboveFloor(Vector256<float> a) =>
        Avx512DQ.VL.IsSupported ? Avx512DQ.VL.Reduce(a, 0x09) : a - Vector256.Floor(a);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> ScaleByPow2OfFloor(Vector256<float> y, Vector256<float> n) =>
        Avx512F.VL.IsSupported ? Avx512F.VL.Scale(y, n) : y * Pow2(Vector256.Max(Vector256.Floor(n), Vector256.Create(-127f)));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> AtLeastLowest(Vector256<float> a) =>
        Avx.IsSupported ? Avx.Max(Vector256.Create(float.MinValue), a) : Vector256.Max(Vector256.Create(float.MinValue), a);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Pow2(Vector256<float> n) =>
        Vector256.ShiftLeft(Vector256.ConvertToInt32(n) + Vector256.Create(127), 23).AsSingle();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> ScaleByPow2(Vector256<float> y, Vector256<float> n) =>
        Avx512F.VL.IsSupported ? Avx512F.VL.Scale(y, n) : y * Pow2(n);

    public static bool HasNonTemporalStore => Avx.IsSupported;

    public static bool Exp2TakesNegativeInfinity => Avx512F.VL.IsSupported && Avx512DQ.VL.IsSupported;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void StoreNonTemporal(Vector256<float> v, float* p)
    {
        if (Avx.IsSupported)
        {
            Avx.StoreAlignedNonTemporal(p, v);
        }
        else
        {
            v.Store(p);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Abs(Vector256<float> a) => Vector256.Abs(a);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Log(Vector256<float> a) => Vector256.Log(a);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> LogOfNormal(Vector256<float> a) => SimdMath.CephesLog<Simd256, Vector256<float>>(a);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> GreaterThan(Vector256<float> a, Vector256<float> b) => Vector256.GreaterThan(a, b);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> LessThan(Vector256<float> a, Vector256<float> b) => Vector256.LessThan(a, b);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Select(Vector256<float> mask, Vector256<float> ifTrue, Vector256<float> ifFalse) =>
        Vector256.ConditionalSelect(mask, ifTrue, ifFalse);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> TailMask(int valid) =>
        Vector256.GreaterThanOrEqual(Vector256<int>.Indices, Vector256.Create(Vector256<float>.Count - valid)).AsSingle();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float MaxAcross(Vector256<float> a)
    {
        // Math.Max propagates NaN, like Vector128.Max.
        Vector128<float> m = Vector128.Max(a.GetLower(), a.GetUpper());
        return System.MathF.Max(System.MathF.Max(m.GetElement(0), m.GetElement(1)), System.MathF.Max(m.GetElement(2), m.GetElement(3)));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static double SumAcross(Vector256<float> a) =>
        Vector256.Sum(Vector256.WidenLower(a)) + Vector256.Sum(Vector256.WidenUpper(a));
}
