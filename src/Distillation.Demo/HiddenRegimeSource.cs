using System;

namespace Distillation.Demo;

/// <summary>One sequence from the source: its hidden regime z and its tokens.</summary>
/// <param name="Regime">z, fixed for the whole sequence; only the teacher sees it.</param>
/// <param name="Tokens">The visible tokens y_0 … y_{L−1}.</param>
internal sealed record TokenSequence(int Regime, int[] Tokens);

/// <summary>
/// The data source: a mixture of Markov chains. Each sequence draws a hidden regime z uniformly (its "topic"), then
/// y_0 ~ π_z and y_t ~ A_z[y_{t−1}, ·]. Each regime favours its own subset of the vocabulary, so the visible context
/// carries some evidence about z, but never all of it: a model that sees z predicts better than one that must guess.
/// </summary>
internal sealed class HiddenRegimeSource
{
    /// <summary>The "previous token" index used at position 0, where there is none.</summary>
    public int Start => VocabularySize;

    // _probabilities[z][prev][y] = P(y | prev, z), prev = Start for the first token.
    private readonly double[][][] _probabilities;

    /// <summary>Draws the source's parameters.</summary>
    /// <param name="vocabularySize">V.</param>
    /// <param name="regimes">The number of hidden regimes.</param>
    /// <param name="random">The generator that draws the parameters.</param>
    public HiddenRegimeSource(int vocabularySize, int regimes, Random random)
    {
        VocabularySize = vocabularySize;
        RegimeCount = regimes;
        _probabilities = new double[regimes][][];
        int favoured = vocabularySize / 3;
        for (int z = 0; z < regimes; z++)
        {
            // The regime's topic: a third of the vocabulary, each token's logit lifted by TopicBoost.
            bool[] topic = new bool[vocabularySize];
            int[] order = Permutation(vocabularySize, random);
            for (int i = 0; i < favoured; i++)
            {
                topic[order[i]] = true;
            }

            _probabilities[z] = new double[vocabularySize + 1][];
            for (int prev = 0; prev <= vocabularySize; prev++)
            {
                var logits = new double[vocabularySize];
                for (int y = 0; y < vocabularySize; y++)
                {
                    logits[y] = (LogitScale * Gaussian(random)) + (topic[y] ? TopicBoost : 0);
                }

                _probabilities[z][prev] = Softmax(logits);
            }
        }
    }

    /// <summary>The standard deviation of the random transition logits.</summary>
    public const double LogitScale = 1.5;

    /// <summary>How much a regime lifts the logits of its favoured tokens.</summary>
    public const double TopicBoost = 2.0;

    /// <summary>V.</summary>
    public int VocabularySize { get; }

    /// <summary>The number of regimes z can take.</summary>
    public int RegimeCount { get; }

    /// <summary>The true P(y | prev, z) (prev = <see cref="Start"/> for the first token).</summary>
    public ReadOnlySpan<double> Probabilities(int regime, int previous) => _probabilities[regime][previous];

    /// <summary>Draws one sequence of <paramref name="length"/> tokens.</summary>
    public TokenSequence Sample(int length, Random random)
    {
        int z = random.Next(RegimeCount);
        var tokens = new int[length];
        int prev = Start;
        for (int t = 0; t < length; t++)
        {
            tokens[t] = Categorical(Probabilities(z, prev), random);
            prev = tokens[t];
        }

        return new TokenSequence(z, tokens);
    }

    /// <summary>Draws <paramref name="count"/> sequences.</summary>
    public TokenSequence[] Sample(int count, int length, Random random)
    {
        var sequences = new TokenSequence[count];
        for (int i = 0; i < count; i++)
        {
            sequences[i] = Sample(length, random);
        }

        return sequences;
    }

    /// <summary>An index drawn with the given probabilities.</summary>
    public static int Categorical(ReadOnlySpan<double> probabilities, Random random)
    {
        double u = random.NextDouble();
        for (int i = 0; i < probabilities.Length - 1; i++)
        {
            u -= probabilities[i];
            if (u < 0)
            {
                return i;
            }
        }

        return probabilities.Length - 1;
    }

    /// <summary>A standard normal draw (Box–Muller).</summary>
    public static double Gaussian(Random random)
    {
        double u = 1 - random.NextDouble();
        return Math.Sqrt(-2 * Math.Log(u)) * Math.Cos(2 * Math.PI * random.NextDouble());
    }

    private static int[] Permutation(int n, Random random)
    {
        var order = new int[n];
        for (int i = 0; i < n; i++)
        {
            order[i] = i;
        }

        random.Shuffle(order);
        return order;
    }

    private static double[] Softmax(double[] logits)
    {
        double max = double.NegativeInfinity;
        foreach (double v in logits)
        {
            max = Math.Max(max, v);
        }

        double sum = 0;
        var p = new double[logits.Length];
        for (int i = 0; i < p.Length; i++)
        {
            p[i] = Math.Exp(logits[i] - max);
            sum += p[i];
        }

        for (int i = 0; i < p.Length; i++)
        {
            p[i] /= sum;
        }

        return p;
    }
}
