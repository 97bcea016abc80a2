using TorchReduction = TorchSharp.torch.nn.Reduction;

namespace Distillation.TorchSharp.Tests;

/// <summary>Inputs made from a fixed seed, TorchSharp's own reference expressions, and the tolerances of the issue.</summary>
internal static class TorchSupport
{
    /// <summary>A float32 tensor of the shape, uniform in [−scale, scale], from <paramref name="seed"/>.</summary>
    public static Tensor Uniform(long[] shape, int seed, float scale = 4f, bool requiresGrad = false)
    {
        var random = new Random(seed);
        long n = shape.Aggregate(1L, (a, b) => a * b);
        float[] values = new float[n];
        for (int i = 0; i < values.Length; i++)
        {
            values[i] = (float)(((random.NextDouble() * 2) - 1) * scale);
        }

        return tensor(values, shape, requires_grad: requiresGrad);
    }

    /// <summary>Labels in [0, V) from <paramref name="seed"/>, with every <paramref name="ignoreEvery"/>-th row set to −100 (0: none).</summary>
    public static Tensor Labels(long[] leadingShape, int vocab, int seed, int ignoreEvery = 0)
    {
        var random = new Random(seed);
        long n = leadingShape.Aggregate(1L, (a, b) => a * b);
        long[] ids = new long[n];
        for (int i = 0; i < ids.Length; i++)
        {
            ids[i] = ignoreEvery > 0 && i % ignoreEvery == ignoreEvery - 1 ? -100 : random.Next(vocab);
        }

        return tensor(ids, leadingShape);
    }

    /// <summary>Σ over rows of KL(p‖q) with p = softmax(t/T), q = softmax(s/T), as TorchSharp writes it.</summary>
    /// <remarks>TorchSharp's kl_div defaults to log_target = true, PyTorch's to false: always say it.</remarks>
    public static Tensor KlDivSum(Tensor teacher, Tensor student, double temperature) =>
        nn.functional.kl_div(nn.functional.log_softmax(student / temperature, -1), nn.functional.log_softmax(teacher / temperature, -1), log_target: true, reduction: TorchReduction.Sum);

    /// <summary>Per-row KL(p‖q) in the leading shape.</summary>
    public static Tensor KlDivRows(Tensor teacher, Tensor student, double temperature) =>
        nn.functional.kl_div(nn.functional.log_softmax(student / temperature, -1), nn.functional.log_softmax(teacher / temperature, -1), log_target: true, reduction: TorchReduction.None).sum(-1);

    /// <summary>The bound on max |g − ref| / max |ref| that the tests add to the issue's.</summary>
    public const double RelativeGradientTolerance = 1e-4;

    /// <summary>|v − ref| ≤ 1e-5·max(1, |ref|).</summary>
    public static void ValueShouldMatch(double value, double reference, string because = "")
    {
        double tolerance = 1e-5 * Math.Max(1, Math.Abs(reference));
        Math.Abs(value - reference).Should().BeLessThanOrEqualTo(tolerance, "value {0} against reference {1} {2}", value, reference, because);
    }

    /// <summary>max|g − ref| ≤ 1e-5·max(1, max|ref|), and the same shape.</summary>
    public static void GradientShouldMatch(Tensor gradient, Tensor reference, string because = "")
    {
        gradient.Should().NotBeNull("a gradient must have reached the tensor {0}", because);
        gradient.shape.Should().Equal(reference.shape);
        double error = (gradient - reference).abs().max().item<float>();
        double scale = reference.abs().max().item<float>();
        error.Should().BeLessThanOrEqualTo(1e-5 * Math.Max(1, scale), "max |g − ref| = {0} with max |ref| = {1} {2}", error, scale, because);

        // The bound is absolute for gradients below 1, which at V = 32000 (entries near 1e-5) would let a wrong
        // scale through; float32 references agree with the kernels far more closely than that, relative to max |ref|.
        error.Should().BeLessThanOrEqualTo(RelativeGradientTolerance * scale, "max |g − ref| = {0} relative to max |ref| = {1} {2}", error, scale, because);
    }

    /// <summary>The gradient of <paramref name="loss"/> with respect to a fresh leaf copy of <paramref name="student"/>.</summary>
    public static (double Value, Tensor Gradient) ValueAndGradient(Tensor student, Func<Tensor, Tensor> loss)
    {
        Tensor leaf = student.detach().clone().requires_grad_(true);
        Tensor value = loss(leaf);
        value.backward();
        return (value.item<float>(), leaf.grad!);
    }

    /// <summary>The bytes of a tensor's storage, to check that inputs are left bit-identical.</summary>
    public static byte[] Bytes(Tensor t) => t.contiguous().bytes.ToArray();
}
