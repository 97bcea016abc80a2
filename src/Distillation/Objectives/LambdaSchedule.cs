using System;
using System.Collections.Generic;
using System.Linq;
using System.Text.Json.Serialization;
using Distillation.Internal;

namespace Distillation;

/// <summary>
/// λ, the weight of the distillation term, as a function of the training step. Every schedule is immutable,
/// validated (every λ it can produce lies in [0, 1]) and serialisable with System.Text.Json (a <c>"type"</c>
/// discriminator names the kind), so a training run can record the exact configuration it used.
/// </summary>
[JsonPolymorphic(TypeDiscriminatorPropertyName = "type")]
[JsonDerivedType(typeof(ConstantLambda), "constant")]
[JsonDerivedType(typeof(LinearLambda), "linear")]
[JsonDerivedType(typeof(CosineLambda), "cosine")]
[JsonDerivedType(typeof(ExponentialDecayLambda), "exponential")]
[JsonDerivedType(typeof(PiecewiseLambda), "piecewise")]
[JsonDerivedType(typeof(WarmUpLambda), "warmup")]
public abstract record LambdaSchedule
{
    /// <summary>Only the schedules of this library derive from this type: they are validated and serialisable.</summary>
    private protected LambdaSchedule()
    {
    }

    /// <summary>λ at <paramref name="step"/>.</summary>
    /// <param name="step">The training step, 0 or more.</param>
    /// <returns>λ in [0, 1].</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="step"/> is negative.</exception>
    public double ValueAt(long step)
    {
        if (step < 0)
        {
            ThrowHelper.OutOfRange(nameof(step), step, "The training step must be 0 or more.");
        }

        double lambda = Evaluate(step);
        return double.IsNaN(lambda) ? throw new InvalidOperationException($"The schedule {this} produced NaN at step {step}.") : Math.Clamp(lambda, 0, 1); // the clamp only absorbs rounding
    }

    /// <summary>λ = <paramref name="value"/> at every step.</summary>
    /// <param name="value">λ in [0, 1].</param>
    /// <returns>The schedule.</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="value"/> is outside [0, 1].</exception>
    public static LambdaSchedule Constant(double value) => new ConstantLambda(value);

    /// <summary>λ moves linearly from <paramref name="from"/> (step 0) to <paramref name="to"/> (step <paramref name="steps"/>) and stays there.</summary>
    /// <param name="from">λ at step 0, in [0, 1].</param>
    /// <param name="to">λ from step <paramref name="steps"/> on, in [0, 1].</param>
    /// <param name="steps">The length of the ramp, at least 1.</param>
    /// <returns>The schedule.</returns>
    /// <exception cref="ArgumentOutOfRangeException">A λ is outside [0, 1] or <paramref name="steps"/> &lt; 1.</exception>
    public static LambdaSchedule Linear(double from, double to, long steps) => new LinearLambda(from, to, steps);

    /// <summary>λ = from + (to − from)·(1 − cos(π·min(step, steps)/steps))/2: half a cosine from <paramref name="from"/> to <paramref name="to"/>.</summary>
    /// <param name="from">λ at step 0, in [0, 1].</param>
    /// <param name="to">λ from step <paramref name="steps"/> on, in [0, 1].</param>
    /// <param name="steps">The length of the curve, at least 1.</param>
    /// <returns>The schedule.</returns>
    /// <exception cref="ArgumentOutOfRangeException">A λ is outside [0, 1] or <paramref name="steps"/> &lt; 1.</exception>
    public static LambdaSchedule Cosine(double from, double to, long steps) => new CosineLambda(from, to, steps);

