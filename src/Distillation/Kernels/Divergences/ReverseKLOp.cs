namespace Distillation.Kernels.Divergences;

/// <summary>
/// Reverse KL(P_s ‖ P_t) = Σ q (log q − log p); ∂L/∂q = log q − log p + 1, so q·g = term + q and
/// dL/ds = q ⊙ (log q − log p − L)/T.
/// </summary>
internal readonly struct ReverseKLOp : IDivergenceOp
{
    public static bool IsDivergence => true;

    public (double P, double Q) VectorScales => (1, 1);

    public static InfinityRule Infinity => InfinityRule.StudentMassWithoutTeacher;

    public static bool StudentWeighted => true;

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

/// <summary>
/// Reverse KL seen from the student: KL(P_s ‖ P_t) is forward KL with the two sides swapped, so the single-pass first
/// pass runs with the student as its first side (weights e_s, sum Σ e_s (x_s − x_t)) and stores the log-ratio for the
/// gradient (see <see cref="FusedKernels.StudentWeightedRow{TS, TV}"/>). Used only there.
/// </summary>
internal readonly struct StudentFirstReverseKLOp : IDivergenceOp
{
    public static bool IsDivergence => true;

    public (double P, double Q) VectorScales => (1, 1);

    public static InfinityRule Infinity => InfinityRule.TeacherMassWithoutStudent;

    public static TeacherWeightedSum WeightedSum => TeacherWeightedSum.LogRatio;

    public static bool StoresLogRatio => true;

    public static double FromWeightedMean(double mean, double logZT, double logZS) => ForwardKLOp.FromWeightedMean(mean, logZT, logZS);

    public double Element(double p, double q, double logP, double logQ, out double qg) => default(ForwardKLOp).Element(p, q, logP, logQ, out qg);

    public TV Element<TS, TV>(TV p, TV q, TV logP, TV logQ, out TV qg)
        where TS : ISimd<TV>
        where TV : struct => default(ForwardKLOp).Element<TS, TV>(p, q, logP, logQ, out qg);
}
