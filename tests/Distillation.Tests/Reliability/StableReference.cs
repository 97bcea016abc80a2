namespace Distillation.Tests.Reliability;

/// <summary>
/// A third, independent double-precision implementation of every row loss and its analytic gradient (the formulas of
/// README's conventions table), written to stay exact for huge logits: log-softmax is formed as (z − max) − log Σ e^(z − max),
/// never as z − (max + log Σ), so nothing is absorbed when |z| is 1e30. Allocation-free over spans, so that it can
/// check a row of a million columns or a million rows.
/// </summary>
internal static class StableReference
{
    /// <summary>log softmax(x/T) for logits or log-probabilities, log(p^(1/T)/Σ) for probabilities; −∞ where the token is impossible.</summary>
    public static void LogSoftmax(ReadOnlySpan<float> x, DistributionKind kind, double temperature, Span<double> result)
    {
        double max = double.NegativeInfinity;
        for (int j = 0; j < x.Length; j++)
        {
            max = Math.Max(max, Raw(x[j], kind));
        }

        double sum = 0;
        for (int j = 0; j < x.Length; j++)
        {
            double z = Raw(x[j], kind);
            result[j] = double.IsNegativeInfinity(z) ? double.NegativeInfinity : (z - max) / temperature;
            sum += Math.Exp(result[j]);
        }

        double logSum = Math.Log(sum);
        for (int j = 0; j < x.Length; j++)
        {
            result[j] -= logSum;
        }
    }

    /// <summary>The row value of <paramref name="divergence"/> and, when <paramref name="gradient"/> is not empty, dL/ds.</summary>
    public static double Row(Divergence divergence, ReadOnlySpan<float> teacher, DistributionKind teacherKind, ReadOnlySpan<float> student, double temperature, Span<double> gradient) =>
        Row(divergence, teacher, teacherKind, student, temperature, gradient, out _);

    /// <summary>
    /// As <see cref="Row(Divergence, ReadOnlySpan{float}, DistributionKind, ReadOnlySpan{float}, double, Span{double})"/>;
    /// <paramref name="termScale"/> is max_j (|qg_j| + q_j·|Σ qg|)/T, the size of the two terms every kernel subtracts to
    /// form dL/ds_j: a float kernel cannot be more accurate than about 1e-7 of it (for forward KL it is at most 1/T).
    /// </summary>
    public static double Row(Divergence divergence, ReadOnlySpan<float> teacher, DistributionKind teacherKind, ReadOnlySpan<float> student, double temperature, Span<double> gradient, out double termScale)
    {
        int n = teacher.Length;
        double[] lp = new double[n], lq = new double[n], qg = new double[n];
        LogSoftmax(teacher, teacherKind, temperature, lp);
        LogSoftmax(student, DistributionKind.Logits, temperature, lq);
        (DivergenceKind kind, double x) = Normalise(divergence);
        double logX = Math.Log(x), logOneMinusX = Math.Log(1 - x);
        double value = 0, sumQg = 0;
        for (int j = 0; j < n; j++)
        {
            double p = Math.Exp(lp[j]), q = Math.Exp(lq[j]);
            bool pPos = !double.IsNegativeInfinity(lp[j]), qPos = !double.IsNegativeInfinity(lq[j]);
            double term, g;
            switch (kind)
            {
                case DivergenceKind.ForwardKL:
                    term = pPos ? Weighted(p, lp[j] - lq[j]) : 0;
                    g = -p;
                    break;
                case DivergenceKind.SoftCrossEntropy:
                    term = pPos ? Weighted(p, -lq[j]) : 0;
                    g = -p;
                    break;
                case DivergenceKind.ReverseKL:
                    term = qPos ? Weighted(q, lq[j] - lp[j]) : 0;
                    g = qPos ? term + q : 0;
                    break;
                case DivergenceKind.GeneralizedJsd:
                {
                    double lm = LogAddExp(logX + lp[j], logOneMinusX + lq[j]);
                    double fromQ = qPos ? (1 - x) * q * (lq[j] - lm) : 0;
                    term = (pPos ? x * p * (lp[j] - lm) : 0) + fromQ;
                    g = fromQ;
                    break;
                }

                case DivergenceKind.SkewKL:
                {
                    double lr = LogAddExp(logX + lp[j], logOneMinusX + lq[j]);
                    term = pPos ? p * (lp[j] - lr) : 0;
                    g = pPos && qPos ? -(1 - x) * p * Math.Exp(lq[j] - lr) : 0;
                    break;
                }

                case DivergenceKind.SkewReverseKL:
                {
                    double lr = LogAddExp(logX + lq[j], logOneMinusX + lp[j]);
                    term = qPos ? q * (lq[j] - lr) : 0;
                    g = qPos ? term + q - (x * q * Math.Exp(lq[j] - lr)) : 0;
                    break;
                }

                case DivergenceKind.TotalVariation:
                    term = 0.5 * Math.Abs(p - q);
                    g = 0.5 * q * Math.Sign(q - p);
                    break;
                default:
                    throw new ArgumentOutOfRangeException(nameof(divergence));
            }

            value += term;
            qg[j] = g;
            sumQg += g;
        }

        // The terms a kernel that evaluates the row as finite subtracts (an infinite term is left out: a path whose
        // precision underflows its weight computes the finite rest), and 1/T for the (q − p)/T of an infinite row.
        double finiteSum = 0;
        foreach (double g in qg)
        {
            finiteSum += double.IsFinite(g) ? g : 0;
        }

        termScale = 1 / temperature;
        for (int j = 0; j < n; j++)
        {
            double g = double.IsFinite(qg[j]) ? qg[j] : 0;
            termScale = Math.Max(termScale, (Math.Abs(g) + (Math.Exp(lq[j]) * Math.Abs(finiteSum))) / temperature);
        }

        if (!gradient.IsEmpty)
        {
            bool infinite = double.IsPositiveInfinity(value);
            for (int j = 0; j < n; j++)
            {
                double p = Math.Exp(lp[j]), q = Math.Exp(lq[j]);
                gradient[j] = (infinite ? q - p : qg[j] - (q * sumQg)) / temperature;
            }
        }

        return value;
    }

