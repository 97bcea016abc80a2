namespace Distillation.Kernels.Divergences;

/// <summary>
/// Generalized JSD(β) for β in (0, 1) (GKD): m = β p + (1 − β) q, L = β KL(p ‖ m) + (1 − β) KL(q ‖ m);
/// ∂L/∂q = (1 − β)(log q − log m), so dL/ds = (1 − β) q ⊙ (log(q/m) − KL(q ‖ m))/T. The ends β = 0 and β = 1
/// are forward and reverse KL and are dispatched to those ops.
/// </summary>
internal readonly struct GeneralizedJsdOp(double beta) : IDivergenceOp
{
    private readonly double _beta = beta;
    private readonly double _logBeta = System.Math.Log(beta);
    private readonly double _logOneMinusBeta = System.Math.Log(1 - beta);

    public static bool IsDivergence => true;

    /// <summary>The vector form receives a = β p and b = (1 − β) q.</summary>
    public (double P, double Q) VectorScales => (_beta, 1 - _beta);

    public double Element(double p, double q, double logP, double logQ, out double qg)
    {
        double logM = OpMath.LogAddExp(_logBeta + logP, _logOneMinusBeta + logQ);
        qg = q > 0 ? (1 - _beta) * q * (logQ - logM) : 0;
        return (p > 0 ? _beta * p * (logP - logM) : 0) + qg;
    }

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    public TV Element<TS, TV>(TV p, TV q, TV logP, TV logQ, out TV qg)
        where TS : ISimd<TV>
        where TV : struct
    {
        // a = βp and b = (1 − β)q arrive scaled (VectorScales), m = a + b: the terms a·(log p − log m) and
        // b·(log q − log m). The logs arrive finite (floored at −FLT_MAX), so a weight of 0 gives exactly 0 without a select.
        TV a = p, b = q;
        TV logM = SimdMath.LogOfNormal<TS, TV>(TS.Max(TS.Add(a, b), TS.Splat(OpMath.MixtureFloor)));
        qg = TS.Multiply(b, TS.Subtract(logQ, logM));
        return TS.MultiplyAdd(a, TS.Subtract(logP, logM), qg);
    }
}
