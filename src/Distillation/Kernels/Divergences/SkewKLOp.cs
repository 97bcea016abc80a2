namespace Distillation.Kernels.Divergences;

/// <summary>
/// Skew KL(α) for α in (0, 1) (DistiLLM): r = α p + (1 − α) q, L = KL(p ‖ r) = Σ p (log p − log r);
/// ∂L/∂q = −(1 − α) p / r, so q·g = −(1 − α) p q / r. α = 0 is forward KL and is dispatched to that op.
/// </summary>
internal readonly struct SkewKLOp(double alpha) : IDivergenceOp
{
    private readonly double _alpha = alpha;
    private readonly double _logAlpha = System.Math.Log(alpha);
    private readonly double _logOneMinusAlpha = System.Math.Log(1 - alpha);
    // α rounded to float once, when the op is made: the vector loop broadcasts a float (a double-to-float conversion
    // per iteration merges into its destination register and can chain the iterations together).
    private readonly float _alphaFloat = (float)alpha;

    public static bool IsDivergence => true;

    /// <summary>The vector form receives p and b = (1 − α) q.</summary>
    public (double P, double Q) VectorScales => (1, 1 - _alpha);

    public double Element(double p, double q, double logP, double logQ, out double qg)
    {
        double logR = OpMath.LogAddExp(_logAlpha + logP, _logOneMinusAlpha + logQ);
        qg = p > 0 && q > 0 ? -(1 - _alpha) * p * System.Math.Exp(logQ - logR) : 0; // p·q/r without 0/0 when r underflows
        return p > 0 ? p * (logP - logR) : 0;
    }

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    public TV Element<TS, TV>(TV p, TV q, TV logP, TV logQ, out TV qg)
        where TS : ISimd<TV>
        where TV : struct
    {
        // r = α p + b with b = (1 − α) q (scaled by the kernel), floored at the smallest normal float.
        TV r = TS.Max(TS.MultiplyAdd(TS.Splat(_alphaFloat), p, q), TS.Splat(OpMath.MixtureFloor));
        // q·g = −p·b/r computed as p·(b/r): b/r ≤ 1, so nothing overflows.
        qg = TS.Subtract(TS.Zero, TS.Multiply(p, TS.Divide(q, r)));
        // log p arrives finite (floored at −FLT_MAX): p = 0 gives exactly 0 without a select.
        return TS.Multiply(p, TS.Subtract(logP, SimdMath.LogOfNormal<TS, TV>(r)));
    }
}
