using System;
using System.Runtime.CompilerServices;
using Distillation.Kernels.Divergences;

namespace Distillation.Kernels;

/// <summary>
/// The vectorized row kernels, written once over <see cref="ISimd{TV}"/> and specialised by the JIT per width.
/// A row of n ≥ <c>TS.Count</c> values is processed in full vectors plus one overlapping last vector whose lanes
/// already seen are masked out (no scalar tail). Each input element is read from memory once and costs exactly one
/// exp per distribution; the later passes of a row run over data the first pass left in cache and in the per-thread
/// scratch rows.
/// </summary>
/// <remarks>
/// Replaces the unfused chain softmax(t/T), log_softmax(s/T), the divergence's elementwise terms, a sum, and autograd's
/// backward through the softmax. Partial sums are kept in float lanes for at most <see cref="FlushEvery"/> vectors and
/// then added in double.
/// </remarks>
internal static unsafe class FusedKernels
{
    /// <summary>Vectors accumulated in float before a partial sum is added in double.</summary>
    private const int FlushEvery = 64;

    /// <summary>
    /// One row of a general divergence over teacher logits (or log-probabilities), in three passes of which only the
    /// first reads memory: <see cref="ChunkedPass{TS, TV, TOp}"/> (maxima, exponentials, Z, the +∞ rule); per chunk from
    /// cache, p, q, log p = (t − max_t)/T − log Z_t and log q likewise, the op's term and q·g (stored in the gradient
    /// buffer); then gradient = coef · (qg − q · Σ qg), or coef · (q − p) for a row whose value is +∞.
    /// Scratch: <paramref name="expT"/>, <paramref name="expS"/> of n floats and the chunk shifts.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static RowStatus DivergenceRow<TS, TV, TOp>(in TOp op, float* teacher, float* student, int n, float invT, float* gradient, float coef, float* expT, float* expS, float* shifts, bool streaming, out double value)
        where TS : ISimd<TV>
        where TV : struct
        where TOp : struct, IDivergenceOp
    {
        value = 0;
        RowStatus status = ChunkedPass<TS, TV, TOp>(teacher, student, n, invT, expT, expS, shifts, out RowStatistics row);
        if (status != RowStatus.Ok)
        {
            return status;
        }

        TV vInvT = TS.Splat(invT), vMaxT = TS.Splat((float)row.MaxT), vMaxS = TS.Splat((float)row.MaxS), vLowest = TS.Splat(float.MinValue);
        TV vLogZT = TS.Splat((float)Math.Log(row.ZT)), vLogZS = TS.Splat((float)Math.Log(row.ZS));
        double loss = 0, sumQg = 0;
        int w = TS.Count, chunk = 0;
        for (int c0 = 0; c0 < n; chunk++)
        {
            int len = ChunkLength(n - c0);
            (float cp, float cq) = row.ChunkFactors(shifts, chunk, invT);
            TV vCp = TS.Splat(cp), vCq = TS.Splat(cq), accLoss = TS.Zero, accQg = TS.Zero;
            float* t = teacher + c0, s = student + c0, et = expT + c0, es = expS + c0, g = gradient + c0;
            for (int i = 0; i < len; i += w)
            {
                int at = Math.Min(i, len - w);
                TV keep = TS.TailMask(Math.Min(w, len - i));
                // Floored at −FLT_MAX: a finite logit whose gap ÷ T leaves float's range keeps a finite (huge) log, so the
                // value stays finite where the truth is; a −∞ logit (weight 0, or +∞ by the support rule) is unaffected.
                TV logP = TS.Max(TS.MultiplyAdd(TS.Subtract(TS.Load(t + at), vMaxT), vInvT, TS.Subtract(TS.Zero, vLogZT)), vLowest);
                TV logQ = TS.Max(TS.MultiplyAdd(TS.Subtract(TS.Load(s + at), vMaxS), vInvT, TS.Subtract(TS.Zero, vLogZS)), vLowest);
                TV term = op.Element<TS, TV>(TS.Multiply(TS.Load(et + at), vCp), TS.Multiply(TS.Load(es + at), vCq), logP, logQ, out TV qg);
                accLoss = TS.Add(accLoss, TS.Select(keep, term, TS.Zero));
                accQg = TS.Add(accQg, TS.Select(keep, qg, TS.Zero));
                if (gradient != null)
                {
                    TS.Store(qg, g + at);
                }
            }

            loss += TS.SumAcross(accLoss);
            sumQg += TS.SumAcross(accQg);
            c0 += len;
        }

        // +∞ exactly where the op's support rule says so, whatever underflowed in float.
        bool infinite = row.Infinite;
        value = infinite ? double.PositiveInfinity : TOp.IsDivergence ? Math.Max(loss, 0) : loss;
        if (gradient == null)
        {
            return RowStatus.Ok;
        }

        chunk = 0;
        for (int c0 = 0; c0 < n; chunk++)
        {
            int len = ChunkLength(n - c0);
            (float cp, float cq) = row.ChunkFactors(shifts, chunk, invT);
            if (infinite)
            {
                // An infinite row keeps the finite forward-KL gradient coef · (q − p).
                if (streaming)
                {
                    RescaleStreaming<TS, TV>(expS + c0, coef * cq, expT + c0, -coef * cp, gradient + c0, len);
                }
                else
                {
                    Rescale<TS, TV>(expS + c0, coef * cq, expT + c0, -coef * cp, gradient + c0, len);
                }
            }
            else
            {
                // gradient = coef · (qg − Σqg · q), with qg stored in the gradient buffer by the pass above; the difference
                // is formed before the (possibly huge) coefficient, so a zero never meets an overflowed product.
                DifferenceTimes<TS, TV>(gradient + c0, expS + c0, (float)(-sumQg * cq), coef, len);
            }

            c0 += len;
        }

        return RowStatus.Ok;
    }

