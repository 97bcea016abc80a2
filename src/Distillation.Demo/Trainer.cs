using System;
using System.Collections.Generic;
using MathNet.Numerics.LinearAlgebra;

namespace Distillation.Demo;

/// <summary>One point of a training curve: held-out metrics after <see cref="Step"/> updates.</summary>
internal readonly record struct CurvePoint(int Step, double CrossEntropy, double KL);

/// <summary>A trained model's curve and final metrics.</summary>
internal sealed record TrainingRun(string Name, string ShortName, List<CurvePoint> Curve, double CrossEntropy, double KL)
{
    /// <summary>The point of the curve with the lowest held-out KL (what early stopping on KL would keep).</summary>
    public CurvePoint Best
    {
        get
        {
            CurvePoint best = Curve[0];
            foreach (CurvePoint p in Curve)
            {
                if (p.KL < best.KL)
                {
                    best = p;
                }
            }

            return best;
        }
    }
}

/// <summary>The held-out sequences, ready to score a student: its features, the teacher's rows and the true next tokens.</summary>
internal sealed class HeldOutSet(TokenSequence[] sequences, Teacher teacher, IContextFeatures studentFeatures, int vocabularySize)
{
    private readonly Matrix<float> _phi = SoftmaxLinearModel.FeatureMatrix(studentFeatures, sequences);
    private readonly TeacherDistribution _teacher = TeacherDistribution.FromLogProbabilities(teacher.LogProbabilities(sequences), vocabularySize);
    private readonly TokenLabels _labels = new(Recipe.NextTokens(sequences));
    private readonly LanguageModelLoss _crossEntropy = new();
    private readonly DistillationLoss _kl = new(Divergence.ForwardKL);

    public int Rows => _labels.Length;

    /// <summary>The student's cross-entropy on the true next tokens and KL(teacher ‖ student) at T = 1, per token, in nats.</summary>
    public (double CrossEntropy, double KL) Evaluate(SoftmaxLinearModel student)
    {
        var q = StudentDistribution.FromLogits(student.Logits(_phi), student.VocabularySize);
        return (_crossEntropy.Evaluate(q, _labels).Value, _kl.Evaluate(_teacher, q).Value);
    }
}

/// <summary>The training loop shared by the teacher and every student: same batches, same optimiser, same steps.</summary>
internal static class Trainer
{
    public static TrainingRun Train(SoftmaxLinearModel model, Recipe recipe, TokenSequence[] train, int steps, DemoSettings settings, Func<SoftmaxLinearModel, (double CrossEntropy, double KL)> evaluate, string metricLabel)
    {
        var adam = new Adam(model.Weights.RowCount * model.Weights.ColumnCount, settings.LearningRate);

        // The batch order depends on the seed only, so every recipe sees the same sequences at the same step.
        var batchRandom = new Random(settings.Seed + 1000);
        var sampleRandom = new Random(settings.Seed + 2000);
        int[] order = new int[train.Length];
        for (int i = 0; i < order.Length; i++)
        {
            order[i] = i;
        }

        int cursor = order.Length;
        int batchSize = Math.Min(settings.BatchSequences, train.Length);
        var batch = new TokenSequence[batchSize];
        int evalEvery = Math.Max(1, steps / settings.Evaluations);
        int printEvery = settings.ProgressLines > 0 ? Math.Max(1, steps / settings.ProgressLines) : int.MaxValue;
        var curve = new List<CurvePoint>();
        (double ce, double kl) = evaluate(model);
        curve.Add(new CurvePoint(0, ce, kl));
        double lossSum = 0;
        int lossCount = 0;
        for (int step = 0; step < steps; step++)
        {
            for (int b = 0; b < batchSize; b++)
            {
                if (cursor == order.Length)
                {
                    batchRandom.Shuffle(order);
                    cursor = 0;
                }

                batch[b] = train[order[cursor++]];
            }

            StepOutput output = recipe.Step(model, batch, step, sampleRandom);
            adam.Step(model.Weights, model.Backward(output.LogitGradient, output.Features));
            lossSum += output.Loss;
            lossCount++;

            int done = step + 1;
            bool print = done % printEvery == 0 || (done == steps && settings.ProgressLines > 0);
            if (print || done % evalEvery == 0 || done == steps)
            {
                (ce, kl) = evaluate(model);
                curve.Add(new CurvePoint(done, ce, kl));
            }

            if (print)
            {
                string lambda = output.Lambda is double l ? FormattableString.Invariant($"  λ {l:F2}") : "";
                Console.WriteLine(FormattableString.Invariant($"  step {done,5}  train loss {lossSum / lossCount,7:F4}{lambda}  held-out {metricLabel} {kl:F4}  CE {ce:F4}"));
                lossSum = 0;
                lossCount = 0;
            }
        }

        return new TrainingRun(recipe.Name, recipe.ShortName, curve, ce, kl);
    }
}
