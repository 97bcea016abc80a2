namespace Distillation.Tests;

/// <summary>
/// Independent double-precision formulas for a top-k teacher against a dense student, written from the definitions
/// (PyTorch style: build the distributions, then the divergence elementwise), for values and finite differences.
/// </summary>
internal static class SparseFormulas
{
    /// <summary>D(p, q) elementwise over vectors that need not sum to 1 (0·log 0 = 0).</summary>
    public static double Elementwise(Divergence divergence, double[] p, double[] q)
    {
        double x = divergence.Parameter, sum = 0;
        for (int j = 0; j < p.Length; j++)
        {
            double a = p[j], b = q[j];
            sum += divergence.Kind switch
            {
                DivergenceKind.ForwardKL => XLogY(a, a / b),
                DivergenceKind.SoftCrossEntropy => a == 0 ? 0 : -a * Math.Log(b),
                DivergenceKind.ReverseKL => XLogY(b, b / a),
                DivergenceKind.GeneralizedJsd when x == 0 => XLogY(a, a / b),
                DivergenceKind.GeneralizedJsd when x == 1 => XLogY(b, b / a),
                DivergenceKind.GeneralizedJsd => (x * XLogY(a, a / ((x * a) + ((1 - x) * b)))) + ((1 - x) * XLogY(b, b / ((x * a) + ((1 - x) * b)))),
                DivergenceKind.SkewKL => XLogY(a, a / ((x * a) + ((1 - x) * b))),
                DivergenceKind.SkewReverseKL => XLogY(b, b / ((x * b) + ((1 - x) * a))),
                DivergenceKind.TotalVariation => 0.5 * Math.Abs(a - b),
                _ => throw new ArgumentOutOfRangeException(nameof(divergence)),
            };
        }

        return sum;
    }

    /// <summary>
    /// The row value of a top-k teacher (ids, log-probabilities at T_gen) against student logits at T under a policy.
    /// </summary>
    public static double Row(Divergence divergence, int[] ids, double[] logp, ResidualMassPolicy policy, double generationTemperature, double[] student, double temperature)
    {
        int v = student.Length;
        double[] q = DoubleFormulas.LogSoftmax(student, temperature).Select(Math.Exp).ToArray();
        double a = generationTemperature / temperature;
        int[] kept = Enumerable.Range(0, ids.Length).Where(i => ids[i] >= 0).ToArray();
        if (policy == ResidualMassPolicy.Renormalize)
        {
            // p ∝ exp(a · log p_gen) over the kept ids, 0 elsewhere; D over the whole vocabulary.
            double norm = kept.Sum(i => Math.Exp(a * logp[i]));
            var p = new double[v];
            foreach (int i in kept)
            {
                p[ids[i]] = Math.Exp(a * logp[i]) / norm;
            }

            return Elementwise(divergence, p, q);
        }

        double rest = Math.Max(0, 1 - kept.Sum(i => Math.Exp(logp[i])));
        if (kept.Length == v)
        {
            rest = 0;
        }

        double[] pk = kept.Select(i => Math.Exp(logp[i])).ToArray();
        double total = pk.Sum();
        if (total > 1)
        {
            pk = pk.Select(x => x / total).ToArray();
        }

        if (a != 1)
        {
            double z = pk.Sum(x => Math.Pow(x, a)) + Math.Pow(rest, a);
            pk = pk.Select(x => Math.Pow(x, a) / z).ToArray();
            rest = Math.Pow(rest, a) / z;
        }

        double[] qk = kept.Select(i => q[ids[i]]).ToArray();
        double qRest = Enumerable.Range(0, v).Where(j => !kept.Any(i => ids[i] == j)).Sum(j => q[j]);
        if (policy == ResidualMassPolicy.RestBucket)
        {
            return Elementwise(divergence, [.. pk, rest], [.. qk, qRest]);
        }

        // MissingAsZero: the kept probabilities as they are, 0 elsewhere, over the whole vocabulary.
        var full = new double[v];
        for (int n = 0; n < kept.Length; n++)
        {
            full[ids[kept[n]]] = pk[n];
        }

        return Elementwise(divergence, full, q);
    }

    private static double XLogY(double x, double ratio) => x == 0 ? 0 : x * Math.Log(ratio);
}
