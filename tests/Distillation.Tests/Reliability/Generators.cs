using CsCheck;
using Distillation.Kernels;

namespace Distillation.Tests.Reliability;

/// <summary>A batch of teacher and student rows with everything a loss call can carry.</summary>
internal sealed record Batch(int Rows, int Vocab, float[] Teacher, float[] Student, float Temperature, bool[]? Mask, int[] Labels, KernelPath Path)
{
    public SequenceLayout? Layout { get; } = Mask is null ? null : SequenceLayout.Rectangular(Rows, 1, Mask);

    public bool IsReal(int row) => (Mask is null || Mask[row]) && Labels[row] != TokenLabels.DefaultIgnoreIndex;

    public ReadOnlySpan<float> TeacherRow(int r) => Teacher.AsSpan(r * Vocab, Vocab);

    public ReadOnlySpan<float> StudentRow(int r) => Student.AsSpan(r * Vocab, Vocab);

    public override string ToString() =>
        $"rows={Rows} V={Vocab} T={Temperature:R} path={Path} mask=[{(Mask is null ? "none" : string.Join(",", Mask.Select(m => m ? 1 : 0)))}] labels=[{string.Join(",", Labels)}]\n" +
        $"  teacher=[{Show(Teacher)}]\n  student=[{Show(Student)}]";

    public static string Show(float[] x) => x.Length <= 64
        ? string.Join(", ", x.Select(v => v.ToString("R", System.Globalization.CultureInfo.InvariantCulture)))
        : string.Join(", ", x.Take(64).Select(v => v.ToString("R", System.Globalization.CultureInfo.InvariantCulture))) + $", … ({x.Length} values)";
}

/// <summary>CsCheck generators for the reliability properties.</summary>
internal static class Generators
{
    /// <summary>The vocabularies the brief names (1, 2, 7, 16, 17, 100, 1000), plus any small size for the vector tails.</summary>
    public static readonly Gen<int> Vocab = Gen.Frequency(
        (4, Gen.OneOf(1, 2, 7, 16, 17, 100, 1000)),
        (1, Gen.Int[1, 70]));

    /// <summary>Vocabularies small enough for finite differences.</summary>
    public static readonly Gen<int> SmallVocab = Gen.OneOf(1, 2, 3, 7, 8, 16, 17);

    /// <summary>T log-uniform in [1e-3, 1e3], with the ends and 1 themselves.</summary>
    public static readonly Gen<float> Temperature = Gen.Frequency(
        (1, Gen.OneOf(1e-3f, 1f, 1e3f)),
        (6, Gen.Double[-3, 3].Select(e => Math.Clamp((float)Math.Pow(10, e), 1e-3f, 1e3f))));

    public static readonly Gen<KernelPath> Path = Gen.OneOf(KernelPath.Scalar, KernelPath.Vector256, KernelPath.Vector512);

    /// <summary>Percent of −∞ entries: none, a few, many, nearly all (a top-k-like sparse row).</summary>
    private static readonly Gen<int> InfinitePercent = Gen.OneOf(0, 0, 5, 30, 90);

    /// <summary>
    /// Finite values of one magnitude class: moderate, ±80 (exp underflows in float), ±1e4, and clusters near ±1e4
    /// (small differences on a large offset).
    /// </summary>
    public static Gen<float> Finite(int regime) => regime switch
    {
        0 => Gen.Float[-8f, 8f],
        1 => Gen.Float[-80f, 80f],
        2 => Gen.Float[-1e4f, 1e4f],
        3 => Gen.Float[-3f, 3f].Select(x => x + 1e4f),
        _ => Gen.Float[-3f, 3f].Select(x => x - 1e4f),
    };

    public static Gen<float> Element(int regime, int infinitePercent) =>
        Gen.Int[0, 99].SelectMany(u => u < infinitePercent ? Gen.Const(float.NegativeInfinity) : Finite(regime));

    /// <summary>Rows × V values of one regime, every row with at least one possible token.</summary>
    public static Gen<float[]> Rows(int rows, int vocab) =>
        from regime in Gen.Int[0, 4]
        from infinite in InfinitePercent
        from values in Element(regime, infinite).Array[rows * vocab]
        from keep in Gen.Int[0, vocab - 1]
        select EnsurePossible(values, vocab, keep, regime);

    /// <summary>
    /// A batch: the student is independent of the teacher, a small perturbation of it (divergences near 0, where
    /// rounding could go negative), or the teacher with a different pattern of impossible tokens.
    /// </summary>
    public static Gen<Batch> Batch(Gen<int> vocabulary, int maxRows = 4) =>
        from vocab in vocabulary
        from rows in Gen.Int[1, vocab >= 1000 ? Math.Min(maxRows, 3) : maxRows]
        from teacher in Rows(rows, vocab)
        from mode in Gen.Int[0, 2]
        from own in Rows(rows, vocab)
        from noise in Gen.Float[-0.01f, 0.01f].Array[rows * vocab]
        from temperature in Temperature
        from hasMask in Gen.Int[0, 2]
        from mask in Gen.Bool.Array[rows]
        from ignore in Gen.Int[0, 3]
        from labelDraws in Gen.Int[0, 1 << 20].Array[rows]
        from path in Path
        select new Batch(
            rows,
            vocab,
            teacher,
            Student(mode, teacher, own, noise, vocab),
            temperature,
            hasMask == 0 ? mask : null,
            Labels(labelDraws, vocab, ignore),
            path);