    /// <summary>Columns per chunk: a chunk's inputs and exponentials stay in L1.</summary>
    internal const int Chunk = 2048;

    /// <summary>Scratch floats the chunked kernels need for their chunk maxima.</summary>
    public static int ChunkShiftFloats(int n) => 2 * ((n / (Chunk / 2)) + 2);

    /// <summary>The length of the chunk starting <paramref name="remaining"/> columns before the row's end (the last two share the rest evenly).</summary>
    private static int ChunkLength(int remaining) => remaining <= Chunk ? remaining : remaining < 2 * Chunk ? remaining / 2 : Chunk;

    /// <summary>
    /// One row of a teacher-weighted op (forward KL, soft CE, the teacher's entropy) in a single pass over memory (see
    /// <see cref="ChunkedPass{TS, TV, TOp}"/>): the value follows from the mean of one teacher-weighted sum; the
    /// gradient coef · (q − p) rescales the stored exponentials per chunk.
    /// </summary>
    /// <remarks>
    /// Replaces softmax(t/T), log_softmax(s/T), Σ p (log p − log q) and autograd's backward: one exp per element per
    /// distribution, no log per element, inputs read once and the gradient written once.
    /// </remarks>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static RowStatus TeacherWeightedRow<TS, TV, TOp>(float* teacher, float* student, int n, float invT, float* gradient, float coef, float* expT, float* expS, float* shifts, bool streaming, out double value)
        where TS : ISimd<TV>
        where TV : struct
        where TOp : struct, IDivergenceOp
    {
        value = 0;
        RowStatus status = ChunkedPass<TS, TV, TOp>(teacher, student, n, invT, expT, expS, shifts, out RowStatistics row);
        if (status != RowStatus.Ok)
        {
            return status;
        }

        value = row.Infinite ? double.PositiveInfinity : TOp.FromWeightedMean(row.A / row.ZT, Math.Log(row.ZT), Math.Log(row.ZS));
        if (gradient == null)
        {
            return RowStatus.Ok;
        }

        int chunk = 0;
        for (int c0 = 0; c0 < n; chunk++)
        {
            int len = ChunkLength(n - c0);
            (float cp, float cq) = row.ChunkFactors(shifts, chunk, invT);
            if (streaming)
                {
                    RescaleStreaming<TS, TV>(expS + c0, coef * cq, expT + c0, -coef * cp, gradient + c0, len);
                }
                else
                {
                    Rescale<TS, TV>(expS + c0, coef * cq, expT + c0, -coef * cp, gradient + c0, len);
                }
            c0 += len;
        }

        return RowStatus.Ok;
    }

