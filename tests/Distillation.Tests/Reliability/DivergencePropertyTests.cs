using CsCheck;
using Distillation.Kernels;
using Xunit.Abstractions;

namespace Distillation.Tests.Reliability;

/// <summary>
/// Property tests of every divergence over random shapes (V = 1, 2, 7, 16, 17, 100, 1000 and any small V), values
/// (−∞ entries, magnitudes up to ±80 and ±1e4, clusters on a large offset), temperatures in [1e-3, 1e3], padding
/// masks and ignored labels, on all three kernel paths. Cases per property: <see cref="ReliabilitySettings.Iterations"/>.
/// </summary>
public sealed class DivergencePropertyTests(ITestOutputHelper output)
{
    public static TheoryData<DivergenceKind> Kinds() =>
    [
        DivergenceKind.ForwardKL, DivergenceKind.ReverseKL, DivergenceKind.SoftCrossEntropy, DivergenceKind.GeneralizedJsd,
        DivergenceKind.SkewKL, DivergenceKind.SkewReverseKL, DivergenceKind.TotalVariation,
    ];

    /// <summary>
    /// On every path: no NaN, divergences ≥ 0, +∞ exactly where the true value is, excluded rows 0 with a zero gradient,
    /// gradients finite; each path within 1e-5 (values, relative) and 1e-5·max(1, max|g|) (gradients) of the exact
    /// double-precision reference; and the same with the teacher rounded through System.Half.
    /// </summary>
    [Theory]
    [MemberData(nameof(Kinds))]
    public void Invariants_HoldOnEveryPath(DivergenceKind kind)
    {
        Gen<(Divergence, Batch)> gen = Gen.Select(Generators.Divergence(kind), Generators.Batch(Generators.Vocab));
        Calls.Property(output, $"{kind}.invariants", gen, c =>
        {
            (Divergence d, Batch b) = c;
            Outcome[] outcomes = Calls.Paths.Select(path => Calls.Divergence(d, b, path)).ToArray();
            for (int i = 0; i < outcomes.Length; i++)
            {
                CheckOutcome(d, b, outcomes[i], b.Teacher, Calls.Paths[i].ToString());
            }

            // Every path computes the same function: in particular all agree on which rows are +∞.
            for (int r = 0; r < b.Rows; r++)
            {
                bool[] infinite = outcomes.Select(o => float.IsPositiveInfinity(o.RowValues[r])).ToArray();
                Ensure.That(infinite.All(x => x == infinite[0]), () => $"{d} row {r}: the paths disagree on +∞: {string.Join(", ", Calls.Paths.Select((p, i) => $"{p} = {outcomes[i].RowValues[r]}"))}\n{b}");
            }

            // A half-precision teacher (the ms-swift bf16 bug made JSD negative): still ≥ 0, never NaN.
            float[] half = Generators.ThroughHalf(b.Teacher);
            Outcome h = Calls.Divergence(d, b, b.Path, teacher: half);
            CheckOutcome(d, b, h, half, $"{b.Path} half-precision teacher");
        });
    }

    /// <summary>Zero (beyond rounding) at identity: the student equal to the teacher, on every path; the gradient vanishes.</summary>
    [Theory]
    [MemberData(nameof(Kinds))]
    public void Divergence_IsZero_AtIdentity(DivergenceKind kind)
    {
        // Soft CE is H(p) at identity, not 0: its gradient is forward KL's, so forward KL stands in for it.
        DivergenceKind checkedKind = kind == DivergenceKind.SoftCrossEntropy ? DivergenceKind.ForwardKL : kind;
        Gen<(Divergence, Batch)> gen = Gen.Select(Generators.Divergence(checkedKind), Generators.Batch(Generators.Vocab));
        Calls.Property(output, $"{kind}.identity", gen, c =>
        {
            (Divergence d, Batch b) = c;
            float[] same = (float[])b.Teacher.Clone();
            foreach (KernelPath path in Calls.Paths)
            {
                Outcome o = Calls.Divergence(d, b, path, student: same);
                for (int r = 0; r < b.Rows; r++)
                {
                    float v = o.RowValues[r];
                    Ensure.That(v >= 0 && v <= IdentityValueTolerance, () => $"{d} {path} row {r}: {v} at identity (tolerance {IdentityValueTolerance})\n{b}");
                    double g = Calls.MaxAbs(o.Gradient.AsSpan(r * b.Vocab, b.Vocab));
                    double tolerance = IdentityGradientTolerance / b.Temperature;
                    Ensure.That(g <= tolerance, () => $"{d} {path} row {r}: |gradient| {g} at identity (tolerance {tolerance})\n{b}");
                }
            }
        });
    }

