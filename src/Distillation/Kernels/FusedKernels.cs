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
    /// One divergence row over teacher logits (or log-probabilities). Scratch: <paramref name="expT"/> and
    /// <paramref name="expS"/> hold n floats each.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static RowStatus DivergenceRow<TS, TV, TOp>(in TOp op, float* teacher, float* student, int n, float invT, float* gradient, float coef, float* expT, float* expS, out double value)
        where TS : ISimd<TV>
        where TV : struct
        where TOp : struct, IDivergenceOp
    {
        value = 0;

        float maxT = MaxOf<TS, TV>(teacher, n), maxS = MaxOf<TS, TV>(student, n);
        RowStatus status = CheckMax(maxT, isTeacher: true);
        if (status == RowStatus.Ok)
        {
            status = CheckMax(maxS, isTeacher: false);
        }

        if (status != RowStatus.Ok)
        {
            return status;
        }

        double sumT = ExpAndSum<TS, TV>(teacher, n, maxT, invT, expT);
        double sumS = ExpAndSum<TS, TV>(student, n, maxS, invT, expS);
        if (!double.IsFinite(sumT))
        {
            return RowStatus.TeacherInvalidValue;
        }

        if (!double.IsFinite(sumS))
        {
            return RowStatus.StudentInvalidValue;
        }

        // log p_j = (t_j − max_t)/T − log Z_t and p_j = e_t,j / Z_t; likewise for the student.
        float logZT = (float)Math.Log(sumT), logZS = (float)Math.Log(sumS);
        float invZT = (float)(1 / sumT), invZS = (float)(1 / sumS);
        TV vInvT = TS.Splat(invT), vMaxT = TS.Splat(maxT), vMaxS = TS.Splat(maxS);
        TV vLogZT = TS.Splat(logZT), vLogZS = TS.Splat(logZS), vInvZT = TS.Splat(invZT), vInvZS = TS.Splat(invZS);

        double loss = 0, sumQg = 0;
        TV accLoss = TS.Zero, accQg = TS.Zero;
        int w = TS.Count, block = 0;
        for (int i = 0; i < n; i += w)
        {
            int at = Math.Min(i, n - w);
            TV keep = TS.TailMask(Math.Min(w, n - i));
            TV logP = TS.Subtract(TS.Multiply(TS.Subtract(TS.Load(teacher + at), vMaxT), vInvT), vLogZT);
            TV logQ = TS.Subtract(TS.Multiply(TS.Subtract(TS.Load(student + at), vMaxS), vInvT), vLogZS);
            TV p = TS.Multiply(TS.Load(expT + at), vInvZT);
            TV q = TS.Multiply(TS.Load(expS + at), vInvZS);
            TV term = op.Element<TS, TV>(p, q, logP, logQ, out TV qg);
            accLoss = TS.Add(accLoss, TS.Select(keep, term, TS.Zero));
            accQg = TS.Add(accQg, TS.Select(keep, qg, TS.Zero));
            if (gradient != null)
            {
                TS.Store(qg, gradient + at);
            }

            if (++block == FlushEvery)
            {
                loss += TS.SumAcross(accLoss);
                sumQg += TS.SumAcross(accQg);
                accLoss = accQg = TS.Zero;
                block = 0;
            }
        }

        loss += TS.SumAcross(accLoss);
        sumQg += TS.SumAcross(accQg);
        value = TOp.IsDivergence ? Math.Max(loss, 0) : loss;
        if (gradient == null)
        {
            return RowStatus.Ok;
        }

        if (double.IsPositiveInfinity(loss))
        {
            // An infinite row keeps the finite forward-KL gradient coef · (q − p).
            Rescale<TS, TV>(expS, coef * invZS, expT, -coef * invZT, gradient, n);
        }
        else
        {
            // gradient = coef · qg − coef · Σqg · q, with qg stored in the gradient buffer by the pass above.
            Rescale<TS, TV>(gradient, coef, expS, (float)(-coef * sumQg * invZS), gradient, n);
        }

        return RowStatus.Ok;
    }

    /// <summary>Columns per chunk of the single-pass kernel: the chunk's inputs and exponentials stay in L1.</summary>
    internal const int Chunk = 2048;

    /// <summary>Scratch floats <see cref="TeacherWeightedRow{TS, TV, TOp}"/> needs for its chunk shifts.</summary>
    public static int ChunkShiftFloats(int n) => 2 * ((n / (Chunk / 2)) + 2);

    /// <summary>
    /// One row of a teacher-weighted divergence (forward KL, soft CE) in a single pass over memory: per chunk of
    /// at most <see cref="Chunk"/> columns, the chunk maxima, then e_t = exp((t − max_t)/T) and e_s likewise (stored in
    /// scratch), Z_t, Z_s, Σ e_t (t − max_t)/T and Σ e_t (s − max_s)/T; the chunks are merged online in double. The value
    /// follows from E_p[log p] and E_p[log q]; the gradient coef · (q − p) rescales the stored exponentials per chunk.
    /// </summary>
    /// <remarks>
    /// Replaces softmax(t/T), log_softmax(s/T), Σ p (log p − log q) and autograd's backward: one exp per element per
    /// distribution, no log per element, inputs read once and the gradient written once.
    /// </remarks>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static RowStatus TeacherWeightedRow<TS, TV, TOp>(float* teacher, float* student, int n, float invT, float* gradient, float coef, float* expT, float* expS, float* shifts, out double value)
        where TS : ISimd<TV>
        where TV : struct
        where TOp : struct, IDivergenceOp
    {
        value = 0;

        // Running statistics, relative to the running maxima maxT and maxS (raw logit units):
        // zT = Σ e^{(t − maxT)/T}, zS likewise, sc = Σ e^{(t − maxT)/T} (t − maxT)/T, sb = Σ e^{(t − maxT)/T} (s − maxS)/T.
        double maxT = double.NegativeInfinity, maxS = double.NegativeInfinity, zT = 0, zS = 0, sc = 0, sb = 0;
        int chunks = 0;
        for (int c0 = 0; c0 < n; chunks++)
        {
            int remaining = n - c0;
            int len = remaining <= Chunk ? remaining : remaining < 2 * Chunk ? remaining / 2 : Chunk;
            float mt = MaxOf<TS, TV>(teacher + c0, len), ms = MaxOf<TS, TV>(student + c0, len);
            if (float.IsNaN(mt) || float.IsPositiveInfinity(mt))
            {
                return RowStatus.TeacherInvalidValue;
            }

            if (float.IsNaN(ms) || float.IsPositiveInfinity(ms))
            {
                return RowStatus.StudentInvalidValue;
            }

            // A chunk with no possible token is shifted by 0 so that (−∞ − shift) stays −∞ and its exponentials 0.
            float shiftT = float.IsNegativeInfinity(mt) ? 0 : mt, shiftS = float.IsNegativeInfinity(ms) ? 0 : ms;
            shifts[2 * chunks] = mt;
            shifts[(2 * chunks) + 1] = ms;
            ChunkSums<TS, TV>(teacher + c0, student + c0, len, shiftT, shiftS, invT, expT + c0, expS + c0, out double cz, out double czs, out double cc, out double cb);
            if (double.IsNaN(cz))
            {
                return RowStatus.TeacherInvalidValue;
            }

            if (double.IsNaN(czs))
            {
                return RowStatus.StudentInvalidValue;
            }

            if (czs > 0)
            {
                // Re-express the student offsets of sb and of this chunk's cb relative to the new student maximum.
                double newMaxS = Math.Max(maxS, ms);
                if (zT > 0)
                {
                    sb += zT * (maxS - newMaxS) * invT;
                }

                cb += cz * (ms - newMaxS) * invT;
                zS = Scaled(Math.Exp((maxS - newMaxS) * invT), zS) + (czs * Math.Exp((ms - newMaxS) * invT));
                maxS = newMaxS;
            }

            if (cz > 0)
            {
                // Re-weight everything teacher-weighted to the new teacher maximum.
                double newMaxT = Math.Max(maxT, mt);
                double keep = Math.Exp((maxT - newMaxT) * invT), add = Math.Exp((mt - newMaxT) * invT);
                double shifted = zT > 0 ? sc + (zT * (maxT - newMaxT) * invT) : 0;
                sc = Scaled(keep, shifted) + (add * (cc + (cz * (mt - newMaxT) * invT)));
                sb = Scaled(keep, sb) + Scaled(add, cb);
                zT = Scaled(keep, zT) + (add * cz);
                maxT = newMaxT;
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

        double logZT = Math.Log(zT), logZS = Math.Log(zS);
        value = TOp.FromExpectations((sc / zT) - logZT, (sb / zT) - logZS);
        if (gradient == null)
        {
            return RowStatus.Ok;
        }

        int chunk = 0;
        for (int c0 = 0; c0 < n; chunk++)
        {
            int remaining = n - c0;
            int len = remaining <= Chunk ? remaining : remaining < 2 * Chunk ? remaining / 2 : Chunk;
            float mt = shifts[2 * chunk], ms = shifts[(2 * chunk) + 1];
            float ct = float.IsNegativeInfinity(mt) ? 0 : (float)(coef * Math.Exp((mt - maxT) * invT) / zT);
            float cs = float.IsNegativeInfinity(ms) ? 0 : (float)(coef * Math.Exp((ms - maxS) * invT) / zS);
            RescaleStreaming<TS, TV>(expS + c0, cs, expT + c0, -ct, gradient + c0, len);
            c0 += len;
        }

        return RowStatus.Ok;
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

        double lse = ((double)max * invT) + Math.Log(sum);
        double labelTerm = smoothing < 1 ? (1 - smoothing) * (lse - ((double)student[label] * invT)) : 0;
        value = labelTerm + (smoothing > 0 ? smoothing * (lse - (SumOf<TS, TV>(student, n) * invT / n)) : 0);
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

    /// <summary>max_j x_j and log Σ_j exp(x_j) of one row (n ≥ TS.Count), without storing anything.</summary>
    public static double LogSumExp<TS, TV>(float* x, int n, out float max)
        where TS : ISimd<TV>
        where TV : struct
    {
        max = MaxOf<TS, TV>(x, n);
        if (!float.IsFinite(max))
        {
            return max;
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

        return max + Math.Log(total + TS.SumAcross(acc));
    }

    /// <summary>w · x, with 0 · (±∞) = 0: a weight that underflowed to 0 drops its term.</summary>
    private static double Scaled(double w, double x) => w == 0 ? 0 : w * x;

    /// <summary>The sums of one chunk of <see cref="TeacherWeightedRow{TS, TV, TOp}"/> (see there), exponentials stored.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void ChunkSums<TS, TV>(float* t, float* s, int n, float shiftT, float shiftS, float invT, float* expT, float* expS, out double zT, out double zS, out double c, out double b)
        where TS : ISimd<TV>
        where TV : struct
    {
        // x = (v − shift)/T as one FMA, v·(1/T) − shift/T: every x in the chunk carries the same rounding offset,
        // which cancels between Σ e·x / Z and log Z.
        TV vInvT = TS.Splat(invT), vOffT = TS.Splat(-shiftT * invT), vOffS = TS.Splat(-shiftS * invT);
        TV accZT = TS.Zero, accZS = TS.Zero, accC = TS.Zero, accB = TS.Zero, vLowest = TS.Splat(float.MinValue);
        int w = TS.Count, i = 0;
        for (; i + w <= n; i += w)
        {
            TV xt = TS.MultiplyAdd(TS.Load(t + i), vInvT, vOffT);
            TV xs = TS.MultiplyAdd(TS.Load(s + i), vInvT, vOffS);
            TV et = SimdMath.Exp<TS, TV>(xt), es = SimdMath.Exp<TS, TV>(xs);
            TS.Store(et, expT + i);
            TS.Store(es, expS + i);
            // C = Σ e_t x_t: x_t is floored at −FLT_MAX so that e_t = 0 at a −∞ teacher logit gives 0, not 0 · ∞.
            // B = Σ e_t x_s: x_s is kept only where e_t > 0, so −∞ there (the teacher has mass the student lacks)
            // makes B = −∞ exactly, while a −∞ logit of weight 0 contributes 0.
            accZT = TS.Add(accZT, et);
            accZS = TS.Add(accZS, es);
            accC = TS.MultiplyAdd(et, TS.Max(xt, vLowest), accC);
            accB = TS.MultiplyAdd(et, TS.Select(TS.GreaterThan(et, TS.Zero), xs, TS.Zero), accB);
        }

        if (i < n)
        {
            // The overlapping last vector: its lanes already summed are masked out; the stores rewrite equal values.
            int at = n - w;
            TV keep = TS.TailMask(n - i);
            TV xt = TS.MultiplyAdd(TS.Load(t + at), vInvT, vOffT);
            TV xs = TS.MultiplyAdd(TS.Load(s + at), vInvT, vOffS);
            TV et = SimdMath.Exp<TS, TV>(xt), es = SimdMath.Exp<TS, TV>(xs);
            TS.Store(et, expT + at);
            TS.Store(es, expS + at);
            TV weighted = TS.Select(keep, TS.GreaterThan(et, TS.Zero), TS.Zero);
            accZT = TS.Add(accZT, TS.Select(keep, et, TS.Zero));
            accZS = TS.Add(accZS, TS.Select(keep, es, TS.Zero));
            accC = TS.Add(accC, TS.Select(weighted, TS.Multiply(et, xt), TS.Zero));
            accB = TS.Add(accB, TS.Select(weighted, TS.Multiply(et, xs), TS.Zero));
        }

        zT = TS.SumAcross(accZT);
        zS = TS.SumAcross(accZS);
        c = TS.SumAcross(accC);
        b = TS.SumAcross(accB);
    }

    /// <summary>
    /// destination_j = a_j · ca + b_j · cb for a destination that is neither source, written with non-temporal stores
    /// (the gradient is not read again by this call, so it should not evict the inputs from cache). The head up to
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

    /// <summary>max_j x_j, NaN if any x_j is NaN. The overlapping last vector needs no mask for a max.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static float MaxOf<TS, TV>(float* x, int n)
        where TS : ISimd<TV>
        where TV : struct
    {
        int w = TS.Count;
        TV m0 = TS.Load(x), m1 = TS.Load(x + n - w);
        int i = w;
        for (; i + (2 * w) <= n; i += 2 * w)
        {
            m0 = TS.Max(m0, TS.Load(x + i));
            m1 = TS.Max(m1, TS.Load(x + i + w));
        }

        for (; i < n; i += w)
        {
            m0 = TS.Max(m0, TS.Load(x + Math.Min(i, n - w)));
        }

        return TS.MaxAcross(TS.Max(m0, m1));
    }

    /// <summary>Σ_j x_j in double (used by label smoothing; −∞ entries make it −∞).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static double SumOf<TS, TV>(float* x, int n)
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