    /// <summary>
    /// The first pass of the chunked kernels, the only one that reads the inputs from memory. Per chunk of at most
    /// <see cref="Chunk"/> columns: the chunk maxima, then x = (v − max)/T, e_t = exp(x_t) and e_s = exp(x_s) (stored in
    /// scratch), Z_t, Z_s and, for teacher-weighted ops, A = Σ e_t · f(x_t, x_s); the chunks are merged online in
    /// double into statistics relative to the row maxima. The op's +∞ rule is checked on the raw logits, and only in
    /// chunks where the relevant side has a −∞ at all.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static RowStatus ChunkedPass<TS, TV, TOp>(float* teacher, float* student, int n, float invT, float* expT, float* expS, float* shifts, out RowStatistics row)
        where TS : ISimd<TV>
        where TV : struct
        where TOp : struct, IDivergenceOp
    {
        // Running statistics relative to the running maxima maxT, maxS (raw logit units): zT = Σ e^{(t − maxT)/T},
        // zS likewise, a = Σ e^{(t − maxT)/T} · f((t − maxT)/T, (s − maxS)/T) with f = α x_t + β x_s.
        (double alpha, double beta) = TOp.WeightedSum switch
        {
            TeacherWeightedSum.LogRatio => (1.0, -1.0),
            TeacherWeightedSum.StudentLogit => (0.0, 1.0),
            TeacherWeightedSum.TeacherLogit => (1.0, 0.0),
            _ => (0.0, 0.0),
        };
        double maxT = double.NegativeInfinity, maxS = double.NegativeInfinity, zT = 0, zS = 0, a = 0;
        bool infinite = false;
        row = default;
        int chunks = 0;
        for (int c0 = 0; c0 < n; chunks++)
        {
            int len = ChunkLength(n - c0);
            float* t = teacher + c0, s = student + c0;
            float mt = MaxOf<TS, TV>(t, len, TOp.Infinity == InfinityRule.StudentMassWithoutTeacher, out float minT);
            float ms = MaxOf<TS, TV>(s, len, TOp.Infinity == InfinityRule.TeacherMassWithoutStudent, out float minS);
            if (float.IsNaN(mt) || float.IsPositiveInfinity(mt))
            {
                return RowStatus.TeacherInvalidValue;
            }

            if (float.IsNaN(ms) || float.IsPositiveInfinity(ms))
            {
                return RowStatus.StudentInvalidValue;
            }

            shifts[2 * chunks] = mt;
            shifts[(2 * chunks) + 1] = ms;
            ChunkSums<TS, TV, TOp>(t, s, len, ShiftOf(mt), ShiftOf(ms), invT, expT + c0, expS + c0, out double cz, out double czs, out double ca);
            if (double.IsNaN(cz))
            {
                return RowStatus.TeacherInvalidValue;
            }

            if (double.IsNaN(czs))
            {
                return RowStatus.StudentInvalidValue;
            }

            infinite = infinite || TOp.Infinity switch
            {
                InfinityRule.TeacherMassWithoutStudent => float.IsNegativeInfinity(minS) && MassWithoutOther<TS, TV>(t, s, len),
                InfinityRule.StudentMassWithoutTeacher => float.IsNegativeInfinity(minT) && MassWithoutOther<TS, TV>(s, t, len),
                _ => false,
            };

            // Re-express the running statistics relative to the new maxima, then add the chunk's (relative to its own
            // shifts). A side with weight 0 (α or β) is left out, so −∞ maxima never meet 0 · ∞.
            double newMaxT = cz > 0 ? Math.Max(maxT, mt) : maxT;
            double newMaxS = czs > 0 ? Math.Max(maxS, ms) : maxS;
            if (cz > 0)
            {
                double keep = Math.Exp((maxT - newMaxT) * invT), add = Math.Exp((mt - newMaxT) * invT);
                double old = zT > 0 ? a + (zT * Offset(alpha, maxT - newMaxT, beta, maxS - newMaxS) * invT) : 0;
                double mine = ca + (cz * Offset(alpha, mt - newMaxT, beta, czs > 0 ? ms - newMaxS : 0) * invT);
                a = Scaled(keep, old) + (add * mine);
                zT = Scaled(keep, zT) + (add * cz);
                maxT = newMaxT;
            }
            else if (zT > 0 && newMaxS != maxS)
            {
                a += zT * Offset(0, 0, beta, maxS - newMaxS) * invT;
            }

            if (czs > 0)
            {
                zS = Scaled(Math.Exp((maxS - newMaxS) * invT), zS) + (czs * Math.Exp((ms - newMaxS) * invT));
                maxS = newMaxS;
            }

            c0 += len;
        }

        if (zT == 0)
        {
            return RowStatus.TeacherNoMass;
        }

        if (zS == 0)
        {
            return RowStatus.StudentNoMass;
        }

        row = new RowStatistics(maxT, maxS, zT, zS, a, infinite);
        return RowStatus.Ok;
    }

