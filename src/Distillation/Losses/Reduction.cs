using System;
using System.Globalization;
using Distillation.Internal;

namespace Distillation;

/// <summary>
/// How per-row losses are combined into one number, and what the gradient is the gradient of.
/// </summary>
/// <remarks>
/// <para>Only real rows count: a row removed by the layout's padding mask or by an ignored label contributes
/// nothing and is not counted. With no real rows every reduction gives 0 and a zero gradient.</para>
/// <list type="table">
/// <listheader><term>reduction</term><description>value (and gradient) divided by</description></listheader>
/// <item><term><see cref="None"/></term><description>nothing: per-row values are written to the caller's buffer; the gradient is that of their sum (each gradient row is its own row's gradient)</description></item>
/// <item><term><see cref="Sum"/></term><description>1</description></item>
/// <item><term><see cref="MeanOverTokens"/> (the default)</term><description>the number of real rows (TRL's and Liger-Kernel's mean)</description></item>
/// <item><term><see cref="MeanOverSequences"/></term><description>the number of sequences with at least one real row. PyTorch's <c>batchmean</c> divides by <c>input.size(0)</c> — B for [B, T, V] input, counting fully padded sequences; for flattened [B·T, V] input it divides by B·T, padding included</description></item>
/// <item><term><see cref="SumDividedBy"/>(N)</term><description>a divisor the caller chose: under gradient accumulation, the real-row count of the whole global batch, so micro-batches add up to the global mean</description></item>
/// </list>
/// <para><c>default(Reduction)</c> is <see cref="MeanOverTokens"/>.</para>
/// </remarks>
public readonly struct Reduction : IEquatable<Reduction>
{
    private Reduction(ReductionKind kind, double divisor)
    {
        Kind = kind;
        Divisor = divisor;
    }

    /// <summary>What the reduction divides by.</summary>
    public ReductionKind Kind { get; }

    /// <summary>The caller's divisor for <see cref="ReductionKind.SumDividedBy"/>; 0 for the other kinds.</summary>
    public double Divisor { get; }

    /// <summary>The smallest divisor <see cref="SumDividedBy"/> accepts.</summary>
    public const double MinDivisor = 1e-6;

    /// <summary>Per-row values, no reduction (a row-loss buffer must be given).</summary>
    public static Reduction None => new(ReductionKind.None, 0);

    /// <summary>The sum over real rows.</summary>
    public static Reduction Sum => new(ReductionKind.Sum, 0);

    /// <summary>The sum over real rows ÷ the number of real rows (0 when there are none). The default.</summary>
    public static Reduction MeanOverTokens => default;

    /// <summary>The sum over real rows ÷ the number of sequences with at least one real row (0 when there are none).</summary>
    public static Reduction MeanOverSequences => new(ReductionKind.MeanOverSequences, 0);

    /// <summary>The sum over real rows ÷ <paramref name="divisor"/>, for normalising over several micro-batches.</summary>
    /// <param name="divisor">A finite number of at least 1e-6, typically the global batch's real-token count.</param>
    /// <returns>The reduction.</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="divisor"/> is not finite or below 1e-6.</exception>
    public static Reduction SumDividedBy(double divisor)
    {
        if (!double.IsFinite(divisor) || divisor < MinDivisor)
        {
            ThrowHelper.OutOfRange(nameof(divisor), divisor, "The divisor must be finite and at least 1e-6 (it is a count of tokens or sequences).");
        }

        return new(ReductionKind.SumDividedBy, divisor);
    }

    /// <inheritdoc />
    public bool Equals(Reduction other) => Kind == other.Kind && Divisor.Equals(other.Divisor);

    /// <inheritdoc />
    public override bool Equals(object? obj) => obj is Reduction other && Equals(other);

    /// <inheritdoc />
    public override int GetHashCode() => HashCode.Combine(Kind, Divisor);

    /// <inheritdoc />
    public override string ToString() =>
        Kind == ReductionKind.SumDividedBy ? string.Create(CultureInfo.InvariantCulture, $"SumDividedBy({Divisor})") : Kind.ToString();

    /// <summary>Whether two reductions are the same.</summary>
    /// <param name="left">The first reduction.</param>
    /// <param name="right">The second reduction.</param>
    /// <returns><see langword="true"/> when kind and divisor agree.</returns>
    public static bool operator ==(Reduction left, Reduction right) => left.Equals(right);

    /// <summary>Whether two reductions differ.</summary>
    /// <param name="left">The first reduction.</param>
    /// <param name="right">The second reduction.</param>
    /// <returns><see langword="true"/> when kind or divisor differ.</returns>
    public static bool operator !=(Reduction left, Reduction right) => !left.Equals(right);
}

/// <summary>The kinds of <see cref="Reduction"/>.</summary>
public enum ReductionKind
{
    /// <summary>Sum ÷ real rows.</summary>
    MeanOverTokens = 0,

    /// <summary>Per-row values.</summary>
    None = 1,

    /// <summary>Sum over real rows.</summary>
    Sum = 2,

    /// <summary>Sum ÷ sequences with at least one real row.</summary>
    MeanOverSequences = 3,

    /// <summary>Sum ÷ a caller-given divisor.</summary>
    SumDividedBy = 4,
}
