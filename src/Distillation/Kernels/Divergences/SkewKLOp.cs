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
    private readonly MixtureWeights _weights = new(alpha);
    private readonly float _minusOneMinusAlpha = (float)-(1 - alpha);

    public static bool IsDivergence => true;

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
        TV r = OpMath.Mixture<TS, TV>(p, q, _weights);
        // p·q/r computed as p·(q/r): q/r ≤ 1/(1 − α), so nothing overflows.
        qg = TS.Multiply(TS.Splat(_minusOneMinusAlpha), TS.Multiply(p, TS.Divide(q, r)));
        // log p arrives finite (floored at −FLT_MAX): p = 0 gives exactly 0 without a select.
        return TS.Multiply(p, TS.Subtract(logP, SimdMath.LogOfNormal<TS, TV>(r)));
    }
}
