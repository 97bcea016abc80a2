using CsCheck;
using Distillation.Kernels;
using Xunit.Abstractions;

namespace Distillation.Tests.Reliability;

/// <summary>Property tests of the hard-label loss (T = 1, label smoothing ε in [0, 1]) on all three kernel paths.</summary>
public sealed class LanguageModelPropertyTests(ITestOutputHelper output)
{
    private static readonly Gen<float> Smoothing = Gen.Frequency((1, Gen.OneOf(0f, 1f, 0.1f)), (3, Gen.Float[0f, 1f]));

    /// <summary>
    /// No NaN, values ≥ 0, +∞ exactly where the true value is, excluded rows 0 with a zero gradient, gradients finite
    /// and within 1e-5 (values, relative) and 1e-5·max(1, max|g|) (gradients) of the exact double reference.
    /// </summary>
    [Fact]
    public void Invariants_HoldOnEveryPath()
    {
        Calls.Property(output, "LanguageModel.invariants", Gen.Select(Smoothing, Generators.Batch(Generators.Vocab)), c =>
        {
            (float eps, Batch b) = c;
            var reference = new double[b.Vocab];
            foreach (KernelPath path in Calls.Paths)
            {
                Outcome o = Calls.LanguageModel(eps, b, path);
                Ensure.That(!double.IsNaN(o.Result.Value) && Calls.AllFinite(o.Gradient), () => $"ε={eps} {path}: NaN value or non-finite gradient\n{b}");
                for (int r = 0; r < b.Rows; r++)
                {
                    float v = o.RowValues[r];
                    ReadOnlySpan<float> g = o.Gradient.AsSpan(r * b.Vocab, b.Vocab);
                    if (!b.IsReal(r))
                    {
                        Ensure.That(v == 0 && Calls.AllZero(g), () => $"ε={eps} {path} row {r}: an excluded row has a value or gradient\n{b}");
                        continue;
                    }

                    ReadOnlySpan<float> s = b.StudentRow(r);
                    bool infinite = (eps < 1 && float.IsNegativeInfinity(s[b.Labels[r]])) || (eps > 0 && s.Contains(float.NegativeInfinity));
                    Ensure.That(v >= 0 && float.IsPositiveInfinity(v) == infinite, () => $"ε={eps} {path} row {r}: value {v} (true value {(infinite ? "+∞" : "finite, ≥ 0")})\n{b}");
                    double expected = StableReference.LanguageModel(s, b.Labels[r], eps, reference);
                    Ensure.That(Calls.ValuesAgree(v, expected), () => $"ε={eps} {path} row {r}: {v} vs the double reference {expected}\n{b}");
                    double e = Calls.GradientError(g, reference);
                    float[] shown = g.ToArray();
                    Ensure.That(e <= 1e-5, () => $"ε={eps} {path} row {r}: gradient off the reference by {e}\n  library   [{string.Join(", ", shown.Take(32))}]\n  reference [{string.Join(", ", reference.Take(32))}]\n{b}");
                }
            }
        });
    }

    /// <summary>Adding a per-row constant to the student's logits (on the exact 2^-8 grid) changes nothing beyond rounding.</summary>
    [Fact]
    public void Shifting_ARow_ChangesNothing()
    {
        Gen<(float, Batch, float[])> gen =
            from eps in Smoothing
            from b in Generators.Batch(Generators.Vocab)
            from shifts in Generators.GridShifts(b.Rows)
            select (eps, b with { Student = Generators.OnGrid(b.Student) }, shifts);
        Calls.Property(output, "LanguageModel.shift", gen, c =>
        {
            (float eps, Batch b, float[] shifts) = c;
            float[] shifted = DivergencePropertyTests.Shift(b.Student, shifts, b.Vocab);
            foreach (KernelPath path in Calls.Paths)
            {
                Outcome plain = Calls.LanguageModel(eps, b, path);
                Outcome moved = Calls.LanguageModel(eps, b, path, shifted);
                for (int r = 0; r < b.Rows; r++)
                {
                    Ensure.That(Calls.ValuesAgree(moved.RowValues[r], plain.RowValues[r]), () => $"ε={eps} {path} row {r}: {moved.RowValues[r]} shifted vs {plain.RowValues[r]}\n{b}");
                    double e = Calls.GradientError(moved.Gradient.AsSpan(r * b.Vocab, b.Vocab), plain.Gradient.AsSpan(r * b.Vocab, b.Vocab));
                    Ensure.That(e <= 1e-5, () => $"ε={eps} {path} row {r}: gradient moved by {e} under a shift\n{b}");
                }
            }
        });
    }

    /// <summary>The gradient against five-point finite differences of <see cref="DoubleFormulas.LanguageModel"/> (small V).</summary>
    [Fact]
    public void Gradient_MatchesFiniteDifferences()
    {
        Calls.Property(output, "LanguageModel.finite-differences", Gen.Select(Smoothing, Generators.Batch(Generators.SmallVocab, maxRows: 2)), c =>
        {
            (float eps, Batch b) = c;
            foreach (KernelPath path in Calls.Paths)
            {
                Outcome o = Calls.LanguageModel(eps, b, path);
                for (int r = 0; r < b.Rows; r++)
                {
                    if (!b.IsReal(r) || float.IsPositiveInfinity(o.RowValues[r]))
                    {
                        continue;
                    }

                    double[] s = DivergencePropertyTests.Centred(b.StudentRow(r));
                    int label = b.Labels[r];
                    double expected = DoubleFormulas.LanguageModel(s, label, eps);
                    if (!double.IsFinite(expected))
                    {
                        continue; // ε = 1 with a −∞ logit: DoubleFormulas forms 0 · ∞ where the library (rightly) skips the label term
                    }

                    Ensure.That(Calls.ValuesAgree(o.RowValues[r], expected), () => $"ε={eps} {path} row {r}: {o.RowValues[r]} vs DoubleFormulas {expected}\n{b}");
                    double[] fd = Calls.FivePointGradient(x => DoubleFormulas.LanguageModel(x, label, eps), s, 1e-3);
                    double e = Calls.GradientError(o.Gradient.AsSpan(r * b.Vocab, b.Vocab), fd);
                    Ensure.That(e <= 1e-5, () => $"ε={eps} {path} row {r}: gradient off finite differences by {e}\n{b}");
                }
            }
        });
    }
}
