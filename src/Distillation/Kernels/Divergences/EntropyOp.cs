namespace Distillation.Kernels.Divergences;

/// <summary>
/// The teacher side's entropy H(p) = −Σ p log p (for metrics; the student side is ignored and no gradient is
/// meaningful). Teacher-weighted, so it runs in the single-pass kernel from E_p[log p].
/// </summary>
internal readonly struct EntropyOp : IDivergenceOp
{
    public static bool IsDivergence => false;

    public (double P, double Q) VectorScales => (1, 1);

    public static TeacherWeightedSum WeightedSum => TeacherWeightedSum.TeacherLogit;

    public static double FromWeightedMean(double mean, double logZT, double logZS) => -(mean - logZT);

    public double Element(double p, double q, double logP, double logQ, out double qg)
    {
        qg = 0;
        return p > 0 ? -p * logP : 0;
    }

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    public TV Element<TS, TV>(TV p, TV q, TV logP, TV logQ, out TV qg)
        where TS : ISimd<TV>
        where TV : struct
    {
        qg = TS.Zero;
        return TS.Select(TS.GreaterThan(p, TS.Zero), TS.Subtract(TS.Zero, TS.Multiply(p, logP)), TS.Zero);
    }
}