    /// <summary>Labels in [0, V), with some rows ignored (−100) when <paramref name="ignore"/> is 0.</summary>
    private static int[] Labels(int[] draws, int vocab, int ignore) =>
        draws.Select((d, r) => ignore == 0 && d % 3 == 0 ? TokenLabels.DefaultIgnoreIndex : d % vocab).ToArray();

    private static float[] Student(int mode, float[] teacher, float[] own, float[] noise, int vocab)
    {
        switch (mode)
        {
            case 0:
                return own;
            case 1:
                return teacher.Select((t, i) => float.IsNegativeInfinity(t) ? t : t + noise[i]).ToArray();
            default:
                // The teacher's values where the student's own row has a possible token, −∞ elsewhere.
                float[] s = teacher.Select((t, i) => float.IsNegativeInfinity(own[i]) ? float.NegativeInfinity : float.IsNegativeInfinity(t) ? own[i] : t).ToArray();
                return EnsurePossible(s, vocab, 0, 0);
        }
    }

    /// <summary>Makes every row have a possible token (a row of −∞ only is invalid input).</summary>
    public static float[] EnsurePossible(float[] values, int vocab, int keep, int regime)
    {
        for (int r = 0; r * vocab < values.Length; r++)
        {
            Span<float> row = values.AsSpan(r * vocab, vocab);
            bool any = false;
            foreach (float v in row)
            {
                any |= !float.IsNegativeInfinity(v);
            }

            if (!any)
            {
                row[keep % vocab] = regime switch { 3 => 1e4f, 4 => -1e4f, _ => 0f };
            }
        }

        return values;
    }

    /// <summary>Rounds every value through System.Half (a bf16/fp16 teacher handed over as float); −∞ stays −∞.</summary>
    public static float[] ThroughHalf(float[] x) => x.Select(v => (float)(Half)v).ToArray();

    /// <summary>Snaps values to multiples of 2^-8 in [−12000, 12000]: adding a shift on the same grid is then exact.</summary>
    public static float[] OnGrid(float[] x) => x.Select(v => float.IsNegativeInfinity(v) ? v : MathF.Round(Math.Clamp(v, -12000f, 12000f) * 256f) / 256f).ToArray();

    /// <summary>Per-row shifts on the 2^-8 grid, |c| ≤ 16000, so that grid values + c stay exact in float.</summary>
    public static Gen<float[]> GridShifts(int rows) =>
        Gen.Int[-16000 * 256, 16000 * 256].Select(k => k / 256f).Array[rows];

    /// <summary>A divergence of the given kind with a random parameter (β including the ends 0 and 1; α in [0, 1)).</summary>
    public static Gen<Divergence> Divergence(DivergenceKind kind) => kind switch
    {
        DivergenceKind.GeneralizedJsd => Gen.Frequency(
            (1, Gen.OneOf(0.0, 1.0, 0.5)),
            (1, Gen.Double[-6, -1].Select(e => Math.Pow(10, e))),
            (1, Gen.Double[-6, -1].Select(e => 1 - Math.Pow(10, e))),
            (4, Gen.Double[0.01, 0.99])).Select(Distillation.Divergence.GeneralizedJsd),
        DivergenceKind.SkewKL => Alpha.Select(Distillation.Divergence.SkewKL),
        DivergenceKind.SkewReverseKL => Alpha.Select(Distillation.Divergence.SkewReverseKL),
        DivergenceKind.ForwardKL => Gen.Const(Distillation.Divergence.ForwardKL),
        DivergenceKind.ReverseKL => Gen.Const(Distillation.Divergence.ReverseKL),
        DivergenceKind.SoftCrossEntropy => Gen.Const(Distillation.Divergence.SoftCrossEntropy),
        DivergenceKind.TotalVariation => Gen.Const(Distillation.Divergence.TotalVariation),
        _ => throw new ArgumentOutOfRangeException(nameof(kind)),
    };

    /// <summary>
    /// α in [0, 1): 0, DistiLLM's 0.1, 0.5, down to 1e-9 and up to 1 − 1e-9 (parameters below float's range are a
    /// separate finding, pinned by <see cref="FindingsTests"/>, so the generator and its shrinking stay above 1e-9).
    /// </summary>
    private static readonly Gen<double> Alpha = Gen.Frequency(
        (1, Gen.OneOf(0.0, 0.1, 0.5)),
        (1, Gen.Double[-6, -1].Select(e => Math.Pow(10, e))),
        (1, Gen.Double[-6, -1].Select(e => 1 - Math.Pow(10, e))),
        (4, Gen.Double[0.01, 0.99]));

    public static readonly Gen<Divergence> AnyDivergence = Gen.OneOf(
        Divergence(DivergenceKind.ForwardKL), Divergence(DivergenceKind.ReverseKL), Divergence(DivergenceKind.SoftCrossEntropy),
        Divergence(DivergenceKind.GeneralizedJsd), Divergence(DivergenceKind.SkewKL), Divergence(DivergenceKind.SkewReverseKL),
        Divergence(DivergenceKind.TotalVariation));

    public static readonly Gen<Reduction> AnyReduction = Gen.OneOf(
        Gen.Const(Reduction.MeanOverTokens), Gen.Const(Reduction.MeanOverSequences), Gen.Const(Reduction.Sum),
        Gen.Double[0.25, 1000].Select(Reduction.SumDividedBy));
}