    /// <summary>λ = to + (from − to)·2^(−step/halfLife): exponential decay from <paramref name="from"/> towards <paramref name="to"/>.</summary>
    /// <param name="from">λ at step 0, in [0, 1].</param>
    /// <param name="to">The limit, in [0, 1].</param>
    /// <param name="halfLife">Steps for the distance to the limit to halve, finite and &gt; 0.</param>
    /// <returns>The schedule.</returns>
    /// <exception cref="ArgumentOutOfRangeException">A λ is outside [0, 1] or <paramref name="halfLife"/> is not finite and &gt; 0.</exception>
    public static LambdaSchedule ExponentialDecay(double from, double to, double halfLife) => new ExponentialDecayLambda(from, to, halfLife);

    /// <summary>A step function: λ = values[i] for boundaries[i−1] ≤ step &lt; boundaries[i] (values[0] before the first boundary).</summary>
    /// <param name="boundaries">Strictly increasing steps, each ≥ 1.</param>
    /// <param name="values">One more value than boundaries, each in [0, 1].</param>
    /// <returns>The schedule.</returns>
    /// <exception cref="ArgumentException">The counts do not fit, or the boundaries are not strictly increasing and ≥ 1.</exception>
    /// <exception cref="ArgumentOutOfRangeException">A value is outside [0, 1].</exception>
    public static LambdaSchedule Piecewise(IReadOnlyList<long> boundaries, IReadOnlyList<double> values) => new PiecewiseLambda(boundaries, values);

    /// <summary>
    /// A linear warm-up: for step &lt; <paramref name="steps"/>, λ = from + (then(step) − from)·step/steps; afterwards
    /// λ = then(step). Typical: distil nothing at first (from = 0) while the student learns the labels.
    /// </summary>
    /// <param name="steps">The warm-up length, at least 1.</param>
    /// <param name="then">The schedule the warm-up leads into.</param>
    /// <param name="from">λ at step 0, in [0, 1].</param>
    /// <returns>The schedule.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="then"/> is null.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="steps"/> &lt; 1 or <paramref name="from"/> outside [0, 1].</exception>
    public static LambdaSchedule WarmUp(long steps, LambdaSchedule then, double from = 0) => new WarmUpLambda(steps, then, from);

    /// <summary>The schedule's value at a non-negative step, before the rounding clamp.</summary>
    /// <param name="step">The step, 0 or more.</param>
    /// <returns>λ.</returns>
    protected abstract double Evaluate(long step);

    internal static double CheckLambda(double value, string paramName)
    {
        if (!(value >= 0 && value <= 1))
        {
            ThrowHelper.OutOfRange(paramName, value, "λ must lie in [0, 1].");
        }

        return value;
    }

    internal static long CheckSteps(long steps, string paramName)
    {
        if (steps < 1)
        {
            ThrowHelper.OutOfRange(paramName, steps, "The number of steps must be at least 1.");
        }

        return steps;
    }
}

/// <summary>λ = <see cref="Value"/> at every step.</summary>
public sealed record ConstantLambda : LambdaSchedule
{
    /// <summary>Creates the schedule.</summary>
    /// <param name="value">λ in [0, 1].</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="value"/> is outside [0, 1].</exception>
    [JsonConstructor]
    public ConstantLambda(double value) => Value = CheckLambda(value, nameof(value));

    /// <summary>λ.</summary>
    public double Value { get; }

    /// <inheritdoc />
    protected override double Evaluate(long step) => Value;
}

/// <summary>A move of λ from <see cref="From"/> (step 0) to <see cref="To"/> (step <see cref="Steps"/>), then constant; the shape is the subclass's.</summary>
public abstract record RampLambda : LambdaSchedule
{
    /// <summary>Validates and stores the ramp's ends.</summary>
    /// <param name="from">λ at step 0.</param>
    /// <param name="to">λ from <paramref name="steps"/> on.</param>
    /// <param name="steps">The ramp length, at least 1.</param>
    /// <exception cref="ArgumentOutOfRangeException">A λ is outside [0, 1] or <paramref name="steps"/> &lt; 1.</exception>
    private protected RampLambda(double from, double to, long steps)
    {
        From = CheckLambda(from, nameof(from));
        To = CheckLambda(to, nameof(to));
        Steps = CheckSteps(steps, nameof(steps));
    }

