namespace Distillation.Kernels.Divergences;

/// <summary>
/// Total variation ½ Σ |p − q|; ∂L/∂q = ½ sign(q − p) with sign(0) = 0 (a subgradient at ties), so q·g = ½ q sign(q − p).
/// </summary>
internal readonly struct TotalVariationOp : IDivergenceOp
{
    public static bool IsDivergence => true;

    public static bool UsesLogs => false;

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
        TV half = TS.Splat(0.5f);
        TV halfQ = TS.Multiply(half, q);
        qg = TS.Select(TS.GreaterThan(q, p), halfQ, TS.Select(TS.LessThan(q, p), TS.Subtract(TS.Zero, halfQ), TS.Zero));
        return TS.Multiply(half, TS.Abs(TS.Subtract(p, q)));
    }
}
