namespace Distillation.Kernels.Divergences;

/// <summary>Soft-target cross-entropy −Σ p log q; q·∂L/∂q = −p, so dL/ds = (q − p)/T (the forward-KL gradient).</summary>
internal readonly struct SoftCrossEntropyOp : IDivergenceOp
{
    public static bool IsDivergence => false;

    public (double P, double Q) VectorScales => (1, 1);

    public static InfinityRule Infinity => InfinityRule.TeacherMassWithoutStudent;

    public static TeacherWeightedSum WeightedSum => TeacherWeightedSum.StudentLogit;

    public static double FromWeightedMean(double mean, double logZT, double logZS) => -(mean - logZS);

    public double Element(double p, double q, double logP, double logQ, out double qg)
    {
        qg = -p;
        return p > 0 ? -p * logQ : 0;
    }

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    public TV Element<TS, TV>(TV p, TV q, TV logP, TV logQ, out TV qg)
        where TS : ISimd<TV>
        where TV : struct
    {
        qg = TS.Subtract(TS.Zero, p);
        return TS.Select(TS.GreaterThan(p, TS.Zero), TS.Multiply(qg, logQ), TS.Zero);
    }
}
