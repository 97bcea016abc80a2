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
/// <para>
/// A row's gradient needs the row's normalisers, so it can only be written after a full pass over the row. With
/// streaming stores the kernels therefore leave it as a <see cref="DeferredGradient"/> and write it during the next
/// row's first pass, which is bound by arithmetic (two exponentials per element) while the gradient is bound by memory
/// writes: interleaved, the two overlap instead of adding up. The per-thread scratch has two <see cref="RowBank"/>s for
/// this; the driver writes the last deferred gradient at the end of its rows.
/// </para>
/// </remarks>
internal static unsafe class FusedKernels
{
    /// <summary>Vectors accumulated in float before a partial sum is added in double.</summary>
    private const int FlushEvery = 64;

    /// <summary>log2(e): the chunked kernels work with base-2 exponents y = (v − max) · log2(e)/T.</summary>
    internal const double Log2E = 1.4426950408889634;

    /// <summary>
    /// One row of a general divergence over teacher logits (or log-probabilities), in two passes of which only the
    /// first reads memory (the gradient is a third, deferred into the next row's first pass): <see cref="ChunkedPass{TS, TV, TOp}"/> (maxima, exponentials, Z, the +∞ rule); per chunk from
    /// cache, p, q, log p = (t − max_t)/T − log Z_t and log q likewise, the op's term and q·g (stored over the teacher's
    /// exponentials); then gradient = coef · (qg − q · Σ qg), or coef · (q − p) for a row whose value is +∞, written
    /// now or deferred (see <see cref="FusedKernels"/>).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static RowStatus DivergenceRow<TS, TV, TOp>(in TOp op, float* teacher, float* student, int n, float invT, float* gradient, float coef, in RowBank bank, bool streaming, ref DeferredGradient deferred, out double value)
        where TS : ISimd<TV>
        where TV : struct
        where TOp : struct, IDivergenceOp
    {
        value = 0;
        RowStatus status = ChunkedPass<TS, TV, TOp>(new RowSources(teacher, student, null, null, null), n, invT, bank, ref deferred, out RowStatistics row);
        if (status != RowStatus.Ok)
        {
            return status;
        }

        // +∞ exactly where the op's support rule says so, whatever underflowed in float; such a row keeps the teacher's
        // exponentials for its gradient coef · (q − p), the others get q·g stored over them.
        bool infinite = row.Infinite;
        bool storeQg = gradient != null && !infinite;
        float* expT = bank.ExpT, expS = bank.ExpS, shifts = bank.Shifts;
        float maxT = (float)row.MaxT, maxS = (float)row.MaxS, negLogZT = (float)-Math.Log(row.ZT), negLogZS = (float)-Math.Log(row.ZS);
        double loss = 0, sumQg = 0;
        (double scaleP, double scaleQ) = op.VectorScales;
        int chunk = 0;
        for (int c0 = 0; c0 < n; chunk++)
        {
            int len = ChunkLength(n - c0);
            (float cp, float cq) = row.ChunkFactors(shifts, chunk, invT, scaleP, scaleQ);
            ChunkTerms<TS, TV, TOp>(op, teacher + c0, student + c0, expT + c0, expS + c0, len, maxT, maxS, invT, negLogZT, negLogZS, cp, cq, storeQg, out double chunkLoss, out double chunkQg);
            loss += chunkLoss;
            sumQg += chunkQg;
            c0 += len;
        }

        value = infinite ? double.PositiveInfinity : TOp.IsDivergence ? Math.Max(loss, 0) : loss;
        if (gradient == null)
        {
            return RowStatus.Ok;
        }

        // The per-chunk factors replace the chunk maxima in place. A finite row: (qg + e_s · b) · coef with
        // b = −Σqg · cq, the difference formed before the (possibly huge) coefficient so that a zero never meets an
        // overflowed product; an infinite row: the forward-KL gradient e_s · coef·cq − e_t · coef·cp.
        chunk = 0;
        for (int c0 = 0; c0 < n; chunk++)
        {
            (float cp, float cq) = row.ChunkFactors(shifts, chunk, invT);
            shifts[ChunkStride * chunk] = infinite ? coef * cq : coef;
            shifts[(ChunkStride * chunk) + 1] = infinite ? -coef * cp : (float)(-sumQg * cq);
            c0 += ChunkLength(n - c0);
        }

        return Defer<TS, TV>(new DeferredGradient(gradient, infinite ? expS : expT, infinite ? expT : expS, shifts, n, infinite ? GradientFormKind.Rescale : GradientFormKind.Difference), streaming, ref deferred);
    }

    /// <summary>
    /// The general kernel's second pass over one chunk (from cache): Σ term and Σ q·g, and with <paramref name="storeQg"/>
    /// q·g stored over the teacher's exponentials. Its own method, with every constant broadcast here: across the
    /// calls of the row loop the vector registers are not preserved, and constants kept there were reloaded from the
    /// stack in every iteration.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void ChunkTerms<TS, TV, TOp>(in TOp op, float* t, float* s, float* et, float* es, int len, float maxT, float maxS, float invT, float negLogZT, float negLogZS, float cp, float cq, bool storeQg, out double loss, out double sumQg)
        where TS : ISimd<TV>
        where TV : struct
        where TOp : struct, IDivergenceOp
    {
        // A copy, so that the op's fields are not re-read after every store through a float pointer.
        TOp o = op;
        TV vInvT = TS.Splat(invT), vMaxT = TS.Splat(maxT), vMaxS = TS.Splat(maxS), vNegLogZT = TS.Splat(negLogZT), vNegLogZS = TS.Splat(negLogZS);
        TV vCp = TS.Splat(cp), vCq = TS.Splat(cq), accLoss = TS.Zero, accQg = TS.Zero;
        int w = TS.Count, full = len / w;
        // Two loops rather than a test inside one: with the store's branch in the loop JSD and skew KL ran about 4%
        // slower (probe, alternating builds).
        if (storeQg)
        {
            for (int k = 0; k < full; k++)
            {
                TV qg = TermAndQg<TS, TV, TOp>(o, t, s, et, es, k * w, vMaxT, vMaxS, vInvT, vNegLogZT, vNegLogZS, vCp, vCq, ref accLoss);
                accQg = TS.Add(accQg, qg);
                TS.Store(qg, et + (k * w));
            }
        }
        else
        {
            for (int k = 0; k < full; k++)
            {
                accQg = TS.Add(accQg, TermAndQg<TS, TV, TOp>(o, t, s, et, es, k * w, vMaxT, vMaxS, vInvT, vNegLogZT, vNegLogZS, vCp, vCq, ref accLoss));
            }
        }

        if (full * w < len)
        {
            // The overlapping last vector: lanes already counted are masked out, and keep the q·g stored there.
            int at = len - w;
            TV keep = TS.TailMask(len - (full * w)), tailLoss = TS.Zero;
            TV qg = TermAndQg<TS, TV, TOp>(o, t, s, et, es, at, vMaxT, vMaxS, vInvT, vNegLogZT, vNegLogZS, vCp, vCq, ref tailLoss);
            accLoss = TS.Add(accLoss, TS.Select(keep, tailLoss, TS.Zero));
            accQg = TS.Add(accQg, TS.Select(keep, qg, TS.Zero));
            if (storeQg)
            {
                TS.Store(TS.Select(keep, qg, TS.Load(et + at)), et + at);
            }
        }

        loss = TS.SumAcross(accLoss);
        sumQg = TS.SumAcross(accQg);
    }

