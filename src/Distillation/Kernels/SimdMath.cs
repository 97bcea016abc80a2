using System.Runtime.CompilerServices;

namespace Distillation.Kernels;

/// <summary>Vector math written once over <see cref="ISimd{TV}"/>.</summary>
internal static class SimdMath
{
    /// <summary>Below this, exp(x) is returned as exactly 0 (the result would be subnormal).</summary>
    public const float ExpUnderflow = -87.33654f;

    /// <summary>
    /// exp(x) for x ≤ 0: x = n·ln2 + r with |r| ≤ ln2/2, e^r by its degree-6 Taylor polynomial in Horner form (six
    /// FMAs; relative error below 1.3e-7, about two float ulps), then the exponent n applied with one scale.
    /// Exactly 0 for x &lt; <see cref="ExpUnderflow"/>, so −∞ gives 0; NaN gives NaN. About 2.5× cheaper than
    /// <c>Vector512.Exp</c>, which is accurate to the last bit but exp-bound kernels pay for it.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TV Exp<TS, TV>(TV x)
        where TS : ISimd<TV>
        where TV : struct
    {
        // ln2 split in two parts so that r is exact enough.
        TV n = TS.Floor(TS.MultiplyAdd(x, TS.Splat(1.44269504088896341f), TS.Splat(0.5f)));
        TV r = TS.MultiplyAdd(n, TS.Splat(-0.693359375f), x);
        r = TS.MultiplyAdd(n, TS.Splat(2.12194440e-4f), r);
        TV y = TS.MultiplyAdd(TS.Splat(1f / 720), r, TS.Splat(1f / 120));
        y = TS.MultiplyAdd(y, r, TS.Splat(1f / 24));
        y = TS.MultiplyAdd(y, r, TS.Splat(1f / 6));
        y = TS.MultiplyAdd(y, r, TS.Splat(0.5f));
        y = TS.MultiplyAdd(y, r, TS.Splat(1f));
        y = TS.MultiplyAdd(y, r, TS.Splat(1f));
        return TS.Select(TS.LessThan(x, TS.Splat(ExpUnderflow)), TS.Zero, TS.ScaleByPow2(y, n));
    }

    /// <summary>
    /// 2^y for y ≤ 1 already passed through <see cref="ISimd{TV}.AtLeastLowest"/> (so −∞ arrives as −float.MaxValue;
    /// where <see cref="ISimd{TV}.Exp2TakesNegativeInfinity"/>, −∞ itself gives exactly 0 too):
    /// f = y − floor(y) in [0, 1) (exact), 2^f ≈ 1 + f·q(f) with q of degree 4 fitted for relative error (8.3e-8 in
    /// exact arithmetic, exact at f = 0), then scaled by 2^floor(y), which rounds to exactly 0 below float's range (so
    /// −float.MaxValue gives 0). NaN gives NaN. With AVX-512 that is a vreduceps, five FMAs and a vscalefps: the kernels
    /// that need two exponentials per element take their logits to base 2 in the FMA that applies 1/T and call this
    /// instead of <see cref="Exp{TS, TV}"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TV Exp2<TS, TV>(TV y)
        where TS : ISimd<TV>
        where TV : struct => Exp2<TS, TV>(y, Exp2Constants<TS, TV>.Create());

    /// <summary>
    /// <see cref="Exp2{TS, TV}(TV)"/> with its coefficients broadcast by the caller: a loop that creates them once
    /// before it keeps them in registers (the JIT broadcasts a constant from memory at every use otherwise: six loads
    /// per exponential). The first pass's value alone ran 2–5% faster so; its loss with gradient did not move.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TV Exp2<TS, TV>(TV y, in Exp2Constants<TS, TV> k)
        where TS : ISimd<TV>
        where TV : struct
    {
        TV f = TS.FractionAboveFloor(y);
        TV q = TS.MultiplyAdd(k.C5, f, k.C4);
        q = TS.MultiplyAdd(q, f, k.C3);
        q = TS.MultiplyAdd(q, f, k.C2);
        q = TS.MultiplyAdd(q, f, k.C1);
        return TS.ScaleByPow2OfFloor(TS.MultiplyAdd(q, f, k.One), y);
    }

