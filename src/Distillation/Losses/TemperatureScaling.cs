namespace Distillation;

/// <summary>Whether a distillation loss multiplies its value and gradient by T².</summary>
/// <remarks>
/// Softening both sides by T shrinks the gradient with respect to the logits by about 1/T² (Hinton et al.), so a
/// KD term mixed with a hard-label term at T &gt; 1 is usually multiplied by T² to keep the balance independent of T.
/// The default is <see cref="None"/>: the value is then exactly the divergence of the softened distributions —
/// what PyTorch's <c>kl_div</c>, TRL's GKD and Liger-Kernel report — so numbers compare across libraries;
/// ask for <see cref="Squared"/> where you mix with a hard loss (Hinton, DistillKit, torchdistill with labels).
/// </remarks>
public enum TemperatureScaling
{
    /// <summary>No factor: the value is the divergence at temperature T.</summary>
    None = 0,

    /// <summary>Value and gradient × T².</summary>
    Squared = 1,
}
