using System;
using MathNet.Numerics.LinearAlgebra;

namespace Distillation.Demo;

/// <summary>
/// The trained teacher, frozen: P_t(y | z, previous token) for every regime and previous token, read off the
/// trained softmax-linear model once. It gives the token-level targets (log-probabilities of any row), the
/// log-probability of a whole sequence, and samples sequences for sequence-level distillation.
/// </summary>
internal sealed class Teacher
{
    private readonly int _vocabularySize;

    // _logProbabilities[z][prev * V + y] = log P_t(y | prev, z); prev = V at the start.
    private readonly float[][] _logProbabilities;
    private readonly double[][] _probabilities;

    public Teacher(SoftmaxLinearModel model, int regimes)
    {
        _vocabularySize = model.VocabularySize;
        int v = _vocabularySize;
        _logProbabilities = new float[regimes][];
        _probabilities = new double[regimes * (v + 1)][];

        // One row per (z, previous token): the model's whole input space.
        var contexts = new TokenSequence[regimes * (v + 1)];
        for (int z = 0; z < regimes; z++)
        {
            for (int prev = 0; prev <= v; prev++)
            {
                contexts[(z * (v + 1)) + prev] = prev == v ? new TokenSequence(z, [0]) : new TokenSequence(z, [prev, 0]);
            }
        }

        Matrix<float> phi = Matrix<float>.Build.Dense(model.Features.Count, contexts.Length);
        Span<int> active = stackalloc int[model.Features.ActivePerRow];
        for (int c = 0; c < contexts.Length; c++)
        {
            model.Features.Active(contexts[c], contexts[c].Tokens.Length - 1, active);
            foreach (int f in active)
            {
                phi[f, c] = 1f;
            }
        }

        float[] logits = model.Logits(phi);
        for (int z = 0; z < regimes; z++)
        {
            _logProbabilities[z] = new float[(v + 1) * v];
            for (int prev = 0; prev <= v; prev++)
            {
                int c = (z * (v + 1)) + prev;
                ReadOnlySpan<float> row = logits.AsSpan(c * v, v);
                double max = double.NegativeInfinity, sum = 0;
                foreach (float s in row)
                {
                    max = Math.Max(max, s);
                }

                foreach (float s in row)
                {
                    sum += Math.Exp(s - max);
                }

                double logZ = max + Math.Log(sum);
                _probabilities[c] = new double[v];
                for (int y = 0; y < v; y++)
                {
                    _logProbabilities[z][(prev * v) + y] = (float)(row[y] - logZ);
                    _probabilities[c][y] = Math.Exp(row[y] - logZ);
                }
            }
        }
    }

    /// <summary>log P_t(· | x, z) for every position of every sequence: rows × V, row-major, in sequence order.</summary>
    public float[] LogProbabilities(ReadOnlySpan<TokenSequence> sequences)
    {
        int rows = 0;
        foreach (TokenSequence s in sequences)
        {
            rows += s.Tokens.Length;
        }

        int v = _vocabularySize;
        var result = new float[rows * v];
        int row = 0;
        foreach (TokenSequence s in sequences)
        {
            for (int t = 0; t < s.Tokens.Length; t++, row++)
            {
                int prev = t > 0 ? s.Tokens[t - 1] : v;
                _logProbabilities[s.Regime].AsSpan(prev * v, v).CopyTo(result.AsSpan(row * v, v));
            }
        }

        return result;
    }

    /// <summary>log P_t(y_0 … y_{L−1} | z) = Σ_t log P_t(y_t | y_{t−1}, z).</summary>
    public double SequenceLogProbability(TokenSequence sequence)
    {
        int v = _vocabularySize, prev = v;
        double sum = 0;
        foreach (int y in sequence.Tokens)
        {
            sum += _logProbabilities[sequence.Regime][(prev * v) + y];
            prev = y;
        }

        return sum;
    }

    /// <summary>Samples a sequence of <paramref name="length"/> tokens from the teacher given the regime z (ancestral sampling at T = 1).</summary>
    public TokenSequence Sample(int regime, int length, Random random)
    {
        int v = _vocabularySize, prev = v;
        var tokens = new int[length];
        for (int t = 0; t < length; t++)
        {
            tokens[t] = HiddenRegimeSource.Categorical(_probabilities[(regime * (v + 1)) + prev], random);
            prev = tokens[t];
        }

        return new TokenSequence(regime, tokens);
    }
}
