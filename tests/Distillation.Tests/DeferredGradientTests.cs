using System.Runtime.Intrinsics;
using Distillation.Kernels;

namespace Distillation.Tests;

/// <summary>
/// The streamed kernels write each row's gradient during the next row's first pass (see FusedKernels): a batch must give
/// bit for bit the gradient of its rows computed one at a time, whatever the destination's alignment, the chunking of
/// the row, the rows skipped in between and the gradient's form (rescaled exponentials, q·g differences, infinite rows).
/// </summary>
public class DeferredGradientTests
{
    [Theory]
    [InlineData(37, 1)]
    [InlineData(1000, 0)]
    [InlineData(5000, 3)]
    [InlineData(9000, 2)]
    public void BatchGradient_EqualsEachRowAlone_BitForBit(int vocab, int offset)
    {
        const int rows = 6;
        var random = new Random(vocab + offset);
        float[] teacher = TestSupport.RandomLogits(random, rows * vocab);
        float[] student = TestSupport.RandomLogits(random, rows * vocab);
        student[(2 * vocab) + 5] = float.NegativeInfinity; // row 2: forward KL and soft CE are +∞ there (the finite (q − p) gradient)
        teacher[(3 * vocab) + 7] = float.NegativeInfinity; // row 3: reverse KL is +∞ there
        float[] weights = [1f, 0f, 2.5f, 1f, 0.5f, 1f];   // row 1 skipped between two streamed rows
        foreach (Divergence d in TestSupport.AllDivergences)
        {
            foreach (KernelPath path in new[] { KernelPath.Vector256, KernelPath.Vector512 })
            {
                var loss = new DistillationLoss(d, 2f) { MaxDegreeOfParallelism = 1 };

                // The gradient starts `offset` floats into its buffer, so its rows are not 64-byte aligned.
                float[] buffer = new float[(rows * vocab) + offset];
                loss.ComputeCore(TeacherDistribution.FromLogits(teacher, vocab), StudentDistribution.FromLogits(student, vocab), buffer.AsSpan(offset, rows * vocab), true, Reduction.Sum, default, default, path, weights);
                for (int r = 0; r < rows; r++)
                {
                    float[] alone = new float[vocab];
                    loss.ComputeCore(
                        TeacherDistribution.FromLogits(teacher.AsSpan(r * vocab, vocab).ToArray(), vocab),
                        StudentDistribution.FromLogits(student.AsSpan(r * vocab, vocab).ToArray(), vocab),
                        alone,
                        true,
                        Reduction.Sum,
                        default,
                        default,
                        path,
                        [weights[r]]);
                    int mismatch = Enumerable.Range(0, vocab).FirstOrDefault(j => BitConverter.SingleToInt32Bits(buffer[offset + (r * vocab) + j]) != BitConverter.SingleToInt32Bits(alone[j]), -1);
                    mismatch.Should().Be(-1, $"{d} {path} V={vocab} offset {offset} row {r}: column {mismatch} differs from the row computed alone");
                    alone.Should().OnlyContain(v => float.IsFinite(v), $"{d} {path} V={vocab} row {r}");
                }
            }
        }
    }

    [Fact]
    public void GradientOfTheLastRow_IsWrittenBeforeTheCallReturns_OnEveryThreadCount()
    {
        const int vocab = 4099, rows = 5;
        var random = new Random(5);
        float[] teacher = TestSupport.RandomLogits(random, rows * vocab);
        float[] student = TestSupport.RandomLogits(random, rows * vocab);
        foreach (int threads in new[] { 1, 2 })
        {
            var loss = new DistillationLoss(Divergence.ForwardKL, 2f) { MaxDegreeOfParallelism = threads };
            float[] gradient = Enumerable.Repeat(float.NaN, rows * vocab).ToArray();
            loss.Compute(TeacherDistribution.FromLogits(teacher, vocab), StudentDistribution.FromLogits(student, vocab), gradient);

            // Every row's gradient sums to 0 (q and p both sum to 1); a row never written would still hold NaN.
            for (int r = 0; r < rows; r++)
            {
                gradient.AsSpan(r * vocab, vocab).ToArray().Should().OnlyContain(v => float.IsFinite(v), $"row {r} on {threads} threads");
                gradient.AsSpan(r * vocab, vocab).ToArray().Sum(v => (double)v).Should().BeApproximately(0, 1e-6, $"row {r} on {threads} threads");
            }
        }
    }
}

