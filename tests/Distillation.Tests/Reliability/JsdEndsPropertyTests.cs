using CsCheck;
using Distillation.Kernels;
using Xunit.Abstractions;

namespace Distillation.Tests.Reliability;

/// <summary>JSD(β) near and at its ends, as documented: β = 0/1 are forward/reverse KL exactly; JSD(β) → 0 as β → 0+ or 1−.</summary>
public sealed class JsdEndsPropertyTests(ITestOutputHelper output)
{
    /// <summary>JSD(0) and SkewKL(0) are forward KL, JSD(1) and SkewReverseKL(0) reverse KL: values and gradients bit for bit.</summary>
    [Fact]
    public void Ends_AreForwardAndReverseKL_BitForBit()
    {
        Calls.Property(output, "Jsd.ends-are-kl", Generators.Batch(Generators.Vocab), b =>
        {
            Outcome forward = Calls.Divergence(Divergence.ForwardKL, b, b.Path);
            Outcome reverse = Calls.Divergence(Divergence.ReverseKL, b, b.Path);
            foreach ((Divergence d, Outcome expected) in new[] { (Divergence.GeneralizedJsd(0), forward), (Divergence.SkewKL(0), forward), (Divergence.GeneralizedJsd(1), reverse), (Divergence.SkewReverseKL(0), reverse) })
            {
                Outcome o = Calls.Divergence(d, b, b.Path);
                Ensure.That(Calls.BitEqual(o.RowValues, expected.RowValues) && Calls.BitEqual(o.Gradient, expected.Gradient) && Calls.BitEqual(o.Result.Sum, expected.Result.Sum), () => $"{d} is not bit for bit its KL\n{b}");
            }
        });
    }

    /// <summary>
    /// For β in (0, 1): 0 ≤ JSD(β) ≤ h(β) = −β log β − (1 − β) log(1 − β) (so JSD(β) → 0 as β → 0+ or 1−, unlike the
    /// β = 0/1 convention), with equality when teacher and student have disjoint supports.
    /// </summary>
    [Fact]
    public void InteriorJsd_IsBoundedByTheBinaryEntropy_AndReachesItOnDisjointSupports()
    {
        Gen<double> beta = Gen.OneOf(Gen.Double[-6, -1].Select(e => Math.Pow(10, e)), Gen.Double[-6, -1].Select(e => 1 - Math.Pow(10, e)), Gen.Double[0.01, 0.99]);
        Gen<(double, Batch, bool, int)> gen = Gen.Select(beta, Generators.Batch(Gen.Int[2, 100]), Gen.Bool, Gen.Int[1, 1 << 20]);
        Calls.Property(output, "Jsd.binary-entropy-bound", gen, c =>
        {
            (double β, Batch b, bool disjoint, int cut) = c;
            if (disjoint)
            {
                b = Disjoint(b, 1 + (cut % (b.Vocab - 1)));
            }

            double h = -(β * Math.Log(β)) - ((1 - β) * Math.Log(1 - β));
            var d = Divergence.GeneralizedJsd(β);
            foreach (KernelPath path in Calls.Paths)
            {
                Outcome o = Calls.Divergence(d, b, path);
                for (int r = 0; r < b.Rows; r++)
                {
                    if (!b.IsReal(r))
                    {
                        continue;
                    }

                    float v = o.RowValues[r];
                    Ensure.That(v >= 0 && v <= h + 2e-5, () => $"{d} {path} row {r}: {v} outside [0, h(β) = {h:R}]\n{b}");
                    if (disjoint)
                    {
                        Ensure.That(Math.Abs(v - h) <= 2e-5 + (1e-5 * h), () => $"{d} {path} row {r}: {v} on disjoint supports, not h(β) = {h:R}\n{b}");
                    }
                }
            }
        });
    }

    /// <summary>The teacher keeps columns [0, cut), the student [cut, V): disjoint supports.</summary>
    private static Batch Disjoint(Batch b, int cut)
    {
        float[] t = (float[])b.Teacher.Clone(), s = (float[])b.Student.Clone();
        for (int r = 0; r < b.Rows; r++)
        {
            for (int j = 0; j < b.Vocab; j++)
            {
                int i = (r * b.Vocab) + j;
                if (j < cut)
                {
                    s[i] = float.NegativeInfinity;
                    t[i] = float.IsNegativeInfinity(t[i]) ? 0 : t[i];
                }
                else
                {
                    t[i] = float.NegativeInfinity;
                    s[i] = float.IsNegativeInfinity(s[i]) ? 0 : s[i];
                }
            }
        }

        return b with { Teacher = t, Student = s };
    }
}