    /// <summary>Whether some column has a finite <paramref name="mass"/> logit and a −∞ <paramref name="other"/> logit (checked only if <paramref name="other"/> has a −∞ at all).</summary>
    private static bool MassWithoutOther<TS, TV>(float* mass, float* other, int n)
        where TS : ISimd<TV>
        where TV : struct
    {
        TV negInf = TS.Splat(float.NegativeInfinity);
        TV hits = TS.Zero;
        int w = TS.Count;
        for (int i = 0; i < n; i += w)
        {
            int at = Math.Min(i, n - w);
            TV impossible = TS.LessThan(TS.Load(other + at), TS.Splat(float.MinValue));
            hits = TS.Add(hits, TS.Select(impossible, TS.Select(TS.GreaterThan(TS.Load(mass + at), negInf), TS.Splat(1f), TS.Zero), TS.Zero));
        }

        return TS.SumAcross(hits) > 0;
    }

    /// <summary>α·dT + β·dS, leaving out a side whose weight is 0.</summary>
    private static double Offset(double alpha, double dT, double beta, double dS) => (alpha == 0 ? 0 : alpha * dT) + (beta == 0 ? 0 : beta * dS);

    /// <summary>The shift a chunk's values are taken relative to: its maximum, or 0 for a chunk with no possible token.</summary>
    private static float ShiftOf(float max) => float.IsNegativeInfinity(max) ? 0 : max;

    /// <summary>A row's merged statistics from <see cref="ChunkedPass{TS, TV, TOp}"/>, relative to the row maxima (raw logit units).</summary>
    private readonly record struct RowStatistics(double MaxT, double MaxS, double ZT, double ZS, double A, bool Infinite)
    {
        /// <summary>p_j = e_t,j · cp and q_j = e_s,j · cq for the stored exponentials of chunk <paramref name="chunk"/>.</summary>
        public (float Cp, float Cq) ChunkFactors(float* shifts, int chunk, float invT)
        {
            float mt = shifts[2 * chunk], ms = shifts[(2 * chunk) + 1];
            return (float.IsNegativeInfinity(mt) ? 0 : (float)(Math.Exp((mt - MaxT) * invT) / ZT),
                    float.IsNegativeInfinity(ms) ? 0 : (float)(Math.Exp((ms - MaxS) * invT) / ZS));
        }
    }