    /// <summary>
    /// Shift invariance: adding a per-row constant to the teacher's and (independently) the student's logits changes
    /// nothing. Values and shifts lie on the 2^-8 grid so that the shifted inputs are exact in float: any difference
    /// is the kernel's own rounding (allowed: 1e-5 relative on values, 1e-5·max(1, max|g|) on gradients).
    /// </summary>
    [Theory]
    [MemberData(nameof(Kinds))]
    public void Shifting_ARow_ChangesNothing(DivergenceKind kind)
    {
        Gen<(Divergence, Batch, float[], float[])> gen =
            from d in Generators.Divergence(kind)
            from b in Generators.Batch(Generators.Vocab)
            from tShift in Generators.GridShifts(b.Rows)
            from sShift in Generators.GridShifts(b.Rows)
            select (d, b with { Teacher = Generators.OnGrid(b.Teacher), Student = Generators.OnGrid(b.Student) }, tShift, sShift);
        Calls.Property(output, $"{kind}.shift", gen, c =>
        {
            (Divergence d, Batch b, float[] tShift, float[] sShift) = c;
            float[] t = Shift(b.Teacher, tShift, b.Vocab), s = Shift(b.Student, sShift, b.Vocab);
            foreach (KernelPath path in Calls.Paths)
            {
                Outcome plain = Calls.Divergence(d, b, path);
                Outcome shifted = Calls.Divergence(d, b, path, teacher: t, student: s);
                for (int r = 0; r < b.Rows; r++)
                {
                    Ensure.That(Calls.ValuesAgree(shifted.RowValues[r], plain.RowValues[r]), () => $"{d} {path} row {r}: {shifted.RowValues[r]} shifted vs {plain.RowValues[r]}\n{b}\n  teacher shifts [{string.Join(", ", tShift)}] student shifts [{string.Join(", ", sShift)}]");
                    if (d.Kind == DivergenceKind.TotalVariation && NearTie(b.TeacherRow(r), b.StudentRow(r), b.Temperature, exactToo: true))
                    {
                        continue; // ½ sign(q − p) at a tie follows the rounding, which a shift may change on the scalar path
                    }

                    StableReference.Row(d, b.TeacherRow(r), DistributionKind.Logits, b.StudentRow(r), b.Temperature, default, out double termScale);
                    double e = Calls.GradientError(shifted.Gradient.AsSpan(r * b.Vocab, b.Vocab), plain.Gradient.AsSpan(r * b.Vocab, b.Vocab).ToArray().Select(v => (double)v).ToArray(), Calls.GradientFloor(b.Temperature, termScale));
                    Ensure.That(e <= 1e-5, () => $"{d} {path} row {r}: gradient moved by {e} (relative) under a shift, κ = {termScale}\n  plain   [{string.Join(", ", plain.Gradient.Skip(r * b.Vocab).Take(b.Vocab))}]\n  shifted [{string.Join(", ", shifted.Gradient.Skip(r * b.Vocab).Take(b.Vocab))}]\n  values {plain.RowValues[r]} {shifted.RowValues[r]}\n  t row [{Batch.Show(b.TeacherRow(r).ToArray())}]\n  s row [{Batch.Show(b.StudentRow(r).ToArray())}]\n  shifts {tShift[r]} {sShift[r]}\n{b}");
                }
            }
        });
    }

