using System;
using System.Numerics.Tensors;
using MathNet.Numerics.LinearAlgebra;

namespace Distillation.Benchmarks;

/// <summary>
/// What a .NET user would write without this library, per row: a chain of <see cref="TensorPrimitives"/> calls, and
/// the same with MathNet.Numerics vectors. Both compute the loss and its gradient with respect to the student logits
/// at temperature T (no reduction: the gradient of the sum), for forward KL, soft CE, reverse KL and JSD(0.5).
/// </summary>
internal static class Baselines
{
    public static double TensorPrimitivesChain(Divergence divergence, float[] teacher, float[] student, float[] gradient, int vocab, float temperature, float[] scratch)
    {
        int rows = teacher.Length / vocab;
        Span<float> logP = scratch.AsSpan(0, vocab), logQ = scratch.AsSpan(vocab, vocab);
        Span<float> p = scratch.AsSpan(2 * vocab, vocab), q = scratch.AsSpan(3 * vocab, vocab), tmp = scratch.AsSpan(4 * vocab, vocab);
        float invT = 1 / temperature;
        double total = 0;
        for (int r = 0; r < rows; r++)
        {
            ReadOnlySpan<float> t = teacher.AsSpan(r * vocab, vocab), s = student.AsSpan(r * vocab, vocab);
            Span<float> g = gradient.AsSpan(r * vocab, vocab);
            LogSoftmax(t, invT, logP);
            LogSoftmax(s, invT, logQ);
            TensorPrimitives.Exp(logP, p);
            TensorPrimitives.Exp(logQ, q);
            switch (divergence.Kind)
            {
                case DivergenceKind.ForwardKL or DivergenceKind.SoftCrossEntropy:
                    if (divergence.Kind == DivergenceKind.ForwardKL)
                    {
                        TensorPrimitives.Subtract(logP, logQ, tmp);
                        total += TensorPrimitives.Dot(p, tmp);
                    }
                    else
                    {
                        total -= TensorPrimitives.Dot(p, logQ);
                    }

                    TensorPrimitives.Subtract(q, p, g);
                    TensorPrimitives.Multiply(g, invT, g);
                    break;
                case DivergenceKind.ReverseKL:
                    TensorPrimitives.Subtract(logQ, logP, tmp);
                    float value = TensorPrimitives.Dot(q, tmp);
                    total += value;
                    TensorPrimitives.Subtract(tmp, value, tmp);
                    TensorPrimitives.Multiply(q, tmp, g);
                    TensorPrimitives.Multiply(g, invT, g);
                    break;
                default: // JSD(0.5): m = (p + q)/2
                    TensorPrimitives.Add(p, q, tmp);
                    TensorPrimitives.Multiply(tmp, 0.5f, tmp);
                    TensorPrimitives.Log(tmp, tmp);                       // log m
                    TensorPrimitives.Subtract(logQ, tmp, g);              // log(q/m)
                    TensorPrimitives.Subtract(logP, tmp, tmp);            // log(p/m)
                    float klQ = TensorPrimitives.Dot(q, g);
                    total += (0.5 * TensorPrimitives.Dot(p, tmp)) + (0.5 * klQ);
                    TensorPrimitives.Subtract(g, klQ, g);
                    TensorPrimitives.Multiply(q, g, g);
                    TensorPrimitives.Multiply(g, 0.5f * invT, g);
                    break;
            }
        }

        return total;
    }

    public static double MathNet(Divergence divergence, float[] teacher, float[] student, float[] gradient, int vocab, float temperature)
    {
        int rows = teacher.Length / vocab;
        VectorBuilder<float> build = Vector<float>.Build;
        double total = 0;
        for (int r = 0; r < rows; r++)
        {
            Vector<float> logP = LogSoftmax(build.Dense(teacher.AsSpan(r * vocab, vocab).ToArray()), temperature);
            Vector<float> logQ = LogSoftmax(build.Dense(student.AsSpan(r * vocab, vocab).ToArray()), temperature);
            Vector<float> p = logP.PointwiseExp(), q = logQ.PointwiseExp();
            Vector<float> g;
            switch (divergence.Kind)
            {
                case DivergenceKind.ForwardKL:
                    total += p.DotProduct(logP - logQ);
                    g = (q - p) / temperature;
                    break;
                case DivergenceKind.SoftCrossEntropy:
                    total -= p.DotProduct(logQ);
                    g = (q - p) / temperature;
                    break;
                case DivergenceKind.ReverseKL:
                    Vector<float> d = logQ - logP;
                    float value = q.DotProduct(d);
                    total += value;
                    g = q.PointwiseMultiply(d - value) / temperature;
                    break;
                default:
                    Vector<float> logM = ((p + q) * 0.5f).PointwiseLog();
                    Vector<float> logQM = logQ - logM;
                    float klQ = q.DotProduct(logQM);
                    total += (0.5 * p.DotProduct(logP - logM)) + (0.5 * klQ);
                    g = q.PointwiseMultiply(logQM - klQ) * (0.5f / temperature);
                    break;
            }

            g.AsArray().AsSpan().CopyTo(gradient.AsSpan(r * vocab, vocab));
        }

        return total;
    }

    /// <summary>log softmax(x/T), subtracting the max first (TensorPrimitives.SoftMax does not).</summary>
    private static void LogSoftmax(ReadOnlySpan<float> x, float invT, Span<float> destination)
    {
        TensorPrimitives.Multiply(x, invT, destination);
        float max = TensorPrimitives.Max(destination);
        TensorPrimitives.Subtract(destination, max, destination);
        float lse = MathF.Log(SumExp(destination));
        TensorPrimitives.Subtract(destination, lse, destination);
    }

    private static float SumExp(ReadOnlySpan<float> x)
    {
        Span<float> tmp = x.Length <= 4096 ? stackalloc float[x.Length] : new float[x.Length];
        TensorPrimitives.Exp(x, tmp);
        return TensorPrimitives.Sum(tmp);
    }

    private static Vector<float> LogSoftmax(Vector<float> x, float temperature)
    {
        Vector<float> z = x / temperature;
        z -= z.Maximum();
        return z - MathF.Log((float)z.PointwiseExp().Sum());
    }
}