    /// <summary>
    /// One row of the label loss at temperature T (see <see cref="ReferenceKernels.LabelRow"/>):
    /// L = (1 − ε)(lse − s_y/T) + ε (lse − mean_j s_j/T) with lse = log Σ exp(s/T), dL/ds = coef · (q − (1 − ε) onehot(y) − ε/V),
    /// written or, when <paramref name="accumulate"/>, added. Scratch: <paramref name="expS"/> of n floats.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static RowStatus LabelRow<TS, TV>(float* student, int n, int label, float smoothing, float invT, float* gradient, float coef, bool accumulate, float* expS, out double value)
        where TS : ISimd<TV>
        where TV : struct
    {
        value = 0;
        float max = MaxOf<TS, TV>(student, n);
        RowStatus status = CheckMax(max, isTeacher: false);
        if (status != RowStatus.Ok)
        {
            return status;
        }

        double sum = ExpAndSum<TS, TV>(student, n, max, invT, expS);
        if (!double.IsFinite(sum))
        {
            return RowStatus.StudentInvalidValue;
        }

        // −log q_j = (max − s_j)/T + log Z, with the maximum subtracted first so that log Z survives huge logits.
        double logZ = Math.Log(sum);
        double labelTerm = smoothing < 1 ? (1 - smoothing) * ((((double)max - student[label]) * invT) + logZ) : 0;
        value = labelTerm + (smoothing > 0 ? smoothing * ((-SumBelow<TS, TV>(student, n, max) / n * invT) + logZ) : 0);
        if (gradient == null)
        {
            return RowStatus.Ok;
        }

        float invZ = (float)(1 / sum);
        // Without accumulation the second operand is the (finite) scratch row times 0: the caller's buffer is never read.
        Rescale<TS, TV>(expS, coef * invZ, accumulate ? gradient : expS, accumulate ? 1f : 0f, gradient, n, -coef * smoothing / n);
        gradient[label] -= coef * (1 - smoothing);
        return RowStatus.Ok;
    }

    /// <summary>Σ_j exp(x_j − max) of one row (n ≥ TS.Count) and its maximum, without storing anything.</summary>
    public static double SumExpBelowMax<TS, TV>(float* x, int n, out float max)
        where TS : ISimd<TV>
        where TV : struct
    {
        max = MaxOf<TS, TV>(x, n);
        if (!float.IsFinite(max))
        {
            return double.NaN;
        }

        TV vMax = TS.Splat(max), acc = TS.Zero;
        double total = 0;
        int w = TS.Count, block = 0;
        for (int i = 0; i < n; i += w)
        {
            int at = Math.Min(i, n - w);
            acc = TS.Add(acc, TS.Select(TS.TailMask(Math.Min(w, n - i)), SimdMath.Exp<TS, TV>(TS.Subtract(TS.Load(x + at), vMax)), TS.Zero));
            if (++block == FlushEvery)
            {
                total += TS.SumAcross(acc);
                acc = TS.Zero;
                block = 0;
            }
        }

        return total + TS.SumAcross(acc);
    }

    /// <summary>w · x, with 0 · (±∞) = 0: a weight that underflowed to 0 drops its term.</summary>
    private static double Scaled(double w, double x) => w == 0 ? 0 : w * x;

    /// <summary>The sums of one chunk of <see cref="ChunkedPass{TS, TV, TOp}"/> (see there), exponentials stored.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void ChunkSums<TS, TV, TOp>(float* t, float* s, int n, float shiftT, float shiftS, float invT, float* expT, float* expS, out double zT, out double zS, out double a)
        where TS : ISimd<TV>
        where TV : struct
        where TOp : struct, IDivergenceOp
    {
        // x = (v − shift)/T, exact at the chunk maximum; −∞ stays −∞ and its exponential is exactly 0.
        TV vInvT = TS.Splat(invT), vShiftT = TS.Splat(shiftT), vShiftS = TS.Splat(shiftS), vLowest = TS.Splat(float.MinValue);
        TV accZT = TS.Zero, accZS = TS.Zero, accA = TS.Zero;
        int w = TS.Count, i = 0;
        for (; i + w <= n; i += w)
        {
            TV xt = TS.Multiply(TS.Subtract(TS.Load(t + i), vShiftT), vInvT);
            TV xs = TS.Multiply(TS.Subtract(TS.Load(s + i), vShiftS), vInvT);
            TV et = SimdMath.Exp<TS, TV>(xt), es = SimdMath.Exp<TS, TV>(xs);
            TS.Store(et, expT + i);
            TS.Store(es, expS + i);
            accZT = TS.Add(accZT, et);
            accZS = TS.Add(accZS, es);
            accA = AccumulateWeighted<TS, TV, TOp>(accA, et, xt, xs, vLowest);
        }

        if (i < n)
        {
            // The overlapping last vector: its lanes already summed are masked out; the stores rewrite equal values.
            int at = n - w;
            TV keep = TS.TailMask(n - i);
            TV xt = TS.Multiply(TS.Subtract(TS.Load(t + at), vShiftT), vInvT);
            TV xs = TS.Multiply(TS.Subtract(TS.Load(s + at), vShiftS), vInvT);
            TV et = SimdMath.Exp<TS, TV>(xt), es = SimdMath.Exp<TS, TV>(xs);
            TS.Store(et, expT + at);
            TS.Store(es, expS + at);
            accZT = TS.Add(accZT, TS.Select(keep, et, TS.Zero));
            accZS = TS.Add(accZS, TS.Select(keep, es, TS.Zero));
            accA = AccumulateWeighted<TS, TV, TOp>(accA, TS.Select(keep, et, TS.Zero), xt, xs, vLowest);
        }

        zT = TS.SumAcross(accZT);
        zS = TS.SumAcross(accZS);
        a = TS.SumAcross(accA);
    }

