namespace Distillation.Kernels.Divergences;

/// <summary>
/// Total variation ½ Σ |p − q|; ∂L/∂q = ½ sign(q − p) with sign(0) = 0 (a subgradient at ties), so q·g = ½ q sign(q − p).
/// </summary>
internal readonly struct TotalVariationOp : IDivergenceOp
{
    public static bool IsDivergence => true;

    public static bool UsesLogs => false;

    public static bool SidesAlike => true;

    /// <summary>The vector form receives ½ p and ½ q.</summary>
    public (double P, double Q) VectorScales => (0.5, 0.5);

    public double Element(double p, double q, double logP, double logQ, out double qg)
    {
        qg = 0.5 * q * System.Math.Sign(q - p);
        return 0.5 * System.Math.Abs(p - q);
    }

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    public TV Element<TS, TV>(TV p, TV q, TV logP, TV logQ, out TV qg)
        where TS : ISimd<TV>
        where TV : struct
    {
        // p and q arrive halved (VectorScales): term |p − q|, q·g = ±q (0 at a tie).
        qg = TS.Select(TS.GreaterThan(q, p), q, TS.Select(TS.LessThan(q, p), TS.Subtract(TS.Zero, q), TS.Zero));
        return TS.Abs(TS.Subtract(p, q));
    }
}
