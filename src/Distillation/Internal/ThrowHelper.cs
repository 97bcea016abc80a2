using System;
using System.Diagnostics.CodeAnalysis;
using System.Globalization;

namespace Distillation.Internal;

/// <summary>Builds the library's argument exceptions so that messages read the same everywhere.</summary>
internal static class ThrowHelper
{
    [DoesNotReturn]
    public static void Argument(string paramName, string message) =>
        throw new ArgumentException(message, paramName);

    [DoesNotReturn]
    public static void OutOfRange(string paramName, object? actual, string message) =>
        throw new ArgumentOutOfRangeException(paramName, actual, message);

    public static string Format(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);

    /// <summary>Validates a thread count: at least 1.</summary>
    public static int CheckDegreeOfParallelism(int value, string paramName)
    {
        if (value < 1)
        {
            OutOfRange(paramName, value, "At least one thread is needed.");
        }

        return value;
    }

    /// <summary>The smallest temperature accepted: below it, logits ÷ T overflow float32 long before they are meaningful.</summary>
    public const float MinTemperature = 1e-6f;

    /// <summary>The largest temperature accepted.</summary>
    public const float MaxTemperature = 1e6f;

    /// <summary>Validates a temperature: finite and in [<see cref="MinTemperature"/>, <see cref="MaxTemperature"/>].</summary>
    public static void CheckTemperature(float temperature, string paramName)
    {
        if (!(temperature >= MinTemperature && temperature <= MaxTemperature))
        {
            OutOfRange(paramName, temperature, "The temperature must be finite and lie in [1e-6, 1e6] (logits ÷ T must stay representable in float32).");
        }
    }
}