    /// <summary>The gradient of every path against central finite differences of <see cref="DoubleFormulas"/> (small V).</summary>
    [Theory]
    [MemberData(nameof(Kinds))]
    public void Gradient_MatchesFiniteDifferences(DivergenceKind kind)
    {
        Gen<(Divergence, Batch)> gen = Gen.Select(Generators.Divergence(kind), Generators.Batch(Generators.SmallVocab, maxRows: 2));
        Calls.Property(output, $"{kind}.finite-differences", gen, c =>
        {
            (Divergence d, Batch b) = c;
            foreach (KernelPath path in Calls.Paths)
            {
                Outcome o = Calls.Divergence(d, b, path);
                for (int r = 0; r < b.Rows; r++)
                {
                    if (!b.IsReal(r))
                    {
                        continue;
                    }

                    if (StableReference.IsInfinite(d, b.TeacherRow(r), DistributionKind.Logits, b.StudentRow(r)))
                    {
                        continue; // +∞ has no finite difference (the invariants property checks these rows)
                    }

                    // The math is shift invariant: subtracting each row's maximum keeps DoubleFormulas' logs small, so
                    // that its finite differences are not lost to the rounding of logits ÷ T of magnitude 1e7.
                    double[] t = Centred(b.TeacherRow(r)), s = Centred(b.StudentRow(r));
                    double expected = DoubleFormulas.Row(d, t, s, b.Temperature);
                    Ensure.That(Calls.ValuesAgree(o.RowValues[r], d.IsDivergence ? Math.Max(expected, 0) : expected), () => $"{d} {path} row {r}: {o.RowValues[r]} vs DoubleFormulas {expected}\n{b}");
                    if (d.Kind == DivergenceKind.TotalVariation && NearTie(b.TeacherRow(r), b.StudentRow(r), b.Temperature, exactToo: true, relative: 1e-2))
                    {
                        continue; // TVD has a kink at p_j = q_j: the stencil (±2e-3 in s/T) must not cross it
                    }

                    // A step of 1e-3 in softened units (s/T) with the five-point stencil: truncation ~1e-13, rounding of
                    // DoubleFormulas' logs (up to 1e7 for logits 1e4 at T = 1e-3) ~1e-13·|L| relative.
                    double[] fd = Calls.FivePointGradient(x => DoubleFormulas.Row(d, t, x, b.Temperature), s, 1e-3 * b.Temperature);
                    StableReference.Row(d, b.TeacherRow(r), DistributionKind.Logits, b.StudentRow(r), b.Temperature, default, out double termScale);
                    double e = Calls.GradientError(o.Gradient.AsSpan(r * b.Vocab, b.Vocab), fd, Calls.GradientFloor(b.Temperature, termScale));
                    Ensure.That(e <= 1e-5, () => $"{d} {path} row {r}: gradient off finite differences by {e} (relative)\n  library [{string.Join(", ", o.Gradient.AsSpan(r * b.Vocab, b.Vocab).ToArray())}]\n  fd      [{string.Join(", ", fd)}]\n{b}");
                }
            }
        });
    }

    /// <summary>At identity a divergence is 0 up to float rounding of logs of magnitude ≤ 88 (the float exp range).</summary>
    internal const double IdentityValueTolerance = 2e-5;

    /// <summary>At identity |dL/ds| ≤ this / T: the rounding of the same logs, through the 1/T of the chain rule.</summary>
    internal const double IdentityGradientTolerance = 1e-4;