    /// <summary>
    /// One vector of the general kernel's second pass at column <paramref name="at"/>: the op's term added to
    /// <paramref name="accLoss"/>, and q·g returned.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static TV TermAndQg<TS, TV, TOp>(in TOp op, float* t, float* s, float* et, float* es, int at, TV vMaxT, TV vMaxS, TV vInvT, TV vNegLogZT, TV vNegLogZS, TV vCp, TV vCq, ref TV accLoss)
        where TS : ISimd<TV>
        where TV : struct
        where TOp : struct, IDivergenceOp
    {
        // Floored at −FLT_MAX: a finite logit whose gap ÷ T leaves float's range keeps a finite (huge) log, so the
        // value stays finite where the truth is; a −∞ logit (weight 0, or +∞ by the support rule) gets a finite log
        // too, which the op multiplies by its weight 0.
        TV logP = TS.Zero, logQ = TS.Zero;
        if (TOp.UsesLogs)
        {
            logP = TS.AtLeastLowest(TS.MultiplyAdd(TS.Subtract(TS.Load(t + at), vMaxT), vInvT, vNegLogZT));
            logQ = TS.AtLeastLowest(TS.MultiplyAdd(TS.Subtract(TS.Load(s + at), vMaxS), vInvT, vNegLogZS));
        }

        accLoss = TS.Add(accLoss, op.Element<TS, TV>(TS.Multiply(TS.Load(et + at), vCp), TS.Multiply(TS.Load(es + at), vCq), logP, logQ, out TV qg));
        return qg;
    }

    /// <summary>
    /// The longest row whose gradient is deferred into the next row's first pass (see <see cref="Defer{TS, TV}"/>); a
    /// longer row's gradient is streamed at once. The two scratch banks hold 16V bytes, 512 KB at this length (half of
    /// the development machine's L2 per core): beyond it the deferred row was read back from L3, and forward KL at
    /// V = 65,536 cost 0.49 ns/element deferred against 0.39 written at once (V = 131,072: 0.46 against 0.41; probe).
    /// </summary>
    internal const int DeferLimit = 32768;

    /// <summary>Columns per chunk: a chunk's inputs and exponentials stay in L1.</summary>
    internal const int Chunk = 2048;

    /// <summary>
    /// The largest base-2 exponent (in y units) a chunk may reach relative to the maxima of the chunks before it before
    /// it is done again relative to its own (see <see cref="ChunkedPass{TS, TV, TOp}"/>): 2^y up to 2^32, well inside
    /// float's range for the chunk's sums and inside the exponent the exponential without AVX-512 builds from bits
    /// (≤ 127; beyond it that one wraps instead of overflowing, which no finiteness check would see).
    /// </summary>
    private const double RunningMargin = 32;

    /// <summary>
    /// The largest offset (base-2 units) a rising chunk may put into the weighted sum of a teacher-weighted op before
    /// it is done again relative to its own maxima: the sum Σ e_t · (α y_t + β y_s) then carries α·rise_t + β·rise_s
    /// per unit of mass, which the value takes back from log Z in double, so the float lanes' rounding of the sum is
    /// multiplied by it (found by review: soft CE of a row whose top logit, 15 above the rest at T = 1, sits in a
    /// later chunk was 1.1e-5 off with the overflow margin alone). At 4 the peaked rows of the tests stay within a
    /// fifth of the 1e-5 tolerance.
    /// </summary>
    private const double WeightedSumMargin = 4;

    // The small helpers of the row drivers (this one, ValidMax, ChunkLength, Offset, ShiftOf, ExpOrOne, Scaled, Ahead's
    // constructor, RowStatistics' chunk factors) are AggressiveInlining: called from the AggressiveOptimization drivers,
    // the JIT compiled them as calls, at first into their unoptimised tier-0 code.

    /// <summary>
    /// Whether a chunk taken relative to the running reference has some mass on a side whose logits are finite: a side
    /// whose exponentials all underflowed there (logits finite, far below the reference) has a sum of 0, and the merge
    /// reads a sum of 0 as a side of −∞ only, leaving out the reference's offset from the weighted sum (found by review:
    /// forward KL off by a third of a 10-logit rise). Such a chunk is done again relative to its own maxima.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static bool MassWhereFinite(double sum, float max) => sum > 0 || float.IsNegativeInfinity(max);

    /// <summary>Whether a chunk maximum is a valid one (not NaN or +∞; −∞ is a chunk of impossible tokens).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static bool ValidMax(float max) => !float.IsNaN(max) && !float.IsPositiveInfinity(max);

    /// <summary>Whether the first pass of <typeparamref name="TOp"/> takes chunks after the first relative to the maxima before them (the teacher-weighted ops).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static bool Running<TOp>()
        where TOp : struct, IDivergenceOp => TOp.WeightedSum != TeacherWeightedSum.None && !TOp.StoresLogRatio;

    /// <summary>Whether the first pass takes both sides of <typeparamref name="TOp"/> relative to the running reference, in the one-FMA form, both or neither (the teacher-weighted ops, TVD).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static bool BothSides<TOp>()
        where TOp : struct, IDivergenceOp => Running<TOp>() || TOp.SidesAlike;

    /// <summary>The largest |shift · c| for which the chunked kernels form exponents with one FMA (see <see cref="ChunkedPass{TS, TV, TOp}"/>).</summary>
    private const float FusedShiftLimit = 1 << 20;

    /// <summary>Floats per chunk in a bank's shifts: the two maxima and the two exponent shifts δ, later the gradient's two factors.</summary>
    private const int ChunkStride = 4;

    /// <summary>Scratch floats the chunked kernels need for their chunk maxima (a multiple of 16, so that what follows stays aligned).</summary>
    public static int ChunkShiftFloats(int n) => (int)RoundUp(ChunkStride * ((n / (Chunk / 2)) + 2));

