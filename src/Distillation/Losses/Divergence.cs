using System;
using System.Globalization;
using Distillation.Internal;

namespace Distillation;

/// <summary>
/// Which divergence a distillation loss computes between the softened teacher p = softmax(t/T) and student
/// q = softmax(s/T), with its parameter where it has one. Each row's gradient with respect to the student's
/// logits s is exact; the table gives the row value and dL/ds (before any T² factor).
/// </summary>
/// <remarks>
/// <list type="table">
/// <listheader><term>divergence</term><description>row value; dL/ds</description></listheader>
/// <item><term><see cref="ForwardKL"/></term><description>KL(p‖q) = Σ p (log p − log q); (q − p)/T</description></item>
/// <item><term><see cref="SoftCrossEntropy"/></term><description>−Σ p log q = KL(p‖q) + H(p); (q − p)/T</description></item>
/// <item><term><see cref="ReverseKL"/></term><description>KL(q‖p) = Σ q (log q − log p); q ⊙ (log q − log p − L)/T</description></item>
/// <item><term><see cref="GeneralizedJsd"/>(β)</term><description>m = βp + (1−β)q: β KL(p‖m) + (1−β) KL(q‖m); (1−β) q ⊙ (log(q/m) − KL(q‖m))/T</description></item>
/// <item><term><see cref="SkewKL"/>(α)</term><description>r = αp + (1−α)q: KL(p‖r); q ⊙ (g − Σ q g)/T with g = −(1−α) p/r</description></item>
/// <item><term><see cref="SkewReverseKL"/>(α)</term><description>r = αq + (1−α)p: KL(q‖r); q ⊙ (g − Σ q g)/T with g = log(q/r) + 1 − α q/r</description></item>
/// <item><term><see cref="TotalVariation"/></term><description>½ Σ |p − q|; q ⊙ (g − Σ q g)/T with g = ½ sign(q − p), sign(0) = 0</description></item>
/// </list>
/// <para><b>Infinities.</b> A value is +∞ only where the true value is: forward KL and soft CE where some p_j &gt; 0 = q_j,
/// reverse KL where some q_j &gt; 0 = p_j. JSD(β) and the skew KLs with β, α in (0, 1), and TVD, are always finite.
/// A row whose value is +∞ gets the finite gradient (q − p)/T (for forward KL and soft CE that is the exact
/// formula; for reverse KL it is a descent direction that moves mass off the impossible tokens), never NaN.</para>
/// <para>Divergences are clamped at 0 against rounding (soft CE is not: it is bounded below by H(p), not 0).</para>
/// </remarks>
[System.Text.Json.Serialization.JsonConverter(typeof(DivergenceJsonConverter))]
public readonly struct Divergence : IEquatable<Divergence>
{
    private Divergence(DivergenceKind kind, double parameter)
    {
        Kind = kind;
        Parameter = parameter;
    }

    /// <summary>Which divergence.</summary>
    public DivergenceKind Kind { get; }

    /// <summary>β for <see cref="DivergenceKind.GeneralizedJsd"/>, α for the skew KLs, 0 otherwise.</summary>
    public double Parameter { get; }

    /// <summary>Forward KL(P_t ‖ P_s) = Σ p (log p − log q): mean-seeking (the student covers all the teacher's modes).</summary>
    public static Divergence ForwardKL => new(DivergenceKind.ForwardKL, 0);

    /// <summary>Reverse KL(P_s ‖ P_t) = Σ q (log q − log p): mode-seeking (MiniLLM).</summary>
    public static Divergence ReverseKL => new(DivergenceKind.ReverseKL, 0);

    /// <summary>Soft-target cross-entropy −Σ p log q (Hinton's soft loss; forward KL plus the teacher's entropy).</summary>
    public static Divergence SoftCrossEntropy => new(DivergenceKind.SoftCrossEntropy, 0);

    /// <summary>Total variation distance ½ Σ |p − q|.</summary>
    public static Divergence TotalVariation => new(DivergenceKind.TotalVariation, 0);

    /// <summary>
    /// The generalized Jensen–Shannon divergence of GKD: m = β p + (1 − β) q, value β KL(p‖m) + (1 − β) KL(q‖m).
    /// </summary>
    /// <remarks>
    /// As in TRL and Liger-Kernel, β = 0 is forward KL and β = 1 is reverse KL. The JSD itself tends to 0 at both
    /// ends, so this convention is discontinuous there: JSD(1e-9) is nearly 0 while JSD(0) is KL(p‖q).
    /// β = 0.5 is the symmetric Jensen–Shannon divergence.
    /// </remarks>
    /// <param name="beta">β: 0, 1, or in [1e-6, 1 − 1e-6].</param>
    /// <returns>The divergence.</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="beta"/> is NaN, outside [0, 1], or within 1e-6 of an end without being it.</exception>
    public static Divergence GeneralizedJsd(double beta)
    {
        if (!(beta >= 0 && beta <= 1) || (beta > 0 && beta < MinMixtureWeight) || (beta < 1 && beta > 1 - MinMixtureWeight))
        {
            ThrowHelper.OutOfRange(nameof(beta), beta, "β must be 0, 1, or lie in [1e-6, 1 − 1e-6] (0 is forward KL, 1 is reverse KL; closer to the ends float32 cannot represent the mixture).");
        }

        return new(DivergenceKind.GeneralizedJsd, beta);
    }

    /// <summary>Skew KL (DistiLLM): KL(p ‖ α p + (1 − α) q). α = 0 is forward KL.</summary>
    /// <param name="alpha">α: 0 or in [1e-6, 1 − 1e-6]; the mixture weight on the teacher; DistiLLM uses 0.1.</param>
    /// <returns>The divergence.</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="alpha"/> is NaN, outside [0, 1 − 1e-6], or in (0, 1e-6) (α = 1 would be identically 0).</exception>
    public static Divergence SkewKL(double alpha) => new(DivergenceKind.SkewKL, CheckAlpha(alpha));

    /// <summary>Skew reverse KL (DistiLLM): KL(q ‖ α q + (1 − α) p). α = 0 is reverse KL.</summary>
    /// <param name="alpha">α: 0 or in [1e-6, 1 − 1e-6]; the mixture weight on the student.</param>
    /// <returns>The divergence.</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="alpha"/> is NaN, outside [0, 1 − 1e-6], or in (0, 1e-6) (α = 1 would be identically 0).</exception>
    public static Divergence SkewReverseKL(double alpha) => new(DivergenceKind.SkewReverseKL, CheckAlpha(alpha));

    /// <summary>Whether the value is a divergence (≥ 0, 0 for identical rows); false only for soft cross-entropy.</summary>
    public bool IsDivergence => Kind != DivergenceKind.SoftCrossEntropy;

    /// <inheritdoc />
    public bool Equals(Divergence other) => Kind == other.Kind && Parameter.Equals(other.Parameter);

    /// <inheritdoc />
    public override bool Equals(object? obj) => obj is Divergence other && Equals(other);

    /// <inheritdoc />
    public override int GetHashCode() => HashCode.Combine(Kind, Parameter);

    /// <inheritdoc />
    public override string ToString() => Kind switch
    {
        DivergenceKind.GeneralizedJsd or DivergenceKind.SkewKL or DivergenceKind.SkewReverseKL =>
            string.Create(CultureInfo.InvariantCulture, $"{Kind}({Parameter})"),
        _ => Kind.ToString(),
    };

    /// <summary>Whether two divergences are the same.</summary>
    /// <param name="left">The first divergence.</param>
    /// <param name="right">The second divergence.</param>
    /// <returns><see langword="true"/> when kind and parameter agree.</returns>
    public static bool operator ==(Divergence left, Divergence right) => left.Equals(right);

    /// <summary>Whether two divergences differ.</summary>
    /// <param name="left">The first divergence.</param>
    /// <param name="right">The second divergence.</param>
    /// <returns><see langword="true"/> when kind or parameter differ.</returns>
    public static bool operator !=(Divergence left, Divergence right) => !left.Equals(right);

    /// <summary>The smallest mixture weight (and 1 − the largest) accepted besides the ends: float32 mixtures stay exact enough.</summary>
    public const double MinMixtureWeight = 1e-6;

    private static double CheckAlpha(double alpha)
    {
        if (!(alpha >= 0 && alpha < 1) || (alpha > 0 && alpha < MinMixtureWeight) || alpha > 1 - MinMixtureWeight)
        {
            ThrowHelper.OutOfRange(nameof(alpha), alpha, "α must be 0 or lie in [1e-6, 1 − 1e-6] (0 is the plain KL; at 1 the divergence is identically 0; closer to the ends float32 cannot represent the mixture).");
        }

        return alpha;
    }
}

/// <summary>The divergences the library computes.</summary>
public enum DivergenceKind
{
    /// <summary>Not a divergence: <c>default(Divergence)</c>.</summary>
    Unspecified = 0,

    /// <summary>KL(P_t ‖ P_s).</summary>
    ForwardKL = 1,

    /// <summary>KL(P_s ‖ P_t).</summary>
    ReverseKL = 2,

    /// <summary>−Σ P_t log P_s.</summary>
    SoftCrossEntropy = 3,

    /// <summary>Generalized JSD(β).</summary>
    GeneralizedJsd = 4,

    /// <summary>KL(P_t ‖ α P_t + (1 − α) P_s).</summary>
    SkewKL = 5,

    /// <summary>KL(P_s ‖ α P_s + (1 − α) P_t).</summary>
    SkewReverseKL = 6,

    /// <summary>½ Σ |P_t − P_s|.</summary>
    TotalVariation = 7,
}