    internal static void CheckOutcome(Divergence d, Batch b, Outcome o, float[] teacher, string where)
    {
        Ensure.That(!double.IsNaN(o.Result.Value) && !double.IsNaN(o.Result.Sum), () => $"{d} {where}: NaN result {o.Result}\n{b}");
        Ensure.That(Calls.AllFinite(o.Gradient), () => $"{d} {where}: non-finite gradient\n{b}");
        var reference = new double[b.Vocab];
        for (int r = 0; r < b.Rows; r++)
        {
            float v = o.RowValues[r];
            ReadOnlySpan<float> g = o.Gradient.AsSpan(r * b.Vocab, b.Vocab);
            if (!b.IsReal(r))
            {
                Ensure.That(v == 0 && Calls.AllZero(g), () => $"{d} {where} row {r}: an excluded row has value {v} or a gradient\n{b}");
                continue;
            }

            Ensure.That(!float.IsNaN(v), () => $"{d} {where} row {r}: NaN\n{b}");
            Ensure.That(!d.IsDivergence || v >= 0, () => $"{d} {where} row {r}: negative divergence {v}\n{b}");
            ReadOnlySpan<float> t = teacher.AsSpan(r * b.Vocab, b.Vocab), s = b.StudentRow(r);
            bool infinite = StableReference.IsInfinite(d, t, DistributionKind.Logits, s);
            Ensure.That(!float.IsPositiveInfinity(v) || infinite, () => $"{d} {where} row {r}: +∞, but the true value is finite\n{b}");
            double expected = StableReference.Row(d, t, DistributionKind.Logits, s, b.Temperature, reference, out double termScale);
            if (infinite && !float.IsPositiveInfinity(v))
            {
                // The true value is +∞ but the weight of the infinite term underflowed in this path's precision. That
                // is allowed only if every path agrees (checked by the caller); the finite value has no reference.
                continue;
            }

            expected = d.IsDivergence ? Math.Max(expected, 0) : expected;
            Ensure.That(Calls.ValuesAgree(v, expected), () => $"{d} {where} row {r}: {v} vs the double reference {expected}\n{b}");
            if (d.Kind == DivergenceKind.TotalVariation && NearTie(t, s, b.Temperature, exactToo: true))
            {
                continue; // ½ sign(q − p) at a (near) tie follows each path's rounding
            }

            double e = Calls.GradientError(g, reference, Calls.GradientFloor(b.Temperature, termScale));
            float[] shown = g.ToArray();
            Ensure.That(e <= 1e-5, () => $"{d} {where} row {r}: gradient off the double reference by {e} (relative to max(1, 1/T, κ = {termScale}, max|g|))\n  library   [{string.Join(", ", shown.Take(32))}]\n  reference [{string.Join(", ", reference.Take(32))}]\n{b}");
        }
    }

    /// <summary>The row minus its maximum, in double (exact for float inputs); −∞ stays −∞.</summary>
    internal static double[] Centred(ReadOnlySpan<float> row)
    {
        float max = float.NegativeInfinity;
        foreach (float v in row)
        {
            max = Math.Max(max, v);
        }

        var x = new double[row.Length];
        for (int j = 0; j < x.Length; j++)
        {
            x[j] = float.IsNegativeInfinity(row[j]) ? double.NegativeInfinity : (double)row[j] - max;
        }

        return x;
    }

    internal static float[] Shift(float[] x, float[] perRow, int vocab) =>
        x.Select((v, i) => float.IsNegativeInfinity(v) ? v : v + perRow[i / vocab]).ToArray();

    /// <summary>
    /// Whether some p_j ≠ q_j of row r lie within float rounding of each other (TVD's kink: ½ sign(q − p) then depends on
    /// the rounding, and no path can be asked to agree with another there). Exact ties give sign 0 on every path.
    /// </summary>
    internal static bool NearTie(Batch b, int r) => NearTie(b.TeacherRow(r), b.StudentRow(r), b.Temperature);

    internal static bool NearTie(ReadOnlySpan<float> teacher, ReadOnlySpan<float> student, float temperature, bool exactToo = false, double relative = 1e-5)
    {
        var p = new double[teacher.Length];
        var q = new double[teacher.Length];
        StableReference.LogSoftmax(teacher, DistributionKind.Logits, temperature, p);
        StableReference.LogSoftmax(student, DistributionKind.Logits, temperature, q);
        for (int j = 0; j < p.Length; j++)
        {
            double pj = Math.Exp(p[j]), qj = Math.Exp(q[j]);
            if ((exactToo || pj != qj) && Math.Abs(pj - qj) <= (relative * Math.Max(pj, qj)) + 1e-30 && Math.Max(pj, qj) > 0)
            {
                return true;
            }
        }

        return false;
    }
}
