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

    /// <summary>Validates a temperature: finite and strictly positive.</summary>
    public static void CheckTemperature(float temperature, string paramName)
    {
        if (!float.IsFinite(temperature) || temperature <= 0f)
        {
            OutOfRange(paramName, temperature, "The temperature must be finite and greater than 0.");
        }
    }
}