    /// <summary>
    /// log(x) for positive normal x (the divergences' floored mixtures), within 3 ulp, exactly 0 at 1: the width's own
    /// <see cref="ISimd{TV}.LogOfNormal"/> (a table-driven form with AVX-512, <see cref="CephesLog{TS, TV}"/> otherwise).
    /// Several times cheaper than <c>Vector512.Log</c>, which works in double. Not for 0, subnormals, negatives, ∞ or NaN.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TV LogOfNormal<TS, TV>(TV x)
        where TS : ISimd<TV>
        where TV : struct => TS.LogOfNormal(x);

    /// <summary>
    /// log(x) for positive normal x: x = m · 2^k with m in [√½, √2) from the
    /// exponent and significand (vgetexpps, vgetmantps with AVX-512), then Cephes' logf: r = m − 1,
    /// log(1 + r) = r − r²/2 + r³ · P(r) with P of degree 8, and k · ln 2 added in two parts. About 2 ulp; several times
    /// cheaper than <c>Vector512.Log</c>, which works in double. Not for 0, subnormals, negatives, ∞ or NaN.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TV CephesLog<TS, TV>(TV x)
        where TS : ISimd<TV>
        where TV : struct
    {
        TV m = TS.Significand(x);
        TV big = TS.GreaterThan(m, TS.Splat(1.41421356f));
        TV k = TS.Add(TS.Exponent(x), TS.Select(big, TS.Splat(1f), TS.Zero));
        TV r = TS.MultiplyAdd(m, TS.Select(big, TS.Splat(0.5f), TS.Splat(1f)), TS.Splat(-1f));
        TV z = TS.Multiply(r, r);
        TV y = TS.MultiplyAdd(TS.Splat(7.0376836292e-2f), r, TS.Splat(-1.1514610310e-1f));
        y = TS.MultiplyAdd(y, r, TS.Splat(1.1676998740e-1f));
        y = TS.MultiplyAdd(y, r, TS.Splat(-1.2420140846e-1f));
        y = TS.MultiplyAdd(y, r, TS.Splat(1.4249322787e-1f));
        y = TS.MultiplyAdd(y, r, TS.Splat(-1.6668057665e-1f));
        y = TS.MultiplyAdd(y, r, TS.Splat(2.0000714765e-1f));
        y = TS.MultiplyAdd(y, r, TS.Splat(-2.4999993993e-1f));
        y = TS.MultiplyAdd(y, r, TS.Splat(3.3333331174e-1f));
        y = TS.Multiply(TS.Multiply(y, r), z);
        y = TS.MultiplyAdd(k, TS.Splat(-2.12194440e-4f), y);
        y = TS.MultiplyAdd(z, TS.Splat(-0.5f), y);
        return TS.MultiplyAdd(k, TS.Splat(0.693359375f), TS.Add(r, y));
    }
}

/// <summary>The coefficients of <see cref="SimdMath.Exp2{TS, TV}(TV, in Exp2Constants{TS, TV})"/>, broadcast once.</summary>
internal readonly struct Exp2Constants<TS, TV>(TV c5, TV c4, TV c3, TV c2, TV c1, TV one)
    where TS : ISimd<TV>
    where TV : struct
{
    /// <summary>The coefficients of 2^f ≈ 1 + C1·f + C2·f² + … + C5·f⁵ (evaluated as 1 + f·q(f)), and 1.</summary>
    public readonly TV C5 = c5, C4 = c4, C3 = c3, C2 = c2, C1 = c1, One = one;

    /// <summary>The coefficients broadcast to every lane.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Exp2Constants<TS, TV> Create() => new(
        TS.Splat(1.86720671e-3f), TS.Splat(9.01686648e-3f), TS.Splat(5.58000323e-2f), TS.Splat(2.40164416e-1f), TS.Splat(6.93151315e-1f), TS.Splat(1f));
}
