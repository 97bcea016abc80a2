using System.Collections.Generic;
using TorchSharp;

namespace Distillation.TorchSharp.Internal;

/// <summary>
/// The autograd node of every adapter loss. The fused kernel has already computed the value and the gradient with
/// respect to the student (before <see cref="Attach"/>, so that a rejected input never leaves a half-built node);
/// forward returns the value and saves the gradient, and backward returns the saved gradient times grad_output.
/// </summary>
internal sealed class FusedLossFunction : torch.autograd.SingleTensorFunction<FusedLossFunction>
{
    private const string PerRowKey = "perRow";

    public override string Name => "DistillationFusedLoss";

    /// <summary>
    /// Puts <paramref name="output"/> on the autograd graph as a function of <paramref name="student"/> whose gradient
    /// is <paramref name="gradient"/> (per row when <paramref name="perRow"/>: output then holds one value per row).
    /// Takes ownership of <paramref name="output"/> and <paramref name="gradient"/>: the graph keeps what it needs.
    /// </summary>
    public static torch.Tensor Attach(torch.Tensor student, torch.Tensor output, torch.Tensor gradient, bool perRow)
    {
        try
        {
            return apply(student, new Saved(output, gradient, perRow));
        }
        finally
        {
            // The result and the saved variable hold their own references to the storage: the graph, not these
            // wrappers, now decides how long the gradient lives.
            output.Dispose();
            gradient.Dispose();
        }
    }

    public override torch.Tensor forward(torch.autograd.AutogradContext ctx, params object[] vars)
    {
        var saved = (Saved)vars[1];
        ctx.save_for_backward([saved.Gradient]);
        ctx.save_data(PerRowKey, saved.PerRow);
        return saved.Output;
    }

    public override List<torch.Tensor> backward(torch.autograd.AutogradContext ctx, torch.Tensor grad_output)
    {
        torch.Tensor gradient = ctx.get_saved_variables()[0];
        torch.Tensor result;
        if ((bool)ctx.get_data(PerRowKey))
        {
            // One value per row: row r's gradient times grad_output[r].
            using torch.Tensor column = grad_output.unsqueeze(-1);
            result = gradient.mul(column);
            gradient.Dispose();
        }
        else if (grad_output.item<float>() == 1f)
        {
            result = gradient; // loss.backward(): the saved gradient itself, no pass over it
        }
        else
        {
            result = gradient.mul(grad_output);
            gradient.Dispose();
        }

        return [result, null!];
    }

    /// <summary>What forward receives besides the student: not a tensor input, so autograd ignores it.</summary>
    private sealed class Saved(torch.Tensor output, torch.Tensor gradient, bool perRow)
    {
        public torch.Tensor Output { get; } = output;

        public torch.Tensor Gradient { get; } = gradient;

        public bool PerRow { get; } = perRow;
    }
}
