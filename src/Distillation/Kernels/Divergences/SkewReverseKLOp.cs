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
    private readonly MixtureWeights _weights = new(alpha);

    public static bool IsDivergence => true;

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
        TV r = OpMath.Mixture<TS, TV>(q, p, _weights);
        // log q arrives finite (floored at −FLT_MAX) and q/r ≤ 1/α (r is floored at the smallest normal): q = 0 gives
        // exactly 0 in both without a select.
        TV term = TS.Multiply(q, TS.Subtract(logQ, SimdMath.LogOfNormal<TS, TV>(r)));
        qg = TS.Subtract(TS.Add(term, q), TS.Multiply(TS.Multiply(TS.Splat(_weights.W), q), TS.Divide(q, r)));
        return term;
    }
}