    /// <summary>−Σ target log softmax(s) with target = (1 − ε)·onehot(y) + ε/V, and its gradient softmax(s) − target.</summary>
    public static double LanguageModel(ReadOnlySpan<float> student, int label, double smoothing, Span<double> gradient, double temperature = 1)
    {
        int n = student.Length;
        double[] lq = new double[n];
        LogSoftmax(student, DistributionKind.Logits, temperature, lq);
        double value = smoothing < 1 ? -(1 - smoothing) * lq[label] : 0;
        if (smoothing > 0)
        {
            double sum = 0;
            foreach (double l in lq)
            {
                sum += l;
            }

            value -= smoothing / n * sum;
        }

        for (int j = 0; j < gradient.Length; j++)
        {
            gradient[j] = (Math.Exp(lq[j]) - ((smoothing / n) + (j == label ? 1 - smoothing : 0))) / temperature;
        }

        return value;
    }

    /// <summary>Whether the true row value is +∞ (from the −∞ patterns alone).</summary>
    public static bool IsInfinite(Divergence divergence, ReadOnlySpan<float> teacher, DistributionKind teacherKind, ReadOnlySpan<float> student)
    {
        (DivergenceKind kind, _) = Normalise(divergence);
        for (int j = 0; j < teacher.Length; j++)
        {
            bool p = teacherKind == DistributionKind.Probabilities ? teacher[j] > 0 : !float.IsNegativeInfinity(teacher[j]);
            bool q = !float.IsNegativeInfinity(student[j]);
            if ((kind is DivergenceKind.ForwardKL or DivergenceKind.SoftCrossEntropy && p && !q) || (kind == DivergenceKind.ReverseKL && q && !p))
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>The divergence with its end conventions resolved (JSD(0) = forward KL, JSD(1) = reverse KL, skew α = 0 = plain KL).</summary>
    public static (DivergenceKind Kind, double Parameter) Normalise(Divergence d) => d.Kind switch
    {
        DivergenceKind.GeneralizedJsd when d.Parameter == 0 => (DivergenceKind.ForwardKL, 0),
        DivergenceKind.GeneralizedJsd when d.Parameter == 1 => (DivergenceKind.ReverseKL, 0),
        DivergenceKind.SkewKL when d.Parameter == 0 => (DivergenceKind.ForwardKL, 0),
        DivergenceKind.SkewReverseKL when d.Parameter == 0 => (DivergenceKind.ReverseKL, 0),
        _ => (d.Kind, d.Parameter),
    };

    /// <summary>w · x for a weight w &gt; 0 in exact arithmetic (its log is finite): +∞ when x is, even if w underflowed to 0.</summary>
    private static double Weighted(double w, double x) => double.IsPositiveInfinity(x) ? double.PositiveInfinity : w * x;

    private static double Raw(float v, DistributionKind kind) => kind == DistributionKind.Probabilities ? Math.Log(v) : v;

    private static double LogAddExp(double a, double b)
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
        return m + Math.Log(1 + Math.Exp(-Math.Abs(a - b)));
    }
}