    /// <summary>
    /// acc + e_t · f(x_t, x_s) for the op's teacher-weighted sum, with x floored at −FLT_MAX so that a −∞ logit gives a
    /// finite product (0 when its weight is 0); where the value is really +∞ the support rule says so separately.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static TV AccumulateWeighted<TS, TV, TOp>(TV acc, TV et, TV xt, TV xs, TV lowest)
        where TS : ISimd<TV>
        where TV : struct
        where TOp : struct, IDivergenceOp => TOp.WeightedSum switch
        {
            TeacherWeightedSum.LogRatio => TS.MultiplyAdd(et, TS.Subtract(TS.Max(xt, lowest), TS.Max(xs, lowest)), acc),
            TeacherWeightedSum.StudentLogit => TS.MultiplyAdd(et, TS.Max(xs, lowest), acc),
            TeacherWeightedSum.TeacherLogit => TS.MultiplyAdd(et, TS.Max(xt, lowest), acc),
            _ => acc,
        };

    /// <summary>
    /// destination_j = a_j · ca + b_j · cb for a destination that is neither source, written with non-temporal stores
    /// (callers that read the gradient again right away, as the combined objective does, ask for ordinary stores
    /// instead). The head up to
    /// the first aligned vector and the overlapping tail use ordinary stores; overlapping lanes get equal values.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void RescaleStreaming<TS, TV>(float* a, float ca, float* b, float cb, float* destination, int n)
        where TS : ISimd<TV>
        where TV : struct
    {
        int w = TS.Count;
        if (!TS.HasNonTemporalStore || n < 4 * w)
        {
            Rescale<TS, TV>(a, ca, b, cb, destination, n);
            return;
        }

        TV vA = TS.Splat(ca), vB = TS.Splat(cb);
        TS.Store(TS.MultiplyAdd(TS.Load(a), vA, TS.Multiply(TS.Load(b), vB)), destination);
        int i = (int)((((nuint)destination + (nuint)(w * sizeof(float)) - 1) & ~(nuint)((w * sizeof(float)) - 1)) - (nuint)destination) / sizeof(float);
        for (; i + w <= n; i += w)
        {
            TS.StoreNonTemporal(TS.MultiplyAdd(TS.Load(a + i), vA, TS.Multiply(TS.Load(b + i), vB)), destination + i);
        }

        if (i < n)
        {
            int at = n - w;
            TS.Store(TS.MultiplyAdd(TS.Load(a + at), vA, TS.Multiply(TS.Load(b + at), vB)), destination + at);
        }
    }

    private static RowStatus CheckMax(float max, bool isTeacher) =>
        float.IsNaN(max) || float.IsPositiveInfinity(max) ? (isTeacher ? RowStatus.TeacherInvalidValue : RowStatus.StudentInvalidValue)
        : float.IsNegativeInfinity(max) ? (isTeacher ? RowStatus.TeacherNoMass : RowStatus.StudentNoMass)
        : RowStatus.Ok;

