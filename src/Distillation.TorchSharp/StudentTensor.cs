using System;
using TorchSharp;

namespace Distillation.TorchSharp;

/// <summary>
/// The student's rows as a TorchSharp tensor of shape [..., V] (CPU, float32), and what its numbers are: the tensor
/// counterpart of <see cref="StudentDistribution"/>. The losses' gradients flow back into this tensor through
/// TorchSharp's autograd.
/// </summary>
/// <remarks>
/// A non-contiguous tensor is copied to a contiguous one for the call (the gradient still reaches the original
/// tensor); the numbers are never changed.
/// </remarks>
public readonly struct StudentTensor
{
    private StudentTensor(torch.Tensor values, DistributionKind kind)
    {
        Values = values;
        Kind = kind;
    }

    /// <summary>The tensor, [..., V].</summary>
    public torch.Tensor Values { get; }

    /// <summary>What the numbers are: logits or log-probabilities.</summary>
    public DistributionKind Kind { get; }

    /// <summary>A student given as logits s: q = softmax(s / T) over the last dimension; gradients are dL/ds.</summary>
    /// <param name="logits">[..., V] logits (−∞ = impossible token).</param>
    /// <returns>The student.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="logits"/> is null.</exception>
    public static StudentTensor FromLogits(torch.Tensor logits)
    {
        ArgumentNullException.ThrowIfNull(logits);
        return new(logits, DistributionKind.Logits);
    }

    /// <summary>
    /// A student given as log-probabilities (<c>log_softmax</c> output). Log-probabilities are logits up to a per-row
    /// constant, so the gradient with respect to them is the same expression.
    /// </summary>
    /// <param name="logProbabilities">[..., V] log-probabilities (−∞ = impossible token).</param>
    /// <returns>The student.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="logProbabilities"/> is null.</exception>
    public static StudentTensor FromLogProbabilities(torch.Tensor logProbabilities)
    {
        ArgumentNullException.ThrowIfNull(logProbabilities);
        return new(logProbabilities, DistributionKind.LogProbabilities);
    }
}