/// <summary>The chunked kernels' own exponential and logarithm against Math.Pow and Math.Log in double.</summary>
public class Exp2Tests
{
    [Fact]
    public void LogOfNormal_IsWithinTwoHundredNanosAbsolute_AndFourUlpsRelative_OverTheMixturesRange()
    {
        var xs = new List<float> { 1.17549435e-38f, 1f, 0.5f, 2f, 1.41421356f, 0.70710678f, 1 - 6e-8f, 1 + 1.2e-7f, 3.4e38f };
        for (double e = -126; e <= 1; e += 0.00137)
        {
            xs.Add((float)Math.Pow(2, e));
        }

        foreach (Func<float, float> log in Logs())
        {
            foreach (float x in xs)
            {
                double expected = Math.Log(x), actual = log(x);
                double allowed = Math.Max(2e-7, 4 * 1.2e-7 * Math.Abs(expected));
                Math.Abs(actual - expected).Should().BeLessThanOrEqualTo(allowed, $"log({x:R})");
            }

            log(1f).Should().Be(0f, "log 1 is exact");
        }
    }

    private static IEnumerable<Func<float, float>> Logs()
    {
        if (Vector512.IsHardwareAccelerated)
        {
            yield return x => SimdMath.LogOfNormal<Simd512, Vector512<float>>(Vector512.Create(x)).ToScalar();
        }

        yield return x => SimdMath.LogOfNormal<Simd256, Vector256<float>>(Vector256.Create(x)).ToScalar();
    }

    [Fact]
    public void Exp2_IsWithinThreeHundredNanosRelative_AndExactWhereItMustBe()
    {
        var ys = new List<float>();
        for (double y = -160; y <= 1; y += 0.000731)
        {
            ys.Add((float)y);
        }

        ys.AddRange([0f, -0f, -1f, -0.5f, -126f, -149f, -150f, -1e30f, float.MinValue]);
        if (Vector512.IsHardwareAccelerated)
        {
            Check(ys, y => SimdMath.Exp2<Simd512, Vector512<float>>(Simd512.AtLeastLowest(Vector512.Create(y))).ToScalar());
        }

        Check(ys, y => SimdMath.Exp2<Simd256, Vector256<float>>(Simd256.AtLeastLowest(Vector256.Create(y))).ToScalar());
        SimdMath.Exp2<Simd256, Vector256<float>>(Simd256.AtLeastLowest(Vector256.Create(float.NegativeInfinity))).ToScalar().Should().Be(0f, "−∞ becomes −FLT_MAX, whose 2^y is exactly 0");
        float.IsNaN(SimdMath.Exp2<Simd256, Vector256<float>>(Simd256.AtLeastLowest(Vector256.Create(float.NaN))).ToScalar()).Should().BeTrue("NaN stays NaN through the clamp");
    }

    private static void Check(List<float> ys, Func<float, float> exp2)
    {
        double worst = 0;
        foreach (float y in ys)
        {
            double expected = Math.Pow(2, y), actual = exp2(y);
            if (y == 0)
            {
                actual.Should().Be(1, "2^0 is exact");
            }
            else if (y <= -150)
            {
                actual.Should().Be(0, $"2^{y} is below float's smallest subnormal");
            }
            else if (expected >= 1.17549435e-38)
            {
                worst = Math.Max(worst, Math.Abs(actual - expected) / expected);
            }
            else if (actual != 0 || System.Runtime.Intrinsics.X86.Avx512F.IsSupported)
            {
                Math.Abs(actual - expected).Should().BeLessThanOrEqualTo(2 * (double)float.Epsilon, $"2^{y} is subnormal: within two of its steps (the polynomial and the scale each round)");
            }

            // Without AVX-512 (no vscalefps) a subnormal result is flushed to exactly 0, as documented.
        }

        worst.Should().BeLessThan(3e-7);
    }
}
