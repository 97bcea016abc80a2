using System;
using MathNet.Numerics.LinearAlgebra;

namespace Distillation.Demo;

/// <summary>What one training step produced: the rows' features, dL/d(logits) from the library, the loss and λ.</summary>
/// <param name="Features">Φ, F × rows: the rows the model was trained on this step.</param>
/// <param name="LogitGradient">dL/d(logits), rows × V, row-major, as the library wrote it.</param>
/// <param name="Loss">The loss per token.</param>
/// <param name="Lambda">λ at this step, for the combined objective.</param>
internal readonly record struct StepOutput(Matrix<float> Features, float[] LogitGradient, double Loss, double? Lambda = null);

/// <summary>
/// One way to train a model on a batch of training sequences: which rows it is trained on and which library loss
/// gives the gradient. Everything else (model, data, batches, optimiser, steps) is the same for every recipe.
/// </summary>
internal abstract class Recipe
{
    /// <summary>A name for the results table and the plot's legend.</summary>
    public abstract string Name { get; }

    /// <summary>A shorter name for narrow table columns.</summary>
    public abstract string ShortName { get; }

    /// <summary>The library call, for the log.</summary>
    public abstract string Description { get; }

    /// <summary>Runs the model on this step's rows and asks the library for the loss and dL/d(logits).</summary>
    public abstract StepOutput Step(SoftmaxLinearModel model, TokenSequence[] batch, long step, Random random);

    /// <summary>The true next token of every row: y_t for every position of every sequence.</summary>
    public static int[] NextTokens(ReadOnlySpan<TokenSequence> sequences)
    {
        int rows = 0;
        foreach (TokenSequence s in sequences)
        {
            rows += s.Tokens.Length;
        }

        var labels = new int[rows];
        int row = 0;
        foreach (TokenSequence s in sequences)
        {
            s.Tokens.CopyTo(labels, row);
            row += s.Tokens.Length;
        }

        return labels;
    }
}

/// <summary>1. Hard labels only: −log q(y_t | x') on the sequences' own next tokens (<see cref="LanguageModelLoss"/>).</summary>
internal sealed class HardLabelRecipe : Recipe
{
    private readonly LanguageModelLoss _loss = new();

    public override string Name => "hard labels";

    public override string ShortName => "hard labels";

    public override string Description => "LanguageModelLoss() on the training sequences' next tokens";

    public override StepOutput Step(SoftmaxLinearModel model, TokenSequence[] batch, long step, Random random)
    {
        Matrix<float> phi = model.FeatureMatrix(batch);
        float[] logits = model.Logits(phi);
        var gradient = new float[logits.Length];
        LossResult result = _loss.Compute(StudentDistribution.FromLogits(logits, model.VocabularySize), new TokenLabels(NextTokens(batch)), gradient);
        return new StepOutput(phi, gradient, result.Value);
    }
}

/// <summary>
/// 2. Token-level KD: forward KL(p_t ‖ q) at temperature T (× T²) between the teacher, which sees z, and the student,
/// which does not, on the same rows (<see cref="DistillationLoss"/>).
/// </summary>
internal sealed class TokenDistillationRecipe(Teacher teacher, float temperature) : Recipe
{
    private readonly DistillationLoss _loss = new(Divergence.ForwardKL, temperature, TemperatureScaling.Squared);

    public override string Name => FormattableString.Invariant($"token KD (T = {temperature:0.#})");

    public override string ShortName => "token KD";

    public override string Description => FormattableString.Invariant($"DistillationLoss(ForwardKL, T = {temperature:0.#}, Squared) against the teacher's rows");

    public override StepOutput Step(SoftmaxLinearModel model, TokenSequence[] batch, long step, Random random)
    {
        Matrix<float> phi = model.FeatureMatrix(batch);
        float[] logits = model.Logits(phi);
        var gradient = new float[logits.Length];
        var p = TeacherDistribution.FromLogProbabilities(teacher.LogProbabilities(batch), model.VocabularySize);
        LossResult result = _loss.Compute(p, StudentDistribution.FromLogits(logits, model.VocabularySize), gradient);
        return new StepOutput(phi, gradient, result.Value);
    }
}

/// <summary>
/// 3. Sequence-level KD (Kim &amp; Rush): for each training sequence in the batch, draw <c>samples</c> fresh sequences
/// from the teacher given that sequence's z, and train the student on them under teacher forcing
/// (<see cref="SequenceDistillationLoss"/> with <see cref="SequenceEstimator.MonteCarlo"/>: w_k = 1/K).
/// </summary>
internal sealed class SequenceDistillationRecipe(Teacher teacher, int samples) : Recipe
{
    private readonly SequenceDistillationLoss _loss = new(SequenceEstimator.MonteCarlo);

    public override string Name => FormattableString.Invariant($"sequence KD ({samples} samples)");

    public override string ShortName => "sequence KD";

    public override string Description => FormattableString.Invariant($"SequenceDistillationLoss(MonteCarlo) on {samples} fresh teacher samples per training sequence (given its z) and step");

    public override StepOutput Step(SoftmaxLinearModel model, TokenSequence[] batch, long step, Random random)
    {
        int length = batch[0].Tokens.Length;
        var candidates = new TokenSequence[batch.Length * samples];
        var teacherLogProbabilities = new double[candidates.Length];
        for (int i = 0; i < candidates.Length; i++)
        {
            candidates[i] = teacher.Sample(batch[i / samples].Regime, length, random);
            teacherLogProbabilities[i] = teacher.SequenceLogProbability(candidates[i]);
        }

        Matrix<float> phi = model.FeatureMatrix(candidates);
        float[] logits = model.Logits(phi);
        var gradient = new float[logits.Length];
        var student = StudentDistribution.FromLogits(logits, model.VocabularySize, SequenceLayout.Rectangular(candidates.Length, length));
        SequenceLossResult result = _loss.Compute(student, new TokenLabels(NextTokens(candidates)), teacherLogProbabilities, gradient);

        // The sequence loss is per sequence (a sum over its L tokens); divide by L to put it per token like the others.
        for (int i = 0; i < gradient.Length; i++)
        {
            gradient[i] /= length;
        }

        return new StepOutput(phi, gradient, result.CrossEntropy / length);
    }
}

/// <summary>
/// 4. The combined objective L = λ·KD + (1 − λ)·LM under a λ schedule (<see cref="DistillationObjective"/>): the
/// teacher's rows and the true next tokens, in one call.
/// </summary>
internal sealed class ObjectiveRecipe(Teacher teacher, DistillationObjective objective, string schedule, string scheduleCode) : Recipe
{
    public override string Name => FormattableString.Invariant($"objective ({schedule})");

    public override string ShortName => "objective";

    public override string Description => FormattableString.Invariant(
        $"DistillationObjective(ForwardKL, T = {objective.Options.Temperature:0.#}, {objective.Options.TemperatureScaling}), λ·KD + (1 - λ)·LM, λ = {scheduleCode}");

    public override StepOutput Step(SoftmaxLinearModel model, TokenSequence[] batch, long step, Random random)
    {
        Matrix<float> phi = model.FeatureMatrix(batch);
        float[] logits = model.Logits(phi);
        var gradient = new float[logits.Length];
        var p = TeacherDistribution.FromLogProbabilities(teacher.LogProbabilities(batch), model.VocabularySize);
        ObjectiveResult result = objective.Compute(p, StudentDistribution.FromLogits(logits, model.VocabularySize), new TokenLabels(NextTokens(batch)), gradient, step);
        return new StepOutput(phi, gradient, result.Total, result.Lambda);
    }
}
