using System;
using TorchSharp;

namespace Distillation.TorchSharp;

/// <summary>
/// The teacher's rows as a TorchSharp tensor of shape [..., V] (CPU, float32), and what its numbers are: the tensor
/// counterpart of <see cref="TeacherDistribution"/>. The kind is chosen by the factory method, never by a flag.
/// </summary>
/// <remarks>
/// The teacher must not require a gradient: the losses differentiate with respect to the student only, so pass
/// <c>teacher.detach()</c> or compute the teacher under <c>torch.no_grad()</c>. A non-contiguous tensor is copied
/// to a contiguous one for the call; the numbers are never changed.
/// </remarks>
public readonly struct TeacherTensor
{
    private TeacherTensor(torch.Tensor values, DistributionKind kind)
    {
        Values = values;
        Kind = kind;
    }

    /// <summary>The tensor, [..., V].</summary>
    public torch.Tensor Values { get; }

    /// <summary>What the numbers are: logits, log-probabilities or probabilities.</summary>
    public DistributionKind Kind { get; }

    /// <summary>A teacher given as logits t: p = softmax(t / T) over the last dimension.</summary>
    /// <param name="logits">[..., V] logits (−∞ = impossible token).</param>
    /// <returns>The teacher.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="logits"/> is null.</exception>
    public static TeacherTensor FromLogits(torch.Tensor logits)
    {
        ArgumentNullException.ThrowIfNull(logits);
        return new(logits, DistributionKind.Logits);
    }

    /// <summary>A teacher given as log-probabilities (<c>log_softmax</c> output): p ∝ exp(log p / T).</summary>
    /// <param name="logProbabilities">[..., V] log-probabilities (−∞ = impossible token).</param>
    /// <returns>The teacher.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="logProbabilities"/> is null.</exception>
    public static TeacherTensor FromLogProbabilities(torch.Tensor logProbabilities)
    {
        ArgumentNullException.ThrowIfNull(logProbabilities);
        return new(logProbabilities, DistributionKind.LogProbabilities);
    }

    /// <summary>
    /// A teacher given as probabilities (<c>softmax</c> output): p ∝ p^(1/T). Each row must be ≥ 0 and sum to 1 within
    /// <see cref="TeacherDistribution.ProbabilitySumTolerance"/>.
    /// </summary>
    /// <param name="probabilities">[..., V] probabilities (0 = impossible token).</param>
    /// <returns>The teacher.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="probabilities"/> is null.</exception>
    public static TeacherTensor FromProbabilities(torch.Tensor probabilities)
    {
        ArgumentNullException.ThrowIfNull(probabilities);
        return new(probabilities, DistributionKind.Probabilities);
    }
}
