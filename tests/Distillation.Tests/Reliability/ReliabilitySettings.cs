using System.Collections.Concurrent;
using System.IO;
using System.Threading;
using Xunit.Abstractions;

namespace Distillation.Tests.Reliability;

/// <summary>
/// How hard the reliability suite works. One environment variable scales everything: the number of property cases
/// per property (<see cref="IterationsVariable"/>, default <see cref="DefaultIterations"/> so that CI stays fast) and,
/// from <see cref="FullIterations"/> on, the sizes of the heavy concurrency, determinism and extreme-size tests.
/// </summary>
internal static class ReliabilitySettings
{
    /// <summary>Cases per property; 10000 or more also makes the heavy tests full size.</summary>
    public const string IterationsVariable = "DISTILLATION_PROPERTY_ITERATIONS";

    /// <summary>When set, every property appends "name<TAB>cases<TAB>seconds" to this file (the counts the documentation quotes).</summary>
    public const string ReportVariable = "DISTILLATION_PROPERTY_REPORT";

    /// <summary>The CI default: the whole property suite stays well under 30 s on two cores.</summary>
    public const int DefaultIterations = 300;

    /// <summary>From this many cases on, the run is a "full" run: heavy tests use their full sizes.</summary>
    public const int FullIterations = 10_000;

    private static readonly object ReportLock = new();

    public static int Iterations { get; } = ReadIterations();

    public static bool IsFull => Iterations >= FullIterations;

    /// <summary>The CI size or the full size.</summary>
    public static int Scaled(int ci, int full) => IsFull ? full : ci;

    /// <summary>Writes the number of cases a property ran to the test output and, when asked, to the report file.</summary>
    public static void Record(ITestOutputHelper output, string property, long cases, TimeSpan elapsed)
    {
        string line = $"{property}\t{cases}\t{elapsed.TotalSeconds:F2}";
        output.WriteLine($"property {property}: {cases} cases in {elapsed.TotalSeconds:F2} s ({IterationsVariable}={Iterations})");
        string? path = Environment.GetEnvironmentVariable(ReportVariable);
        if (!string.IsNullOrEmpty(path))
        {
            lock (ReportLock)
            {
                File.AppendAllText(path, line + Environment.NewLine);
            }
        }
    }

    private static int ReadIterations()
    {
        string? text = Environment.GetEnvironmentVariable(IterationsVariable);
        return int.TryParse(text, System.Globalization.NumberStyles.Integer, System.Globalization.CultureInfo.InvariantCulture, out int n) && n > 0 ? n : DefaultIterations;
    }
}

/// <summary>Counts the cases a property actually checked (CsCheck runs them on several threads).</summary>
internal sealed class CaseCounter
{
    private long _count;

    public long Count => Interlocked.Read(ref _count);

    public void Add() => Interlocked.Increment(ref _count);
}

/// <summary>A failed reliability check (thrown inside properties, where FluentAssertions would be too slow).</summary>
internal sealed class PropertyViolation(string message) : Exception(message);

internal static class Ensure
{
    public static void That(bool condition, string message)
    {
        if (!condition)
        {
            throw new PropertyViolation(message);
        }
    }

    public static void That(bool condition, Func<string> message)
    {
        if (!condition)
        {
            throw new PropertyViolation(message());
        }
    }
}