    /// <summary>n rounded up to a multiple of 16 floats (64 bytes), in 64 bits (rows near int.MaxValue must not wrap).</summary>
    public static long RoundUp(long n) => (n + 15) & ~15L;

    /// <summary>The length of the chunk starting <paramref name="remaining"/> columns before the row's end (the last two share the rest evenly).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int ChunkLength(int remaining) => remaining <= Chunk ? remaining : remaining < 2 * Chunk ? remaining / 2 : Chunk;

    /// <summary>
    /// One row of a teacher-weighted op (forward KL, soft CE, the teacher's entropy) in a single pass over memory (see
    /// <see cref="ChunkedPass{TS, TV, TOp}"/>): the value follows from the mean of one teacher-weighted sum; the
    /// gradient coef · (q − p) rescales the stored exponentials per chunk, written now or deferred (see
    /// <see cref="FusedKernels"/>).
    /// </summary>
    /// <remarks>
    /// Replaces softmax(t/T), log_softmax(s/T), Σ p (log p − log q) and autograd's backward: one exp per element per
    /// distribution, no log per element, inputs read once and the gradient written once.
    /// </remarks>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static RowStatus TeacherWeightedRow<TS, TV, TOp>(float* teacher, Half* teacherHalf, float* widened, float* student, int n, float invT, float* gradient, float coef, in RowBank bank, bool streaming, ref DeferredGradient deferred, out double value)
        where TS : ISimd<TV>
        where TV : struct
        where TOp : struct, IDivergenceOp
    {
        value = 0;
        RowStatus status = ChunkedPass<TS, TV, TOp>(new RowSources(teacher, student, teacherHalf, null, widened), n, invT, bank, ref deferred, out RowStatistics row);
        if (status != RowStatus.Ok)
        {
            return status;
        }

        value = row.Infinite ? double.PositiveInfinity : TOp.FromWeightedMean(row.A / row.ZT, Math.Log(row.ZT), Math.Log(row.ZS));
        if (gradient == null)
        {
            return RowStatus.Ok;
        }

        // The per-chunk factors of coef · (q − p) = e_s · coef·cq − e_t · coef·cp replace the chunk maxima in place.
        float* shifts = bank.Shifts;
        int chunk = 0;
        for (int c0 = 0; c0 < n; chunk++)
        {
            (float cp, float cq) = row.ChunkFactors(shifts, chunk, invT);
            shifts[ChunkStride * chunk] = coef * cq;
            shifts[(ChunkStride * chunk) + 1] = -coef * cp;
            c0 += ChunkLength(n - c0);
        }

        return Defer<TS, TV>(new DeferredGradient(gradient, bank.ExpS, bank.ExpT, shifts, n, GradientFormKind.Rescale), streaming, ref deferred);
    }

    /// <summary>
    /// One row of reverse KL in a single pass over memory. KL(q ‖ p) = E_q[x_s − x_t] − log Z_s + log Z_t with
    /// x = (v − max)/T, so <see cref="ChunkedPass{TS, TV, TOp}"/> runs with the student as its first side
    /// (<see cref="StudentFirstReverseKLOp"/>), storing e_s and the log-ratio r = y_s − y_t per element. The gradient
    /// coef · q · (log q − log p − L) = coef · q · (x_s − x_t − E_q[x_s − x_t]) is then (r − C_k) · e_s · a_k per chunk k
    /// (<see cref="RatioForm"/>): the mean C_k is formed in double from the same stored floats, so a one-hot student
    /// cancels exactly. A row whose value is +∞ gets coef · (q − p), with the teacher's exponentials recomputed.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static RowStatus StudentWeightedRow<TS, TV>(float* teacher, Half* teacherHalf, float* widened, float* student, int n, float invT, float* gradient, float coef, in RowBank bank, bool streaming, ref DeferredGradient deferred, out double value)
        where TS : ISimd<TV>
        where TV : struct
    {
        value = 0;
        RowStatus status = ChunkedPass<TS, TV, StudentFirstReverseKLOp>(new RowSources(student, teacher, null, teacherHalf, widened), n, invT, bank, ref deferred, out RowStatistics row);
        if (status != RowStatus.Ok)
        {
            // The first pass saw the student first: give each side its own status back.
            return status switch
            {
                RowStatus.TeacherInvalidValue => RowStatus.StudentInvalidValue,
                RowStatus.StudentInvalidValue => RowStatus.TeacherInvalidValue,
                RowStatus.TeacherNoMass => RowStatus.StudentNoMass,
                RowStatus.StudentNoMass => RowStatus.TeacherNoMass,
                _ => status,
            };
        }

        // In the swapped frame "T" is the student and "S" the teacher: Z_T = Z_s, A / Z_T = E_q[x_s − x_t].
        value = row.Infinite ? double.PositiveInfinity : StudentFirstReverseKLOp.FromWeightedMean(row.A / row.ZT, Math.Log(row.ZT), Math.Log(row.ZS));
        if (gradient == null)
        {
            return RowStatus.Ok;
        }

        float* shifts = bank.Shifts;
        float c = (float)(invT * Log2E);
        double toNatural = invT / (double)c, mean = row.A / row.ZT;
        int chunk = 0;
        for (int c0 = 0; c0 < n; chunk++)
        {
            int len = ChunkLength(n - c0);
            (float cq, float cp) = row.ChunkFactors(shifts, chunk, invT);
            if (row.Infinite)
            {
                // The teacher's exponentials over the log-ratio, for coef · (q − p) = e_s · coef·cq − e_t · coef·cp.
                float mt = shifts[(ChunkStride * chunk) + 1];
                float* t = teacher + c0;
                if (teacherHalf != null)
                {
                    System.Numerics.Tensors.TensorPrimitives.ConvertToSingle(new ReadOnlySpan<Half>(teacherHalf + c0, len), new Span<float>(widened, len));
                    t = widened;
                }

                ExpTo<TS, TV>(t, len, ShiftOf(mt), c, bank.ExpS + c0);
                shifts[ChunkStride * chunk] = coef * cq;
                shifts[(ChunkStride * chunk) + 1] = -coef * cp;
            }
            else
            {
                // r_j + (chunk offset) is x_s − x_t relative to the row maxima (in base-2 units); C_k = mean − offset. A
                // chunk without student mass (q = 0 throughout) gets zeros.
                float ms = shifts[ChunkStride * chunk], mt = shifts[(ChunkStride * chunk) + 1];
                bool mass = cq > 0 && !float.IsNegativeInfinity(ms) && !float.IsNegativeInfinity(mt);
                double offset = mass ? ((ms - row.MaxT) - (mt - row.MaxS)) * invT : 0;
                shifts[ChunkStride * chunk] = mass ? (float)(coef * (double)cq * toNatural) : 0;
                shifts[(ChunkStride * chunk) + 1] = mass ? (float)(-(mean - offset) / toNatural) : 0;
            }

            c0 += len;
        }

        return row.Infinite
            ? Defer<TS, TV>(new DeferredGradient(gradient, bank.ExpT, bank.ExpS, shifts, n, GradientFormKind.Rescale), streaming, ref deferred)
            : Defer<TS, TV>(new DeferredGradient(gradient, bank.ExpS, bank.ExpT, shifts, n, GradientFormKind.Ratio), streaming, ref deferred);
    }

