namespace Distillation.Kernels.Divergences;

/// <summary>
/// Skew reverse KL(α) for α in (0, 1) (DistiLLM): r = α q + (1 − α) p, L = KL(q ‖ r) = Σ q (log q − log r);
/// ∂L/∂q = log q − log r + 1 − α q / r, so q·g = term + q − α q²/r. α = 0 is reverse KL and is dispatched to that op.
/// </summary>
internal readonly struct SkewReverseKLOp(double alpha) : IDivergenceOp
{
    private readonly double _alpha = alpha;
    private readonly double _logAlpha = System.Math.Log(alpha);
    private readonly double _logOneMinusAlpha = System.Math.Log(1 - alpha);
    // α rounded to float once, when the op is made: the vector loop broadcasts a float (a double-to-float conversion
    // per iteration merges into its destination register and can chain the iterations together).
    private readonly float _alphaFloat = (float)alpha;

    public static bool IsDivergence => true;

    /// <summary>The vector form receives c = (1 − α) p and q.</summary>
    public (double P, double Q) VectorScales => (1 - _alpha, 1);

    public double Element(double p, double q, double logP, double logQ, out double qg)
    {
        if (q <= 0)
        {
            qg = 0;
            return 0;
        }

        double logR = OpMath.LogAddExp(_logAlpha + logQ, _logOneMinusAlpha + logP);
        double term = q * (logQ - logR);
        qg = term + q - (_alpha * q * System.Math.Exp(logQ - logR)); // q²/r as q·e^{log q − log r}: no 0/0 when both underflow
        return term;
    }

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    public TV Element<TS, TV>(TV p, TV q, TV logP, TV logQ, out TV qg)
        where TS : ISimd<TV>
        where TV : struct
    {
        // r = α q + c with c = (1 − α) p (scaled by the kernel), floored at the smallest normal float. q − α q²/r =
        // q · c/r (r − α q = c), which also spares the cancellation where q ≈ r.
        TV r = TS.Max(TS.MultiplyAdd(TS.Splat(_alphaFloat), q, p), TS.Splat(OpMath.MixtureFloor));
        // log q arrives finite (floored at −FLT_MAX) and c/r ≤ 1: q = 0 gives exactly 0 in both without a select.
        TV term = TS.Multiply(q, TS.Subtract(logQ, SimdMath.LogOfNormal<TS, TV>(r)));
        qg = TS.MultiplyAdd(q, TS.Divide(p, r), term);
        return term;
    }
}
