using System.Runtime.Intrinsics;
using Distillation.Kernels;

namespace Distillation.Tests;

/// <summary>The chunked kernels' own exponential and logarithm against Math.Pow and Math.Log in double.</summary>
public class SimdMathTests
{
    [Fact]
    public void LogOfNormal_IsWithinTwoHundredNanosAbsolute_AndFourUlpsRelative_OverTheMixturesRange()
    {
        var xs = new List<float> { 1.17549435e-38f, 1f, 0.5f, 2f, 1.41421356f, 0.70710678f, 1 - 6e-8f, 1 + 1.2e-7f, 3.4e38f, 0.75f, 1.5f, 0.75f * (1 - 6e-8f), 1.5f * (1 - 6e-8f) };
        for (double e = -126; e <= 1; e += 0.00137)
        {
            xs.Add((float)Math.Pow(2, e));
        }

        // Every bin edge of the table form (z = 1 + i/16 and 1/2 + i/32), and a float either side of it, in two binades.
        for (int i = 0; i <= 16; i++)
        {
            foreach (float edge in new[] { 1 + (i / 16f), 0.5f + (i / 32f) })
            {
                foreach (float scale in new[] { 1f, 0.0009765625f })
                {
                    float x = edge * scale;
                    xs.AddRange([x, MathF.BitDecrement(x), MathF.BitIncrement(x)]);
                }
            }
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

    [Fact]
    public void LogOfNormal_IsWithinThreeUlps_OnEverySixteenthFloatOfTheBinadesAroundOne()
    {
        // Relative accuracy where log x is small: [1/2, 2) holds every bin of the table form twice and both sides of 1.
        foreach (Func<float, float> log in Logs())
        {
            double worst = 0;
            float at = 0;
            for (int bits = BitConverter.SingleToInt32Bits(0.5f); bits < BitConverter.SingleToInt32Bits(2f); bits += 16)
            {
                float x = BitConverter.Int32BitsToSingle(bits);
                double expected = Math.Log(x);
                float magnitude = (float)Math.Abs(expected);
                double ulp = expected == 0 ? float.Epsilon : MathF.BitIncrement(magnitude) - magnitude;
                double error = Math.Abs(log(x) - expected) / ulp;
                if (error > worst)
                {
                    worst = error;
                    at = x;
                }
            }

            worst.Should().BeLessThanOrEqualTo(3, $"worst at {at:R}");
        }
    }

    private static IEnumerable<Func<float, float>> Logs()
    {
        if (Vector512.IsHardwareAccelerated)
        {
            yield return x => SimdMath.LogOfNormal<Simd512, Vector512<float>>(Vector512.Create(x)).ToScalar();
            yield return x => SimdMath.CephesLog<Simd512, Vector512<float>>(Vector512.Create(x)).ToScalar();
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