    /// <summary>max_j x_j (the hardware max: a NaN may or may not show; the exponentials catch it). The overlapping last vector needs no mask.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static float MaxOf<TS, TV>(float* x, int n)
        where TS : ISimd<TV>
        where TV : struct => MaxOf<TS, TV>(x, n, withMin: false, out _);

    /// <summary>max_j x_j and, when <paramref name="withMin"/>, min_j x_j in the same pass (+∞ otherwise).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static float MaxOf<TS, TV>(float* x, int n, bool withMin, out float min)
        where TS : ISimd<TV>
        where TV : struct
    {
        int w = TS.Count;
        TV m0 = TS.Load(x), m1 = TS.Load(x + n - w);
        TV lo = TS.Min(m0, m1);
        int i = w;
        for (; i + (2 * w) <= n; i += 2 * w)
        {
            TV a = TS.Load(x + i), b = TS.Load(x + i + w);
            m0 = TS.Max(m0, a);
            m1 = TS.Max(m1, b);
            if (withMin)
            {
                lo = TS.Min(lo, TS.Min(a, b));
            }
        }

        for (; i < n; i += w)
        {
            TV a = TS.Load(x + Math.Min(i, n - w));
            m0 = TS.Max(m0, a);
            if (withMin)
            {
                lo = TS.Min(lo, a);
            }
        }

        min = withMin ? -TS.MaxAcross(TS.Subtract(TS.Zero, lo)) : float.PositiveInfinity;
        return TS.MaxAcross(TS.Max(m0, m1));
    }

    /// <summary>destination_j = (destination_j + b_j · cb) · c, in place; the overlapping last vector keeps the lanes already written.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void DifferenceTimes<TS, TV>(float* destination, float* b, float cb, float c, int n)
        where TS : ISimd<TV>
        where TV : struct
    {
        TV vB = TS.Splat(cb), vC = TS.Splat(c);
        int w = TS.Count, i = 0;
        for (; i + w <= n; i += w)
        {
            TS.Store(TS.Multiply(TS.MultiplyAdd(TS.Load(b + i), vB, TS.Load(destination + i)), vC), destination + i);
        }

        if (i < n)
        {
            int at = n - w;
            TV old = TS.Load(destination + at);
            TV fresh = TS.Multiply(TS.MultiplyAdd(TS.Load(b + at), vB, old), vC);
            TS.Store(TS.Select(TS.TailMask(n - i), fresh, old), destination + at);
        }
    }

    /// <summary>
    /// Σ_j (x_j − shift) in double (label smoothing): each lane is widened to double before the shift is taken off,
    /// so logits near ±float.MaxValue neither overflow nor lose the small differences; −∞ entries make it −∞.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static double SumBelow<TS, TV>(float* x, int n, float shift)
        where TS : ISimd<TV>
        where TV : struct
    {
        var vShift = System.Runtime.Intrinsics.Vector256.Create((double)shift);
        var acc = System.Runtime.Intrinsics.Vector256<double>.Zero;
        int j = 0;
        if (System.Runtime.Intrinsics.Vector256.IsHardwareAccelerated)
        {
            for (; j + 8 <= n; j += 8)
            {
                var v = System.Runtime.Intrinsics.Vector256.Load(x + j);
                acc += System.Runtime.Intrinsics.Vector256.WidenLower(v) - vShift;
                acc += System.Runtime.Intrinsics.Vector256.WidenUpper(v) - vShift;
            }
        }

        double total = System.Runtime.Intrinsics.Vector256.Sum(acc);
        for (; j < n; j++)
        {
            total += (double)x[j] - shift;
        }

        return total;
    }

    /// <summary>Σ_j x_j in double (used by label smoothing; −∞ entries make it −∞).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static double SumOf<TS, TV>(float* x, int n)
        where TS : ISimd<TV>
        where TV : struct
    {
        double total = 0;
        TV acc = TS.Zero;
        int w = TS.Count, block = 0;
        for (int i = 0; i < n; i += w)
        {
            int at = Math.Min(i, n - w);
            acc = TS.Add(acc, TS.Select(TS.TailMask(Math.Min(w, n - i)), TS.Load(x + at), TS.Zero));
            if (++block == FlushEvery)
            {
                total += TS.SumAcross(acc);
                acc = TS.Zero;
                block = 0;
            }
        }

        return total + TS.SumAcross(acc);
    }

