using System;
using System.Text.Json.Serialization;
using Distillation.Internal;

namespace Distillation;

/// <summary>
/// The configuration of a <see cref="DistillationObjective"/>: immutable, validated as it is set, and serialisable
/// with System.Text.Json so that a training run can record exactly what it optimised.
/// </summary>
public sealed record DistillationObjectiveOptions
{
    private readonly float _temperature = 1f;
    private readonly float _labelSmoothing;
    private readonly double _mismatchWeight;
    private readonly LambdaSchedule _lambda = LambdaSchedule.Constant(0.5);

    /// <summary>The divergence of the distillation term (default forward KL).</summary>
    public Divergence Divergence { get; init; } = Divergence.ForwardKL;

    /// <summary>The distillation temperature T in [1e-6, 1e6] (default 1); the hard-label term is always at T = 1.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The value is outside [1e-6, 1e6] or NaN.</exception>
    public float Temperature
    {
        get => _temperature;
        init
        {
            ThrowHelper.CheckTemperature(value, nameof(Temperature));
            _temperature = value;
        }
    }

    /// <summary>
    /// Whether the distillation term is multiplied by T² (default <see cref="TemperatureScaling.Squared"/>: mixed with
    /// a hard-label term, the soft term's gradient shrinks by about 1/T², and Hinton's T² keeps λ meaning the same at any T).
    /// </summary>
    public TemperatureScaling TemperatureScaling { get; init; } = TemperatureScaling.Squared;

    /// <summary>λ as a function of the step (default constant 0.5).</summary>
    /// <exception cref="ArgumentNullException">The value is null.</exception>
    public LambdaSchedule Lambda
    {
        get => _lambda;
        init => _lambda = value ?? throw new ArgumentNullException(nameof(Lambda));
    }

    /// <summary>How the two terms are combined (default <see cref="ObjectiveForm.Interpolated"/>).</summary>
    public ObjectiveForm Form { get; init; } = ObjectiveForm.Interpolated;

    /// <summary>Label smoothing ε in [0, 1] of the hard-label term (default 0).</summary>
    /// <exception cref="ArgumentOutOfRangeException">The value is outside [0, 1] or NaN.</exception>
    public float LabelSmoothing
    {
        get => _labelSmoothing;
        init
        {
            if (!(value >= 0f && value <= 1f))
            {
                ThrowHelper.OutOfRange(nameof(LabelSmoothing), value, "Label smoothing must lie in [0, 1].");
            }

            _labelSmoothing = value;
        }
    }

    /// <summary>The adaptive per-token rule (default none).</summary>
    public TokenWeighting TokenWeighting { get; init; } = TokenWeighting.None;

    /// <summary>For <see cref="TokenWeighting.TeacherCorrectness"/>: the factor on λ where the teacher's top-1 is wrong, in [0, 1] (default 0).</summary>
    /// <exception cref="ArgumentOutOfRangeException">The value is outside [0, 1] or NaN.</exception>
    public double MismatchWeight
    {
        get => _mismatchWeight;
        init => _mismatchWeight = LambdaSchedule.CheckLambda(value, nameof(MismatchWeight));
    }

    /// <summary>The JSON options that read and write this record (enums as names).</summary>
    [JsonIgnore]
    public static System.Text.Json.JsonSerializerOptions JsonOptions { get; } = new()
    {
        WriteIndented = true,
        Converters = { new JsonStringEnumConverter() },
    };
}