    /// <summary>λ at step 0.</summary>
    public double From { get; }

    /// <summary>λ at and after <see cref="Steps"/>.</summary>
    public double To { get; }

    /// <summary>The ramp length.</summary>
    public long Steps { get; }

    /// <inheritdoc />
    protected sealed override double Evaluate(long step) => step >= Steps ? To : From + ((To - From) * Progress((double)step / Steps));

    /// <summary>How far along the ramp λ is, in [0, 1], at a fraction in [0, 1) of the steps (0 at 0).</summary>
    /// <param name="fraction">step / Steps.</param>
    /// <returns>The progress from <see cref="From"/> to <see cref="To"/>.</returns>
    protected abstract double Progress(double fraction);
}

/// <summary>λ linear from <see cref="RampLambda.From"/> to <see cref="RampLambda.To"/> over <see cref="RampLambda.Steps"/> steps, then constant.</summary>
public sealed record LinearLambda : RampLambda
{
    /// <summary>Creates the schedule.</summary>
    /// <param name="from">λ at step 0.</param>
    /// <param name="to">λ from <paramref name="steps"/> on.</param>
    /// <param name="steps">The ramp length, at least 1.</param>
    /// <exception cref="ArgumentOutOfRangeException">A λ is outside [0, 1] or <paramref name="steps"/> &lt; 1.</exception>
    [JsonConstructor]
    public LinearLambda(double from, double to, long steps)
        : base(from, to, steps)
    {
    }

    /// <inheritdoc />
    protected override double Progress(double fraction) => fraction;
}

/// <summary>λ along half a cosine from <see cref="RampLambda.From"/> to <see cref="RampLambda.To"/> over <see cref="RampLambda.Steps"/> steps, then constant.</summary>
public sealed record CosineLambda : RampLambda
{
    /// <summary>Creates the schedule.</summary>
    /// <param name="from">λ at step 0.</param>
    /// <param name="to">λ from <paramref name="steps"/> on.</param>
    /// <param name="steps">The curve length, at least 1.</param>
    /// <exception cref="ArgumentOutOfRangeException">A λ is outside [0, 1] or <paramref name="steps"/> &lt; 1.</exception>
    [JsonConstructor]
    public CosineLambda(double from, double to, long steps)
        : base(from, to, steps)
    {
    }

    /// <inheritdoc />
    protected override double Progress(double fraction) => 0.5 * (1 - Math.Cos(Math.PI * fraction));
}

/// <summary>λ = To + (From − To)·2^(−step/HalfLife).</summary>
public sealed record ExponentialDecayLambda : LambdaSchedule
{
    /// <summary>Creates the schedule.</summary>
    /// <param name="from">λ at step 0.</param>
    /// <param name="to">The limit.</param>
    /// <param name="halfLife">The half-life in steps, finite and &gt; 0.</param>
    /// <exception cref="ArgumentOutOfRangeException">A λ is outside [0, 1] or <paramref name="halfLife"/> is not finite and &gt; 0.</exception>
    [JsonConstructor]
    public ExponentialDecayLambda(double from, double to, double halfLife)
    {
        From = CheckLambda(from, nameof(from));
        To = CheckLambda(to, nameof(to));
        if (!(halfLife > 0 && double.IsFinite(halfLife)))
        {
            ThrowHelper.OutOfRange(nameof(halfLife), halfLife, "The half-life must be finite and greater than 0.");
        }

        HalfLife = halfLife;
    }

    /// <summary>λ at step 0.</summary>
    public double From { get; }

    /// <summary>The limit as the step grows.</summary>
    public double To { get; }

    /// <summary>The half-life in steps.</summary>
    public double HalfLife { get; }

    /// <inheritdoc />
    protected override double Evaluate(long step) => To + ((From - To) * Math.Pow(2, -step / HalfLife));
}