    /// <summary>e_j = exp((x_j − max) · invT) stored in <paramref name="exps"/>; returns Σ_j e_j in double.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static double ExpAndSum<TS, TV>(float* x, int n, float max, float invT, float* exps)
        where TS : ISimd<TV>
        where TV : struct
    {
        TV vMax = TS.Splat(max), vInvT = TS.Splat(invT);
        double total = 0;
        TV acc = TS.Zero;
        int w = TS.Count, block = 0;
        for (int i = 0; i < n; i += w)
        {
            int at = Math.Min(i, n - w);
            TV e = SimdMath.Exp<TS, TV>(TS.Multiply(TS.Subtract(TS.Load(x + at), vMax), vInvT));
            TS.Store(e, exps + at);
            acc = TS.Add(acc, TS.Select(TS.TailMask(Math.Min(w, n - i)), e, TS.Zero));
            if (++block == FlushEvery)
            {
                total += TS.SumAcross(acc);
                acc = TS.Zero;
                block = 0;
            }
        }

        return total + TS.SumAcross(acc);
    }

    /// <summary>
    /// Validates probabilities (≥ 0, finite, Σ within tolerance of 1) and writes log p_j to <paramref name="logs"/>.
    /// </summary>
    internal static RowStatus LogOfProbabilities<TS, TV>(float* p, int n, float* logs)
        where TS : ISimd<TV>
        where TV : struct
    {
        // max(−p) > 0 finds a negative entry and propagates NaN; the sum finds +∞.
        TV negMax = TS.Splat(float.NegativeInfinity);
        double total = 0;
        TV acc = TS.Zero;
        int w = TS.Count, block = 0;
        for (int i = 0; i < n; i += w)
        {
            int at = Math.Min(i, n - w);
            TV v = TS.Load(p + at);
            negMax = TS.Max(negMax, TS.Subtract(TS.Zero, v));
            acc = TS.Add(acc, TS.Select(TS.TailMask(Math.Min(w, n - i)), v, TS.Zero));
            TS.Store(TS.Log(v), logs + at);
            if (++block == FlushEvery)
            {
                total += TS.SumAcross(acc);
                acc = TS.Zero;
                block = 0;
            }
        }

        total += TS.SumAcross(acc);
        float mostNegative = TS.MaxAcross(negMax);
        if (float.IsNaN(mostNegative) || mostNegative > 0 || !double.IsFinite(total))
        {
            return RowStatus.TeacherInvalidValue;
        }

        return Math.Abs(total - 1) > TeacherDistribution.ProbabilitySumTolerance ? RowStatus.TeacherBadSum : RowStatus.Ok;
    }

    /// <summary>
    /// destination_j = a_j · ca + b_j · cb + c. The overlapping last vector keeps the lanes already written, so
    /// <paramref name="destination"/> may be <paramref name="a"/> itself.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Rescale<TS, TV>(float* a, float ca, float* b, float cb, float* destination, int n, float c = 0f)
        where TS : ISimd<TV>
        where TV : struct
    {
        TV vA = TS.Splat(ca), vB = TS.Splat(cb), vC = TS.Splat(c);
        int w = TS.Count, i = 0;
        for (; i + w <= n; i += w)
        {
            TS.Store(TS.MultiplyAdd(TS.Load(a + i), vA, TS.MultiplyAdd(TS.Load(b + i), vB, vC)), destination + i);
        }

        if (i < n)
        {
            int at = n - w;
            TV fresh = TS.MultiplyAdd(TS.Load(a + at), vA, TS.MultiplyAdd(TS.Load(b + at), vB, vC));
            TS.Store(TS.Select(TS.TailMask(n - i), fresh, TS.Load(destination + at)), destination + at);
        }
    }
}
