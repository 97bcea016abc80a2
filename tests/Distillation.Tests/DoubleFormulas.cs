namespace Distillation.Tests;

/// <summary>
/// An independent double-precision implementation of every row loss, written from the definitions (not from the
/// library's code), used for finite differences and as a second opinion.
/// </summary>
internal static class DoubleFormulas
{
    public static double LogSumExp(IReadOnlyList<double> z)
    {
        double m = z.Max();
        if (double.IsNegativeInfinity(m))
        {
            return m;
        }

        return m + Math.Log(z.Sum(v => Math.Exp(v - m)));
    }

    public static double[] LogSoftmax(IReadOnlyList<double> logits, double temperature)
    {
        double[] z = logits.Select(v => v / temperature).ToArray();
        double lse = LogSumExp(z);
        return z.Select(v => v - lse).ToArray();
    }

    /// <summary>KL(a ‖ b) from log-probabilities, 0·log 0 = 0.</summary>
    public static double KL(double[] logA, double[] logB)
    {
        double sum = 0;
        for (int j = 0; j < logA.Length; j++)
        {
            if (!double.IsNegativeInfinity(logA[j]))
            {
                sum += Math.Exp(logA[j]) * (logA[j] - logB[j]);
            }
        }

        return sum;
    }

    /// <summary>log(w·e^a + (1−w)·e^b) elementwise, in log space.</summary>
    public static double[] LogMix(double[] logA, double[] logB, double w) =>
        logA.Select((a, j) => LogAdd(Math.Log(w) + a, Math.Log(1 - w) + logB[j])).ToArray();

    public static double Row(Divergence divergence, IReadOnlyList<double> teacher, IReadOnlyList<double> student, double temperature)
    {
        double[] lp = LogSoftmax(teacher, temperature), lq = LogSoftmax(student, temperature);
        double x = divergence.Parameter;
        switch (divergence.Kind)
        {
            case DivergenceKind.ForwardKL:
                return KL(lp, lq);
            case DivergenceKind.ReverseKL:
                return KL(lq, lp);
            case DivergenceKind.SoftCrossEntropy:
                return -lp.Select((l, j) => double.IsNegativeInfinity(l) ? 0 : Math.Exp(l) * lq[j]).Sum();
            case DivergenceKind.GeneralizedJsd when x == 0:
                return KL(lp, lq);
            case DivergenceKind.GeneralizedJsd when x == 1:
                return KL(lq, lp);
            case DivergenceKind.GeneralizedJsd:
                double[] lm = LogMix(lp, lq, x);
                return (x * KL(lp, lm)) + ((1 - x) * KL(lq, lm));
            case DivergenceKind.SkewKL:
                return x == 0 ? KL(lp, lq) : KL(lp, LogMix(lp, lq, x));
            case DivergenceKind.SkewReverseKL:
                return x == 0 ? KL(lq, lp) : KL(lq, LogMix(lq, lp, x));
            case DivergenceKind.TotalVariation:
                return 0.5 * lp.Select((l, j) => Math.Abs(Math.Exp(l) - Math.Exp(lq[j]))).Sum();
            default:
                throw new ArgumentOutOfRangeException(nameof(divergence));
        }
    }

    /// <summary>Hard-label loss at T = 1 with label smoothing ε.</summary>
    public static double LanguageModel(IReadOnlyList<double> student, int label, double smoothing)
    {
        double[] lq = LogSoftmax(student, 1);
        double smooth = smoothing > 0 ? -smoothing / lq.Length * lq.Sum() : 0;
        return (-(1 - smoothing) * lq[label]) + smooth;
    }

    /// <summary>Central finite differences of <paramref name="f"/> at <paramref name="x"/>.</summary>
    public static double[] Gradient(Func<double[], double> f, double[] x, double h = 1e-6)
    {
        var g = new double[x.Length];
        for (int j = 0; j < x.Length; j++)
        {
            if (double.IsNegativeInfinity(x[j]))
            {
                continue;
            }

            double[] plus = (double[])x.Clone(), minus = (double[])x.Clone();
            plus[j] += h;
            minus[j] -= h;
            g[j] = (f(plus) - f(minus)) / (2 * h);
        }

        return g;
    }

    private static double LogAdd(double a, double b)
    {
        if (double.IsNegativeInfinity(a))
        {
            return b;
        }

        if (double.IsNegativeInfinity(b))
        {
            return a;
        }

        double m = Math.Max(a, b);
        return m + Math.Log(Math.Exp(a - m) + Math.Exp(b - m));
    }
}
