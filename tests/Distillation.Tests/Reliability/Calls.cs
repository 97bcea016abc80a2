using System.Diagnostics;
using CsCheck;
using Distillation.Kernels;
using Xunit.Abstractions;

namespace Distillation.Tests.Reliability;

/// <summary>What one loss call produced.</summary>
internal sealed record Outcome(LossResult Result, float[] RowValues, float[] Gradient);

/// <summary>Loss calls on a forced kernel path, and the comparisons the reliability tests share.</summary>
internal static class Calls
{
    public static readonly KernelPath[] Paths = [KernelPath.Scalar, KernelPath.Vector256, KernelPath.Vector512];

    /// <summary>Per-row values (Reduction.None) and the gradient of their sum, with the batch's mask and labels.</summary>
    public static Outcome Divergence(Divergence divergence, Batch b, KernelPath path, float[]? teacher = null, float[]? student = null, DistributionKind teacherKind = DistributionKind.Logits, TemperatureScaling scaling = TemperatureScaling.None, int threads = 1)
    {
        var loss = new DistillationLoss(divergence, b.Temperature, scaling) { MaxDegreeOfParallelism = threads };
        var t = InputBuilders.Teacher(teacherKind, teacher ?? b.Teacher, b.Vocab, b.Layout);
        var s = StudentDistribution.FromLogits(student ?? b.Student, b.Vocab, b.Layout);
        var rows = new float[b.Rows];
        var gradient = new float[b.Rows * b.Vocab];
        LossResult result = loss.ComputeCore(t, s, gradient, true, Reduction.None, new TokenLabels(b.Labels), rows, path);
        return new Outcome(result, rows, gradient);
    }

    /// <summary>The hard-label loss per row on a forced path.</summary>
    public static Outcome LanguageModel(float smoothing, Batch b, KernelPath path, float[]? student = null)
    {
        var rows = new float[b.Rows];
        var gradient = new float[b.Rows * b.Vocab];
        LossResult result = new LanguageModelLoss(smoothing) { MaxDegreeOfParallelism = 1 }
            .ComputeCore(StudentDistribution.FromLogits(student ?? b.Student, b.Vocab, b.Layout), new TokenLabels(b.Labels), gradient, true, Reduction.None, rows, path);
        return new Outcome(result, rows, gradient);
    }

    /// <summary>Runs a CsCheck property for <see cref="ReliabilitySettings.Iterations"/> cases, counting and recording them.</summary>
    public static void Property<T>(ITestOutputHelper output, string name, Gen<T> gen, Action<T> property, Func<T, string>? print = null)
    {
        var counter = new CaseCounter();
        var clock = Stopwatch.StartNew();
        try
        {
            gen.Sample(
                x =>
                {
                    property(x);
                    counter.Add();
                },
                iter: ReliabilitySettings.Iterations,
                print: print ?? (x => x?.ToString() ?? "null"));
        }
        catch
        {
            // Record how many cases passed before (and while CsCheck shrank) the failure.
            ReliabilitySettings.Record(output, $"{name} (FAILED)", counter.Count, clock.Elapsed);
            throw;
        }

        clock.Stop();
        ReliabilitySettings.Record(output, name, counter.Count, clock.Elapsed);
        counter.Count.Should().BeGreaterThanOrEqualTo(ReliabilitySettings.Iterations, "every generated case must have been checked");
    }

    /// <summary>|a − b| ≤ 1e-5·max(1, |b|), infinities equal.</summary>
    public static bool ValuesAgree(double actual, double expected, double relative = 1e-5) =>
        double.IsInfinity(expected) || double.IsInfinity(actual) ? actual == expected : Math.Abs(actual - expected) <= relative * Math.Max(1, Math.Abs(expected));

    /// <summary>
    /// The worst |a_j − b_j| ÷ max(floor, max_j |b_j|) over one row. With floor = 1 this is the brief's relative gradient
    /// error (tolerance 1e-5); the reliability tests pass the float kernels' cancellation scale as floor where it is larger
    /// (see <see cref="GradientFloor"/>).
    /// </summary>
    public static double GradientError(ReadOnlySpan<float> actual, ReadOnlySpan<double> expected, double floor = 1)
    {
        double scale = Math.Max(floor, 1), worst = 0;
        for (int j = 0; j < expected.Length; j++)
        {
            scale = Math.Max(scale, Math.Abs(expected[j]));
        }

        for (int j = 0; j < expected.Length; j++)
        {
            double d = Math.Abs(actual[j] - expected[j]);
            worst = double.IsNaN(d) ? double.PositiveInfinity : Math.Max(worst, d);
        }

        return worst / scale;
    }

    public static double GradientError(ReadOnlySpan<float> actual, ReadOnlySpan<float> expected)
    {
        var e = new double[expected.Length];
        for (int j = 0; j < e.Length; j++)
        {
            e[j] = expected[j];
        }

        return GradientError(actual, e);
    }

    /// <summary>
    /// The scale gradient errors are measured against: max(1, 1/T, κ) with κ the size of the two terms a kernel subtracts
    /// (see <see cref="StableReference.Row(Divergence, ReadOnlySpan{float}, DistributionKind, ReadOnlySpan{float}, double, Span{double}, out double)"/>).
    /// dL/ds = (1/T)·(something of order 1 or of order |log q − log p|), so float rounding is relative to that, not to the
    /// (possibly tiny) result; at T = 1 and for bounded logs this is the brief's max(1, max|g|).
    /// </summary>
    public static double GradientFloor(double temperature, double termScale) => Math.Max(1 / temperature, termScale);

    /// <summary>
    /// Central differences of <paramref name="f"/> with the five-point stencil (error O(h⁴)), so that a step large enough
    /// to keep double rounding small still resolves the gradient: (8(f(x+h) − f(x−h)) − (f(x+2h) − f(x−2h)))/(12h).
    /// −∞ coordinates are left at 0.
    /// </summary>
    public static double[] FivePointGradient(Func<double[], double> f, double[] x, double h)
    {
        var g = new double[x.Length];
        for (int j = 0; j < x.Length; j++)
        {
            if (double.IsNegativeInfinity(x[j]))
            {
                continue;
            }

            double At(double delta)
            {
                double[] y = (double[])x.Clone();
                y[j] += delta;
                return f(y);
            }

            g[j] = ((8 * (At(h) - At(-h))) - (At(2 * h) - At(-2 * h))) / (12 * h);
        }

        return g;
    }

    public static bool AllFinite(ReadOnlySpan<float> x)
    {
        foreach (float v in x)
        {
            if (!float.IsFinite(v))
            {
                return false;
            }
        }

        return true;
    }

    public static bool AllZero(ReadOnlySpan<float> x)
    {
        foreach (float v in x)
        {
            if (v != 0)
            {
                return false;
            }
        }

        return true;
    }

    public static double MaxAbs(ReadOnlySpan<float> x)
    {
        double m = 0;
        foreach (float v in x)
        {
            m = Math.Max(m, Math.Abs(v));
        }

        return m;
    }

    public static bool BitEqual(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        if (a.Length != b.Length)
        {
            return false;
        }

        for (int i = 0; i < a.Length; i++)
        {
            if (BitConverter.SingleToInt32Bits(a[i]) != BitConverter.SingleToInt32Bits(b[i]))
            {
                return false;
            }
        }

        return true;
    }

    public static bool BitEqual(double a, double b) => BitConverter.DoubleToInt64Bits(a) == BitConverter.DoubleToInt64Bits(b);
}