    /// <summary>e_j = 2^((x_j − shift) · c) over n ≥ TS.Count columns (the overlapping last vector rewrites equal values).</summary>
    private static void ExpTo<TS, TV>(float* x, int n, float shift, float c, float* exps)
        where TS : ISimd<TV>
        where TV : struct
    {
        TV vShift = TS.Splat(shift), vC = TS.Splat(c);
        Exp2Constants<TS, TV> exp2 = Exp2Constants<TS, TV>.Create();
        int w = TS.Count;
        for (int i = 0; i < n; i += w)
        {
            int at = Math.Min(i, n - w);
            TS.Store(SimdMath.Exp2<TS, TV>(TS.AtLeastLowest(TS.Multiply(TS.Subtract(TS.Load(x + at), vShift), vC)), exp2), exps + at);
        }
    }

    /// <summary>
    /// Hands a row's gradient to the next row's first pass when it may be streamed (and the width has streaming
    /// stores); otherwise writes it now with ordinary stores, as callers that read it back at once need.
    /// </summary>
    private static RowStatus Defer<TS, TV>(in DeferredGradient gradient, bool streaming, ref DeferredGradient deferred)
        where TS : ISimd<TV>
        where TV : struct
    {
        bool stream = streaming && TS.HasNonTemporalStore && CanStream(gradient.Destination);
        if (stream && gradient.N <= DeferLimit)
        {
            deferred = gradient;
        }
        else
        {
            Write<TS, TV>(gradient, stream);
        }

        return RowStatus.Ok;
    }

    /// <summary>Writes a deferred gradient on its own (the last row of a thread's rows, or a row that is not streamed).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Write<TS, TV>(in DeferredGradient gradient, bool streaming)
        where TS : ISimd<TV>
        where TV : struct
    {
        int n = gradient.N, chunk = 0;
        for (int c0 = 0; c0 < n; chunk++)
        {
            int len = ChunkLength(n - c0);
            float a = gradient.Factors[ChunkStride * chunk], b = gradient.Factors[(ChunkStride * chunk) + 1];
            if (gradient.Form == GradientFormKind.Difference)
            {
                Combine<TS, TV, DifferenceForm>(gradient.X + c0, gradient.Y + c0, a, b, gradient.Destination + c0, len, streaming);
            }
            else if (gradient.Form == GradientFormKind.Ratio)
            {
                Combine<TS, TV, RatioForm>(gradient.X + c0, gradient.Y + c0, a, b, gradient.Destination + c0, len, streaming);
            }
            else
            {
                Combine<TS, TV, RescaleForm>(gradient.X + c0, gradient.Y + c0, a, b, gradient.Destination + c0, len, streaming);
            }

            c0 += len;
        }
    }

    /// <summary>
    /// The first pass of the chunked kernels, the only one that reads the inputs from memory. Per chunk of at most
    /// <see cref="Chunk"/> columns: the chunk maxima, then y = (v − max) · log2(e)/T, e_t = 2^y_t and e_s = 2^y_s (stored in
    /// the bank), Z_t, Z_s and, for teacher-weighted ops, A = Σ e_t · f(y_t, y_s); the chunks are merged online in
    /// double into statistics relative to the row's reference points (its maxima, or for the ops that skip the final
    /// re-basing up to the margins below them). The op's +∞ rule is checked on the raw logits, and only in
    /// chunks where the relevant side has a −∞ at all. A <paramref name="deferred"/> gradient of the previous row is
    /// written chunk by chunk in the same loop and then cleared.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static RowStatus ChunkedPass<TS, TV, TOp>(in RowSources sources, int n, float invT, in RowBank bank, ref DeferredGradient deferred, out RowStatistics row)
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

