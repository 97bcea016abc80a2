using System;
using MathNet.Numerics.LinearAlgebra;

namespace Distillation.Demo;

/// <summary>
/// Which one-hot features describe the context of a position: the model's whole view of the input.
/// </summary>
internal interface IContextFeatures
{
    /// <summary>The number of features F (the bias included).</summary>
    int Count { get; }

    /// <summary>How many features are 1 at every position.</summary>
    int ActivePerRow { get; }

    /// <summary>Writes the indices of the features that are 1 when predicting token <paramref name="position"/> of <paramref name="sequence"/>.</summary>
    void Active(TokenSequence sequence, int position, Span<int> indices);
}

/// <summary>The student's view: one-hot codes of the last k visible tokens ("none" before the start), and a bias. No z.</summary>
internal sealed class LastTokensFeatures(int vocabularySize, int contextLength) : IContextFeatures
{
    public int Count => (contextLength * (vocabularySize + 1)) + 1;

    public int ActivePerRow => contextLength + 1;

    public void Active(TokenSequence sequence, int position, Span<int> indices)
    {
        for (int j = 1; j <= contextLength; j++)
        {
            int token = position - j >= 0 ? sequence.Tokens[position - j] : vocabularySize;
            indices[j - 1] = ((j - 1) * (vocabularySize + 1)) + token;
        }

        indices[contextLength] = Count - 1;
    }
}

/// <summary>The teacher's view: one-hot code of the pair (z, last token), and a bias; it sees the hidden regime.</summary>
internal sealed class RegimeAndLastTokenFeatures(int vocabularySize, int regimes) : IContextFeatures
{
    public int Count => (regimes * (vocabularySize + 1)) + 1;

    public int ActivePerRow => 2;

    public void Active(TokenSequence sequence, int position, Span<int> indices)
    {
        int previous = position > 0 ? sequence.Tokens[position - 1] : vocabularySize;
        indices[0] = (sequence.Regime * (vocabularySize + 1)) + previous;
        indices[1] = Count - 1;
    }
}

/// <summary>
/// A softmax-linear next-token model: logits = W·φ(context), W a V × F matrix, φ one-hot features. The loss's
/// gradient dL/d(logits) comes from the library; <see cref="Backward"/> turns it into dL/dW = G·Φᵀ by hand.
/// </summary>
/// <remarks>
/// Matrices are MathNet's column-major dense matrices. The logits are kept as a V × rows matrix, whose
/// column-major storage is exactly the library's row-major rows × V buffer, so no copy is needed either way.
/// </remarks>
internal sealed class SoftmaxLinearModel(IContextFeatures features, int vocabularySize)
{
    /// <summary>The context features the model reads.</summary>
    public IContextFeatures Features { get; } = features;

    /// <summary>V.</summary>
    public int VocabularySize { get; } = vocabularySize;

    /// <summary>W, V × F, initialised to zero (the uniform distribution).</summary>
    public Matrix<float> Weights { get; } = Matrix<float>.Build.Dense(vocabularySize, features.Count);

    /// <summary>Φ: the F × rows matrix of one-hot features for every position of <paramref name="sequences"/>.</summary>
    public Matrix<float> FeatureMatrix(ReadOnlySpan<TokenSequence> sequences) => FeatureMatrix(Features, sequences);

    /// <summary>Φ for <paramref name="features"/>: column r holds the features of row r (sequence by sequence, position by position).</summary>
    public static Matrix<float> FeatureMatrix(IContextFeatures features, ReadOnlySpan<TokenSequence> sequences)
    {
        int rows = 0;
        foreach (TokenSequence s in sequences)
        {
            rows += s.Tokens.Length;
        }

        Matrix<float> phi = Matrix<float>.Build.Dense(features.Count, rows);
        Span<int> active = stackalloc int[features.ActivePerRow];
        int row = 0;
        foreach (TokenSequence s in sequences)
        {
            for (int t = 0; t < s.Tokens.Length; t++, row++)
            {
                features.Active(s, t, active);
                foreach (int f in active)
                {
                    phi[f, row] = 1f;
                }
            }
        }

        return phi;
    }

    /// <summary>The logits of every row as a row-major rows × V buffer (W·Φ).</summary>
    public float[] Logits(Matrix<float> phi)
    {
        Matrix<float> logits = Weights * phi; // V × rows, column-major = row-major rows × V
        return logits.AsColumnMajorArray();
    }

    /// <summary>dL/dW = G·Φᵀ, G the library's gradient with respect to the logits (row-major rows × V).</summary>
    public Matrix<float> Backward(float[] logitGradient, Matrix<float> phi)
    {
        Matrix<float> g = Matrix<float>.Build.Dense(VocabularySize, phi.ColumnCount, logitGradient);
        return g.TransposeAndMultiply(phi);
    }
}

/// <summary>Adam (Kingma &amp; Ba) on a model's weights, in place.</summary>
internal sealed class Adam(int size, float learningRate, float beta1 = 0.9f, float beta2 = 0.999f, float epsilon = 1e-8f)
{
    private readonly float[] _m = new float[size];
    private readonly float[] _v = new float[size];
    private int _t;

    /// <summary>One update of <paramref name="weights"/> from <paramref name="gradient"/> (same layout).</summary>
    public void Step(Matrix<float> weights, Matrix<float> gradient)
    {
        float[] w = weights.AsColumnMajorArray();
        float[] g = gradient.AsColumnMajorArray();
        _t++;
        float c1 = 1 - MathF.Pow(beta1, _t), c2 = 1 - MathF.Pow(beta2, _t);
        for (int i = 0; i < w.Length; i++)
        {
            _m[i] = (beta1 * _m[i]) + ((1 - beta1) * g[i]);
            _v[i] = (beta2 * _v[i]) + ((1 - beta2) * g[i] * g[i]);
            w[i] -= learningRate * (_m[i] / c1) / (MathF.Sqrt(_v[i] / c2) + epsilon);
        }
    }
}
