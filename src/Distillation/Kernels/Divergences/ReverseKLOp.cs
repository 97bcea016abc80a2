namespace Distillation.Kernels.Divergences;

/// <summary>
/// Reverse KL(P_s ‖ P_t) = Σ q (log q − log p); ∂L/∂q = log q − log p + 1, so q·g = term + q and
/// dL/ds = q ⊙ (log q − log p − L)/T.
/// </summary>
internal readonly struct ReverseKLOp : IDivergenceOp
{
    public static bool IsDivergence => true;

    public static InfinityRule Infinity => InfinityRule.StudentMassWithoutTeacher;

    public double Element(double p, double q, double logP, double logQ, out double qg)
    {
        double term = q > 0 ? q * (logQ - logP) : 0;
        qg = term + q;
        return term;
    }

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    public TV Element<TS, TV>(TV p, TV q, TV logP, TV logQ, out TV qg)
        where TS : ISimd<TV>
        where TV : struct
    {
        TV term = TS.Select(TS.GreaterThan(q, TS.Zero), TS.Multiply(q, TS.Subtract(logQ, logP)), TS.Zero);
        qg = TS.Add(term, q);
        return term;
    }
}