/// <summary>A step function of the training step.</summary>
public sealed record PiecewiseLambda : LambdaSchedule
{
    private readonly long[] _boundaries;
    private readonly double[] _values;

    /// <summary>Creates the schedule.</summary>
    /// <param name="boundaries">Strictly increasing steps, each ≥ 1.</param>
    /// <param name="values">One more value than boundaries, each in [0, 1].</param>
    /// <exception cref="ArgumentNullException">An argument is null.</exception>
    /// <exception cref="ArgumentException">The counts do not fit, or the boundaries are not strictly increasing and ≥ 1.</exception>
    /// <exception cref="ArgumentOutOfRangeException">A value is outside [0, 1].</exception>
    [JsonConstructor]
    public PiecewiseLambda(IReadOnlyList<long> boundaries, IReadOnlyList<double> values)
    {
        ArgumentNullException.ThrowIfNull(boundaries);
        ArgumentNullException.ThrowIfNull(values);
        if (values.Count != boundaries.Count + 1)
        {
            ThrowHelper.Argument(nameof(values), ThrowHelper.Format($"A step function with {boundaries.Count} boundaries needs {boundaries.Count + 1} values, not {values.Count}."));
        }

        for (int i = 0; i < boundaries.Count; i++)
        {
            if (boundaries[i] < 1 || (i > 0 && boundaries[i] <= boundaries[i - 1]))
            {
                ThrowHelper.Argument(nameof(boundaries), "The boundaries must be strictly increasing steps, each at least 1.");
            }
        }

        foreach (double v in values)
        {
            CheckLambda(v, nameof(values));
        }

        _boundaries = boundaries.ToArray();
        _values = values.ToArray();
    }

    /// <summary>The steps where λ changes.</summary>
    public IReadOnlyList<long> Boundaries => _boundaries;

    /// <summary>λ on each interval.</summary>
    public IReadOnlyList<double> Values => _values;

    /// <inheritdoc />
    public bool Equals(PiecewiseLambda? other) =>
        other is not null && _boundaries.AsSpan().SequenceEqual(other._boundaries) && _values.AsSpan().SequenceEqual(other._values);

    /// <inheritdoc />
    public override int GetHashCode() => HashCode.Combine(_boundaries.Length, _values.Length > 0 ? _values[0] : 0);

    /// <inheritdoc />
    protected override double Evaluate(long step)
    {
        int i = 0;
        while (i < _boundaries.Length && step >= _boundaries[i])
        {
            i++;
        }

        return _values[i];
    }
}

/// <summary>A linear warm-up from <see cref="From"/> into the schedule <see cref="Then"/> over <see cref="Steps"/> steps.</summary>
public sealed record WarmUpLambda : LambdaSchedule
{
    /// <summary>Creates the schedule.</summary>
    /// <param name="steps">The warm-up length, at least 1.</param>
    /// <param name="then">The schedule afterwards.</param>
    /// <param name="from">λ at step 0.</param>
    /// <exception cref="ArgumentNullException"><paramref name="then"/> is null.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="steps"/> &lt; 1 or <paramref name="from"/> outside [0, 1].</exception>
    [JsonConstructor]
    public WarmUpLambda(long steps, LambdaSchedule then, double from = 0)
    {
        ArgumentNullException.ThrowIfNull(then);
        Steps = CheckSteps(steps, nameof(steps));
        Then = then;
        From = CheckLambda(from, nameof(from));
    }

    /// <summary>The warm-up length.</summary>
    public long Steps { get; }

    /// <summary>The schedule after the warm-up.</summary>
    public LambdaSchedule Then { get; }

    /// <summary>λ at step 0.</summary>
    public double From { get; }

    /// <inheritdoc />
    protected override double Evaluate(long step) =>
        step >= Steps ? Then.ValueAt(step) : From + ((Then.ValueAt(step) - From) * step / Steps);
}
