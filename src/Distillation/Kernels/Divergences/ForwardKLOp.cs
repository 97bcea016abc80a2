using System;

namespace Distillation.Kernels.Divergences;

/// <summary>Forward KL(P_t ‖ P_s) = Σ p (log p − log q); q·∂L/∂q = −p, so dL/ds = (q − p)/T.</summary>
internal readonly struct ForwardKLOp : IDivergenceOp
{
    public static bool IsDivergence => true;

    public (double P, double Q) VectorScales => (1, 1);

    public static InfinityRule Infinity => InfinityRule.TeacherMassWithoutStudent;

    public static TeacherWeightedSum WeightedSum => TeacherWeightedSum.LogRatio;

    public static double FromWeightedMean(double mean, double logZT, double logZS) => Math.Max(mean - logZT + logZS, 0);

    public double Element(double p, double q, double logP, double logQ, out double qg)
    {
        qg = -p;
        return p > 0 ? p * (logP - logQ) : 0;
    }

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    public TV Element<TS, TV>(TV p, TV q, TV logP, TV logQ, out TV qg)
        where TS : ISimd<TV>
        where TV : struct
    {
        qg = TS.Subtract(TS.Zero, p);
        return TS.Select(TS.GreaterThan(p, TS.Zero), TS.Multiply(p, TS.Subtract(logP, logQ)), TS.Zero);
    }
}
