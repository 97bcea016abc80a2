using System;

namespace Distillation.Sparse;

/// <summary>
/// expm1, log1p and log(1 − e^x) accurate near 0 (the BCL's <c>double.ExpM1</c> and <c>double.LogP1</c> are
/// <c>exp(x) − 1</c> and <c>log(1 + x)</c>, which cancel there).
/// </summary>
internal static class StableMath
{
    /// <summary>e^x − 1 to a few ulps (Kahan: (u − 1)·x / log u with u = e^x).</summary>
    public static double ExpM1(double x)
    {
        double u = Math.Exp(x);
        if (u == 1.0)
        {
            return x;
        }

        double um1 = u - 1.0;
        return um1 == -1.0 ? -1.0 : double.IsPositiveInfinity(u) ? u : um1 * x / Math.Log(u);
    }

    /// <summary>log(1 + x) to a few ulps (Kahan: log(u)·x / (u − 1) with u = 1 + x).</summary>
    public static double Log1P(double x)
    {
        double u = 1.0 + x;
        return u == 1.0 ? x : double.IsPositiveInfinity(u) ? u : Math.Log(u) * x / (u - 1.0);
    }

    /// <summary>
    /// log(1 − e^x) for x ≤ 0 (Mächler's log1mexp): log(−expm1(x)) near 0, log1p(−e^x) below −ln 2; −∞ at x = 0 and 0 at −∞.
    /// </summary>
    public static double Log1MinusExp(double x) =>
        x > -0.6931471805599453 ? Math.Log(-ExpM1(x)) : Log1P(-Math.Exp(x));
}