        // The base-2 scale and its way back: a chunk's weighted sum in y units times invT / c is in natural units.
        float c = (float)(invT * Log2E);
        double toNatural = invT / (double)c;
        DeferredGradient pending = deferred;
        deferred = default;
        float* expT = bank.ExpT, expS = bank.ExpS, shifts = bank.Shifts;
        double maxT = double.NegativeInfinity, maxS = double.NegativeInfinity, zT = 0, zS = 0, a = 0;
        bool infinite = false;
        row = default;
        int chunks = 0;
        // The largest raw logits of the chunks so far (the running reference of the teacher-weighted ops).
        float runT = float.NegativeInfinity, runS = float.NegativeInfinity;
        for (int c0 = 0; c0 < n; chunks++)
        {
            int len = ChunkLength(n - c0);
            float* t = sources.First + c0, s = sources.Second + c0;
            if (sources.FirstHalf != null)
            {
                // Half storage: the chunk is widened exactly into an L1 buffer; 2 bytes per value read from memory.
                System.Numerics.Tensors.TensorPrimitives.ConvertToSingle(new ReadOnlySpan<Half>(sources.FirstHalf + c0, len), new Span<float>(sources.Widened, len));
                t = sources.Widened;
            }

            if (sources.SecondHalf != null)
            {
                System.Numerics.Tensors.TensorPrimitives.ConvertToSingle(new ReadOnlySpan<Half>(sources.SecondHalf + c0, len), new Span<float>(sources.Widened, len));
                s = sources.Widened;
            }

            // The next chunk: this row's, or past its end the next row's first (as long as a row's first chunk).
            int next = c0 + len;
            var ahead = new Ahead(sources, next, len, ChunkLength(next < n ? n - next : n));
            double cz = 0, czs = 0, ca = 0, offT = 0, offS = 0;
            float mt = 0, ms = 0, minT = float.PositiveInfinity, minS = float.PositiveInfinity, refT = 0, refS = 0;
            bool done = false;

            // After a row's first chunk a side may run relative to the largest logits of the chunks before it (no
            // separate pass over the chunk for its maxima, which waited on the chunk's arrival from L2 where the loop
            // below overlaps it with the arithmetic; the loop finds the chunk's maxima, and the student's minimum for
            // the support rule, itself): both sides of a teacher-weighted op (with the one-FMA exponent); only the
            // teacher's side of the others (the first side, or the second of reverse KL's student-first pass), whose
            // student side needs its chunk maximum exactly (its exponential exactly 1, see below); both sides of TVD,
            // alike (the same form on each side, both or neither), so that identical rows still give equal p and q
            // (its gradient ½ q sign(q − p) carries no log-ratio for a student's rounding to be multiplied by).
            // The chunk is done again relative to its own maxima as below if a running side rises more than
            // RunningMargin above its reference, a teacher-weighted op's weighted sum would carry an offset of more than
            // WeightedSumMargin (precision, see there), a sum leaves float's range (a huge log-ratio times 2^y > 1), a side
            // with finite logits has no mass left (all underflowed: the merge reads a sum of 0 as a side of −∞), or
            // a maximum is invalid (the path below reports it).
            bool bothSides = BothSides<TOp>();
            bool runFirst = (bothSides || !TOp.StoresLogRatio) && float.IsFinite(runT);
            bool runSecond = (bothSides || TOp.StoresLogRatio) && float.IsFinite(runS);
            if (bothSides && !(runFirst && runSecond && Math.Abs(runT * c) <= FusedShiftLimit && Math.Abs(runS * c) <= FusedShiftLimit))
            {
                runFirst = runSecond = false;
            }

            if (runFirst || runSecond)
            {
                if (!runFirst)
                {
                    mt = MaxOf<TS, TV>(t, len, TOp.Infinity == InfinityRule.StudentMassWithoutTeacher, out minT);
                }

                if (!runSecond)
                {
                    ms = MaxOf<TS, TV>(s, len, TOp.Infinity == InfinityRule.TeacherMassWithoutStudent, out minS);
                }

                refT = runFirst ? runT : mt;
                refS = runSecond ? runS : ms;
                if (ValidMax(mt) && ValidMax(ms))
                {
                    float trackedT, trackedS, trackedMinS;
                    if (bothSides)
                    {
                        float sT = refT * c, sS = refS * c;
                        ChunkSums<TS, TV, TOp, RunningShift>(t, s, ahead, len, -sT, -sS, c, expT + c0, expS + c0, pending, c0, chunks, out cz, out czs, out ca, out trackedT, out trackedS, out trackedMinS);
                        offT = (sT - ((double)refT * c)) / c;
                        offS = (sS - ((double)refS * c)) / c;
                    }
                    else if (runFirst)
                    {
                        ChunkSums<TS, TV, TOp, RunningFirstShift>(t, s, ahead, len, refT, ShiftOf(ms), c, expT + c0, expS + c0, pending, c0, chunks, out cz, out czs, out ca, out trackedT, out trackedS, out trackedMinS);
                    }
                    else
                    {
                        ChunkSums<TS, TV, TOp, RunningSecondShift>(t, s, ahead, len, ShiftOf(mt), refS, c, expT + c0, expS + c0, pending, c0, chunks, out cz, out czs, out ca, out trackedT, out trackedS, out trackedMinS);
                    }

                    if (runFirst)
                    {
                        mt = trackedT;
                    }

                    if (runSecond)
                    {
                        ms = trackedS;
                        minS = trackedMinS;
                    }

                    double riseT = runFirst ? (mt - (double)refT) * c : 0, riseS = runSecond ? (ms - (double)refS) * c : 0;
                    done = ValidMax(mt) && ValidMax(ms)
                        && riseT <= RunningMargin && riseS <= RunningMargin
                        && Math.Abs(Offset(alpha, Math.Max(riseT, 0), beta, Math.Max(riseS, 0))) <= WeightedSumMargin
                        && double.IsFinite(cz) && double.IsFinite(czs) && double.IsFinite(ca) && MassWhereFinite(cz, mt) && MassWhereFinite(czs, ms);
                }
            }

            if (!done)
            {
                mt = MaxOf<TS, TV>(t, len, TOp.Infinity == InfinityRule.StudentMassWithoutTeacher, out minT);
                ms = MaxOf<TS, TV>(s, len, TOp.Infinity == InfinityRule.TeacherMassWithoutStudent, out minS);
                if (!ValidMax(mt))
                {
                    return RowStatus.TeacherInvalidValue;
                }

                if (!ValidMax(ms))
                {
                    return RowStatus.StudentInvalidValue;
                }

                // y = v · c − S with S = fl(shift · c): one FMA instead of a subtraction and a multiplication. The rounding of
                // S shifts every y of the chunk by the same δ = S − shift · c (exact in double), which the chunk's sums and
                // factors take back exactly. |S| ≤ 2^20 keeps |δ| ≤ 1/16, so the chunk maximum's 2^y stays near 1; beyond
                // that (huge logits), (v − shift) · c instead. Only the teacher-weighted ops take the FMA: a general op's
                // gradient qg − q·Σqg (and reverse KL's q · (x_s − x_t − E_q[x_s − x_t])) cancels exactly for a one-hot
                // student only if the maximum's exponential is exactly 1.
                float shiftT = ShiftOf(mt), shiftS = ShiftOf(ms), sT = shiftT * c, sS = shiftS * c;
                bool fused = TOp.WeightedSum != TeacherWeightedSum.None && !TOp.StoresLogRatio && Math.Abs(sT) <= FusedShiftLimit && Math.Abs(sS) <= FusedShiftLimit;
                // The exponents are then exact relative to the virtual maxima shift + δ/c, which the merge below uses.
                offT = fused ? (sT - ((double)shiftT * c)) / c : 0;
                offS = fused ? (sS - ((double)shiftS * c)) / c : 0;
                refT = mt;
                refS = ms;
                if (fused)
                {
                    ChunkSums<TS, TV, TOp, FusedShift>(t, s, ahead, len, -sT, -sS, c, expT + c0, expS + c0, pending, c0, chunks, out cz, out czs, out ca, out _, out _, out _);
                }
                else
                {
                    ChunkSums<TS, TV, TOp, SubtractShift>(t, s, ahead, len, shiftT, shiftS, c, expT + c0, expS + c0, pending, c0, chunks, out cz, out czs, out ca, out _, out _, out _);
                }
            }

            // The chunk's reference points (its maxima, or the maxima before it) and the exponent shifts δ.
            shifts[ChunkStride * chunks] = refT;
            shifts[(ChunkStride * chunks) + 1] = refS;
            shifts[(ChunkStride * chunks) + 2] = (float)offT;
            shifts[(ChunkStride * chunks) + 3] = (float)offS;
            runT = Math.Max(runT, mt);
            runS = Math.Max(runS, ms);
            ca *= toNatural;
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
            // The chunk's reference points: its maxima, moved by the exponent shift of the FMA form (0 otherwise).
            double vt = refT + (double)(float)offT, vs = refS + (double)(float)offS;
            double newMaxT = cz > 0 ? Math.Max(maxT, vt) : maxT;
            double newMaxS = czs > 0 ? Math.Max(maxS, vs) : maxS;
            if (cz > 0)
            {
                double keep = ExpOrOne((maxT - newMaxT) * invT), add = ExpOrOne((vt - newMaxT) * invT);
                double old = zT > 0 ? a + (zT * Offset(alpha, maxT - newMaxT, beta, maxS - newMaxS) * invT) : 0;
                double mine = ca + (cz * Offset(alpha, vt - newMaxT, beta, czs > 0 ? vs - newMaxS : 0) * invT);
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
                zS = Scaled(ExpOrOne((maxS - newMaxS) * invT), zS) + (czs * ExpOrOne((vs - newMaxS) * invT));
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

        // A last chunk taken relative to the running reference can leave the merged reference points up to the margin
        // below the row's true maxima; re-based onto them in double, so that log p = (t − max)/T − log Z (the general
        // kernel's second pass) subtracts nothing larger than before. The teacher-weighted ops' value and chunk factors,
        // and TVD's (no logarithms), take any reference point within the margins (rounding aside), so they skip it and
        // its two exponentials in double.
        if (!BothSides<TOp>() && runT > maxT)
        {
            double d = maxT - runT, k = Math.Exp(d * invT);
            a = k * (a + (zT * Offset(alpha, d, 0, 0) * invT));
            zT *= k;
            maxT = runT;
        }

        if (!BothSides<TOp>() && runS > maxS)
        {
            double d = maxS - runS;
            a += zT * Offset(0, 0, beta, d) * invT;
            zS *= Math.Exp(d * invT);
            maxS = runS;
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
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static double Offset(double alpha, double dT, double beta, double dS) => (alpha == 0 ? 0 : alpha * dT) + (beta == 0 ? 0 : beta * dS);

    /// <summary>The shift a chunk's values are taken relative to: its maximum, or 0 for a chunk with no possible token.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float ShiftOf(float max) => float.IsNegativeInfinity(max) ? 0 : max;

    /// <summary>A row's merged statistics from <see cref="ChunkedPass{TS, TV, TOp}"/>, relative to its reference points MaxT, MaxS (raw logit units; the row maxima, or below them within the running margins for the ops that skip the re-basing).</summary>
    private readonly record struct RowStatistics(double MaxT, double MaxS, double ZT, double ZS, double A, bool Infinite)
    {
        /// <summary>p_j = e_t,j · cp and q_j = e_s,j · cq for the stored exponentials of chunk <paramref name="chunk"/> (relative to its reference points).</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public (float Cp, float Cq) ChunkFactors(float* shifts, int chunk, float invT) => ChunkFactors(shifts, chunk, invT, 1, 1);

        /// <summary>As <see cref="ChunkFactors(float*, int, float)"/>, times <paramref name="scaleP"/> and <paramref name="scaleQ"/> in double (rounded once).</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public (float Cp, float Cq) ChunkFactors(float* shifts, int chunk, float invT, double scaleP, double scaleQ)
        {
            float mt = shifts[ChunkStride * chunk], ms = shifts[(ChunkStride * chunk) + 1];
            double vt = mt + (double)shifts[(ChunkStride * chunk) + 2], vs = ms + (double)shifts[(ChunkStride * chunk) + 3];
            return (float.IsNegativeInfinity(mt) ? 0 : (float)(ExpOrOne((vt - MaxT) * invT) / ZT * scaleP),
                    float.IsNegativeInfinity(ms) ? 0 : (float)(ExpOrOne((vs - MaxS) * invT) / ZS * scaleQ));
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

    /// <summary>e^x, without the call where x is 0 (the chunk holding the maximum; a single-chunk row never calls it) or −∞.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static double ExpOrOne(double x) => x == 0 ? 1 : double.IsNegativeInfinity(x) ? 0 : Math.Exp(x);

    /// <summary>w · x, with 0 · (±∞) = 0: a weight that underflowed to 0 drops its term.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static double Scaled(double w, double x) => w == 0 ? 0 : w * x;

    /// <summary>Picks the <see cref="IGradientForm"/> of the deferred gradient (if any) for <see cref="ChunkSums{TS, TV, TOp, TForm, TShift}"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void ChunkSums<TS, TV, TOp, TShift>(float* t, float* s, in Ahead ahead, int n, float shiftT, float shiftS, float c, float* expT, float* expS, in DeferredGradient deferred, int c0, int chunk, out double zT, out double zS, out double a, out float maxT, out float maxS, out float minS)
        where TS : ISimd<TV>
        where TV : struct
        where TOp : struct, IDivergenceOp
        where TShift : struct, IShift
    {
        if (deferred.Destination == null)
        {
            ChunkSums<TS, TV, TOp, NoGradient, TShift>(t, s, ahead, n, shiftT, shiftS, c, expT, expS, deferred, c0, chunk, out zT, out zS, out a, out maxT, out maxS, out minS);
        }
        else if (deferred.Form == GradientFormKind.Difference)
        {
            ChunkSums<TS, TV, TOp, DifferenceForm, TShift>(t, s, ahead, n, shiftT, shiftS, c, expT, expS, deferred, c0, chunk, out zT, out zS, out a, out maxT, out maxS, out minS);
        }
        else if (deferred.Form == GradientFormKind.Ratio)
        {
            ChunkSums<TS, TV, TOp, RatioForm, TShift>(t, s, ahead, n, shiftT, shiftS, c, expT, expS, deferred, c0, chunk, out zT, out zS, out a, out maxT, out maxS, out minS);
        }
        else
        {
            ChunkSums<TS, TV, TOp, RescaleForm, TShift>(t, s, ahead, n, shiftT, shiftS, c, expT, expS, deferred, c0, chunk, out zT, out zS, out a, out maxT, out maxS, out minS);
        }
    }

    /// <summary>
    /// The sums of one chunk of <see cref="ChunkedPass{TS, TV, TOp}"/> (see there), exponentials stored; with an active
    /// <typeparamref name="TForm"/>, the same columns of the previous row's deferred gradient are written in the same
    /// loop, with streaming stores from the first 64-byte boundary of the destination and ordinary stores for its
    /// unaligned head and tail (overlapping lanes get equal values).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void ChunkSums<TS, TV, TOp, TForm, TShift>(float* t, float* s, in Ahead ahead, int n, float shiftT, float shiftS, float c, float* expT, float* expS, in DeferredGradient deferred, int c0, int chunk, out double zT, out double zS, out double a, out float maxT, out float maxS, out float minS)
        where TS : ISimd<TV>
        where TV : struct
        where TOp : struct, IDivergenceOp
        where TForm : struct, IGradientForm
        where TShift : struct, IShift
    {
        // y = v · c − shift (one FMA, see ChunkedPass) or (v − shift) · c; −∞ becomes −FLT_MAX, whose 2^y is exactly 0.
        TV vC = TS.Splat(c), vShiftT = TS.Splat(shiftT), vShiftS = TS.Splat(shiftS);
        TV accZT = TS.Zero, accZS = TS.Zero, accA = TS.Zero;
        Exp2Constants<TS, TV> exp2 = Exp2Constants<TS, TV>.Create();
        // With a tracking shift, the chunk's raw maxima (and the student's minimum) found in the same loop.
        TV vMaxT = TS.Splat(float.NegativeInfinity), vMaxS = vMaxT, vMinS = TS.Splat(float.PositiveInfinity);
        int w = TS.Count, full = n / w, k = 0;
        float* dest = null, x = null, y = null;
        TV va = TS.Zero, vb = TS.Zero;
        int head = 0, streamed = 0;
        if (TForm.Active)
        {
            va = TS.Splat(deferred.Factors[ChunkStride * chunk]);
            vb = TS.Splat(deferred.Factors[(ChunkStride * chunk) + 1]);
            dest = deferred.Destination + c0;
            x = deferred.X + c0;
            y = deferred.Y + c0;
            head = StreamedHead(dest, n);
            streamed = StreamedFloats(n, head) / w;
        }

        for (; k < streamed; k++)
        {
            ahead.Prefetch(k * w);
            Step<TS, TV, TOp, TShift>(t, s, k * w, vShiftT, vShiftS, vC, expT, expS, exp2, ref accZT, ref accZS, ref accA, ref vMaxT, ref vMaxS, ref vMinS);
            int j = head + (k * w);
            TS.StoreNonTemporal(TForm.Combine<TS, TV>(TS.Load(x + j), TS.Load(y + j), va, vb), dest + j);
        }

        for (; k < full; k++)
        {
            ahead.Prefetch(k * w);
            Step<TS, TV, TOp, TShift>(t, s, k * w, vShiftT, vShiftS, vC, expT, expS, exp2, ref accZT, ref accZS, ref accA, ref vMaxT, ref vMaxS, ref vMinS);
        }

        zT = TS.SumAcross(accZT);
        zS = TS.SumAcross(accZS);
        a = TS.SumAcross(accA);
        maxT = float.NegativeInfinity;
        maxS = float.NegativeInfinity;
        minS = float.PositiveInfinity;
        if (full * w < n)
        {
            // The overlapping last vector: its lanes already summed are masked out; the stores rewrite equal values.
            TV keep = TS.TailMask(n - (full * w));
            TV tailZT = TS.Zero, tailZS = TS.Zero, tailA = TS.Zero;
            Step<TS, TV, TOp, TShift>(t, s, n - w, vShiftT, vShiftS, vC, expT, expS, exp2, ref tailZT, ref tailZS, ref tailA, ref vMaxT, ref vMaxS, ref vMinS);
            zT += TS.SumAcross(TS.Select(keep, tailZT, TS.Zero));
            zS += TS.SumAcross(TS.Select(keep, tailZS, TS.Zero));
            a += TS.SumAcross(TS.Select(keep, tailA, TS.Zero));
        }

        // (The overlapping last vector's lanes counted twice change no maximum or minimum.)
        if (TShift.TracksFirst)
        {
            maxT = TS.MaxAcross(vMaxT);
        }

        if (TShift.TracksSecond)
        {
            maxS = TS.MaxAcross(vMaxS);
            minS = -TS.MaxAcross(TS.Subtract(TS.Zero, vMinS));
        }

        if (TForm.Active)
        {
            // The partial lines before the first and after the last streamed vector, element by element: a vector store
            // there would also cover a line being streamed, and an ordinary store into a line still held by a
            // write-combining buffer waits for it to reach memory (hundreds of ns per row on short rows).
            float a0 = deferred.Factors[ChunkStride * chunk], b0 = deferred.Factors[(ChunkStride * chunk) + 1];
            CombineElements<TForm>(x, y, a0, b0, dest, 0, head);
            CombineElements<TForm>(x, y, a0, b0, dest, head + (streamed * w), n);
        }
    }

    /// <summary>One vector of <see cref="ChunkSums{TS, TV, TOp, TForm, TShift}"/> at column <paramref name="i"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Step<TS, TV, TOp, TShift>(float* t, float* s, int i, TV vShiftT, TV vShiftS, TV vC, float* expT, float* expS, in Exp2Constants<TS, TV> exp2, ref TV accZT, ref TV accZS, ref TV accA, ref TV maxT, ref TV maxS, ref TV minS)
        where TS : ISimd<TV>
        where TV : struct
        where TOp : struct, IDivergenceOp
        where TShift : struct, IShift
    {
        TV vt = TS.Load(t + i), vs = TS.Load(s + i);
        if (TShift.TracksFirst)
        {
            maxT = TS.Max(maxT, vt);
        }

        if (TShift.TracksSecond)
        {
            maxS = TS.Max(maxS, vs);
            if (TOp.Infinity == InfinityRule.TeacherMassWithoutStudent)
            {
                minS = TS.Min(minS, vs);
            }
        }

        TV yt = TShift.Exponent<TS, TV>(vt, vC, vShiftT);
        TV ys = TShift.Exponent<TS, TV>(vs, vC, vShiftS);
        if (!TS.Exp2TakesNegativeInfinity || TOp.WeightedSum != TeacherWeightedSum.None || TOp.StoresLogRatio)
        {
            // The exponents are used beyond the exponentials (sums, the stored log-ratio) or the exponential needs
            // them finite: −∞ becomes −FLT_MAX, whose 2^y is exactly 0. A general op uses only 2^y, and AVX-512 takes
            // 2^−∞ = 0 as it is (one instruction less per side).
            yt = TS.AtLeastLowest(yt);
            ys = TS.AtLeastLowest(ys);
        }

        TV et = SimdMath.Exp2<TS, TV>(yt, exp2), es = SimdMath.Exp2<TS, TV>(ys, exp2);
        TS.Store(et, expT + i);
        accZT = TS.Add(accZT, et);
        accZS = TS.Add(accZS, es);
        if (TOp.StoresLogRatio)
        {
            // The log-ratio the gradient needs, stored instead of e_s, and the weighted sum taken from the same floats.
            TV ratio = TS.Subtract(yt, ys);
            TS.Store(ratio, expS + i);
            accA = TS.MultiplyAdd(et, ratio, accA);
            return;
        }

        TS.Store(es, expS + i);

        // e_t · f(y_t, y_s) for the op's teacher-weighted sum; y ≥ −FLT_MAX makes every product finite (0 when its
        // weight is 0); where the value is really +∞ the support rule says so separately.
        accA = TOp.WeightedSum switch
        {
            TeacherWeightedSum.LogRatio => TS.MultiplyAdd(et, TS.Subtract(yt, ys), accA),
            TeacherWeightedSum.StudentLogit => TS.MultiplyAdd(et, ys, accA),
            TeacherWeightedSum.TeacherLogit => TS.MultiplyAdd(et, yt, accA),
            _ => accA,
        };
    }

    /// <summary>
    /// Floats from <paramref name="destination"/> to its first 64-byte (cache-line) boundary, where streaming stores
    /// start, at most <paramref name="n"/>; the boundary is a line for every width, so that the element-by-element
    /// stores beside the streamed lines never share a line with them. Always inlined: called out of line from the first
    /// pass it ran unoptimised at first and cost about 20% in the probe.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static int StreamedHead(float* destination, int n) =>
        Math.Min((int)(((64 - ((nuint)destination & 63)) & 63) / sizeof(float)), n);

    /// <summary>The floats from <paramref name="head"/> on that fill whole cache lines (a multiple of 16, so of every vector width).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static int StreamedFloats(int n, int head) => (n - head) & ~15;

    /// <summary>Whether a gradient row can be streamed at all: its floats are 4-byte aligned (a span cast from bytes may not be).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static bool CanStream(float* destination) => ((nuint)destination & 3) == 0;

    /// <summary>destination_j = Combine(x_j, y_j) element by element for j in [from, to): the partial lines beside streamed ones.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void CombineElements<TForm>(float* x, float* y, float a, float b, float* destination, int from, int to)
        where TForm : struct, IGradientForm
    {
        for (int j = from; j < to; j++)
        {
            destination[j] = TForm.Combine(x[j], y[j], a, b);
        }
    }

    /// <summary>
    /// destination_j = Combine(x_j, y_j) over n ≥ TS.Count columns, with streaming stores from the first 64-byte boundary
    /// of the destination when <paramref name="streaming"/> (ordinary stores for the head and the overlapping tail).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Combine<TS, TV, TForm>(float* x, float* y, float a, float b, float* destination, int n, bool streaming)
        where TS : ISimd<TV>
        where TV : struct
        where TForm : struct, IGradientForm
    {
        TV va = TS.Splat(a), vb = TS.Splat(b);
        int w = TS.Count, i = 0;
        if (streaming && TS.HasNonTemporalStore && n >= 4 * w && CanStream(destination))
        {
            // As in ChunkSums: the partial lines element by element, never a vector overlapping a streamed line.
            i = StreamedHead(destination, n);
            CombineElements<TForm>(x, y, a, b, destination, 0, i);
            int end = i + StreamedFloats(n, i);
            for (; i < end; i += w)
            {
                TS.StoreNonTemporal(TForm.Combine<TS, TV>(TS.Load(x + i), TS.Load(y + i), va, vb), destination + i);
            }

            CombineElements<TForm>(x, y, a, b, destination, i, n);
            return;
        }

        for (; i + w <= n; i += w)
        {
            TS.Store(TForm.Combine<TS, TV>(TS.Load(x + i), TS.Load(y + i), va, vb), destination + i);
        }

        if (i < n)
        {
            int at = n - w;
            TS.Store(TForm.Combine<TS, TV>(TS.Load(x + at), TS.Load(y + at), va, vb), destination + at);
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

/// <summary>
/// The two rows the chunked first pass reads (first side, second side): float rows, or a Half row (then its float
/// pointer is unused) widened chunk by chunk into <see cref="Widened"/> (at least min(V, 2048) floats).
/// </summary>
internal readonly unsafe struct RowSources(float* first, float* second, Half* firstHalf, Half* secondHalf, float* widened)
{
    public readonly float* First = first;
    public readonly float* Second = second;
    public readonly Half* FirstHalf = firstHalf;
    public readonly Half* SecondHalf = secondHalf;
    public readonly float* Widened = widened;
}

/// <summary>
/// Where the next chunk of each source starts (the next row's first chunk past the end of the row), for prefetching it
/// into L1 while this chunk is computed (16 KB of 48 KB): the next chunk's loop then reads from L1 instead of waiting
/// on L2 or memory (into L2 instead: the same within the noise, 0.99–1.05 in a probe of 8192 × 1024 and 256 × 32000). A
/// prefetch never faults, past the end of the inputs included.
/// </summary>
internal readonly unsafe struct Ahead
{
    private readonly byte* _first;
    private readonly byte* _second;
    private readonly int _firstBytes;
    private readonly int _secondBytes;
    private readonly int _length;
    private readonly int _beyond;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public Ahead(in RowSources sources, int column, int length, int nextLength)
    {
        _length = length;
        _beyond = nextLength - length;
        _firstBytes = sources.FirstHalf != null ? sizeof(Half) : sizeof(float);
        _secondBytes = sources.SecondHalf != null ? sizeof(Half) : sizeof(float);
        _first = sources.FirstHalf != null ? (byte*)(sources.FirstHalf + column) : (byte*)(sources.First + column);
        _second = sources.SecondHalf != null ? (byte*)(sources.SecondHalf + column) : (byte*)(sources.Second + column);
    }

    /// <summary>One prefetch per 64-byte line of each source, for the vector at column <paramref name="i"/> of this chunk.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Prefetch(int i)
    {
        if (System.Runtime.Intrinsics.X86.Sse.IsSupported)
        {
            Line(i);
            if (i < _beyond)
            {
                // The next chunk is longer than this one (a row's last chunks are shorter than its first): its columns
                // past this chunk's length are prefetched too, two per vector of this chunk.
                Line(i + _length);
            }
        }
    }

    /// <summary>The 64-byte line of each source's next chunk at column <paramref name="j"/>, where one starts there.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void Line(int j)
    {
        if (((j * _firstBytes) & 63) == 0)
        {
            System.Runtime.Intrinsics.X86.Sse.Prefetch0(_first + (j * _firstBytes));
        }

        if (((j * _secondBytes) & 63) == 0)
        {
            System.Runtime.Intrinsics.X86.Sse.Prefetch0(_second + (j * _secondBytes));
        }
    }
}
