using System;

namespace Distillation.Fuzz;

/// <summary>The tables the decoder picks from: ordinary values first (byte 0 is always valid), then edge cases, then invalid ones.</summary>
internal static class Values
{
    public static readonly int[] Vocabularies = [5, 1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 100, 1000, 2049, 4097, 0, -1, int.MinValue];

    public static readonly float[] Temperatures = [1f, 2f, 0.5f, 1e-3f, 1e3f, 1e-6f, 1e6f, 3.7f, 0.01f, 100f, 0f, -1f, float.NaN, float.PositiveInfinity, 1e-7f, 2e6f, float.Epsilon, float.NegativeInfinity];

    public static readonly double[] Parameters = [0.5, 0.1, 0.9, 0, 1, 1e-9, 1 - 1e-9, 1e-40, 1e-300, 0.999999, -0.1, 1.1, double.NaN, double.PositiveInfinity, double.Epsilon];

    public static readonly double[] Divisors = [3.5, 1, 1e-300, 1e300, 0.5, 0, -1, double.NaN, double.PositiveInfinity];

    public static readonly float[] Smoothings = [0f, 0.1f, 1f, 0.5f, 1e-7f, -0.1f, 1.5f, float.NaN];

    public static readonly float[] Weights = [1f, 0f, 0.5f, 2f, 1e30f, float.Epsilon, 1e-38f, -1f, float.NaN, float.PositiveInfinity];

    public static readonly double[] Lambdas = [0.5, 0, 1, 0.1, 0.9, 1e-12, -0.1, 1.5, double.NaN];

    public static readonly int[] Labels = [-100, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 15, 16, 99, 999, -1, int.MaxValue, int.MinValue];

    public static readonly double[] SequenceLogProbabilities = [-1, -0.5, -2, 0, double.NegativeInfinity, -700, -746, -1e10, -1e-300, 1e-7, 1, double.NaN, double.PositiveInfinity];

    /// <summary>Special element values (the decoder mostly produces moderate finite values from the byte itself).</summary>
    public static readonly float[] Specials =
    [
        float.NegativeInfinity, 0f, -0f, 1e30f, -1e30f, 80f, -80f, 1e4f, -1e4f, 88.7f, -87.4f, -103.3f, 745f, -745f,
        float.MaxValue, float.MinValue, float.Epsilon, -float.Epsilon, 1e-38f, 1e20f, -1e20f, 3e38f, -3e38f, 1e-45f,
        float.NaN, float.PositiveInfinity,
    ];

    /// <summary>One element: moderate values for most bytes, the specials and raw floats for the rest.</summary>
    public static float Element(Input input)
    {
        int b = input.Byte();
        return b < 200 ? (b - 100) / 8f : b < 200 + Specials.Length ? Specials[b - 200] : b >= 248 ? input.RawFloat() : (b - 224) * 37.5f;
    }
}
