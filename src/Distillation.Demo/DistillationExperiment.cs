using System;
using System.Collections.Generic;
using MathNet.Numerics.LinearAlgebra;

namespace Distillation.Demo;

/// <summary>What one seed's run produced.</summary>
/// <param name="SourceCrossEntropy">The source's own held-out cross-entropy: the floor for any model, even one that sees z.</param>
/// <param name="Teacher">The teacher's run (its KL is KL(source ‖ teacher)).</param>
/// <param name="Students">The students' runs, in recipe order (their KL is KL(teacher ‖ student)).</param>
/// <param name="HeldOutTokens">The held-out rows every metric is averaged over.</param>
internal sealed record ExperimentResult(double SourceCrossEntropy, TrainingRun Teacher, IReadOnlyList<TrainingRun> Students, int HeldOutTokens);

/// <summary>
/// One run of the experiment: draw a source and its data, train the teacher (which sees z) with hard labels on a
/// large corpus, then train one student per recipe on a small training set (same model, batches, optimiser and
/// steps), scoring everything on the same held-out sequences.
/// </summary>
internal static class DistillationExperiment
{
    public static ExperimentResult Run(DemoSettings s, bool verbose)
    {
        int v = s.VocabularySize;
        var source = new HiddenRegimeSource(v, s.Regimes, new Random(s.Seed));
        var dataRandom = new Random(s.Seed + 1);
        TokenSequence[] teacherCorpus = source.Sample(s.TeacherSequences, s.SequenceLength, dataRandom);
        TokenSequence[] train = source.Sample(s.TrainSequences, s.SequenceLength, dataRandom);
        TokenSequence[] heldOut = source.Sample(s.HeldOutSequences, s.SequenceLength, dataRandom);
        var studentFeatures = new LastTokensFeatures(v, s.StudentContext);
        var teacherFeatures = new RegimeAndLastTokenFeatures(v, s.Regimes);

        if (verbose)
        {
            Console.WriteLine(Invariant($"Source:   V = {v} tokens, {s.Regimes} hidden regimes z (one per sequence, each favouring its own third of the"));
            Console.WriteLine(Invariant($"          vocabulary), y_t ~ A_z[y_(t-1), .], sequences of {s.SequenceLength} tokens; seed {s.Seed}."));
            Console.WriteLine(Invariant($"Teacher:  softmax-linear on one-hot (z, previous token), {teacherFeatures.Count} features; sees z."));
            Console.WriteLine(Invariant($"Students: softmax-linear on one-hot last {s.StudentContext} tokens, {studentFeatures.Count} features; no z. {s.TrainSequences} training sequences"));
            Console.WriteLine(Invariant($"          ({s.TrainSequences * s.SequenceLength} tokens), Adam lr {s.LearningRate}, {s.BatchSequences} sequences a step, {s.Steps} steps, the same batches for all."));
            Console.WriteLine(Invariant($"Held out: {s.HeldOutSequences} sequences ({s.HeldOutSequences * s.SequenceLength} tokens) for every metric."));
            Console.WriteLine();
            Console.WriteLine(Invariant($"Teacher: LanguageModelLoss() on {s.TeacherSequences} sequences of the source, {s.TeacherSteps} steps of {TeacherBatch} sequences, Adam lr {TeacherLearningRate}"));
        }

        // The teacher: hard labels on a large corpus, seeing z; scored against the source's true distributions.
        var teacherModel = new SoftmaxLinearModel(teacherFeatures, v);
        var sourceRows = TeacherDistribution.FromProbabilities(SourceProbabilities(source, heldOut), v);
        Matrix<float> teacherPhi = teacherModel.FeatureMatrix(heldOut);
        var heldOutLabels = new TokenLabels(Recipe.NextTokens(heldOut));
        var forwardKL = new DistillationLoss(Divergence.ForwardKL);
        var crossEntropy = new LanguageModelLoss();
        (double, double) EvaluateTeacher(SoftmaxLinearModel m)
        {
            var q = StudentDistribution.FromLogits(m.Logits(teacherPhi), v);
            return (crossEntropy.Evaluate(q, heldOutLabels).Value, forwardKL.Evaluate(sourceRows, q).Value);
        }

        DemoSettings teacherSettings = s with { BatchSequences = TeacherBatch, LearningRate = TeacherLearningRate, ProgressLines = verbose ? s.ProgressLines / 2 : 0 };
        TrainingRun teacherRun = Trainer.Train(teacherModel, new HardLabelRecipe(), teacherCorpus, s.TeacherSteps, teacherSettings, EvaluateTeacher, "KL(source||teacher)");
        teacherRun = teacherRun with { Name = "teacher (sees z)", ShortName = "teacher" };
        var teacher = new Teacher(teacherModel, s.Regimes);

        // The students: the same model, data, batches and steps; only the loss differs. The objective's λ rises from
        // 0 (hard labels only) to 0.8 over the first fifth of the steps.
        int warmUp = Math.Max(1, s.Steps / 5);
        Recipe[] recipes =
        [
            new HardLabelRecipe(),
            new TokenDistillationRecipe(teacher, s.Temperature),
            new SequenceDistillationRecipe(teacher, s.SequenceSamples),
            new ObjectiveRecipe(
                teacher,
                new DistillationObjective(Divergence.ForwardKL, s.Temperature, LambdaSchedule.WarmUp(warmUp, LambdaSchedule.Constant(0.8))),
                "λ warm-up to 0.8",
                Invariant($"WarmUp({warmUp}, Constant(0.8))")),
        ];
        var heldOutSet = new HeldOutSet(heldOut, teacher, studentFeatures, v);
        var students = new List<TrainingRun>();
        for (int r = 0; r < recipes.Length; r++)
        {
            if (verbose)
            {
                Console.WriteLine();
                Console.WriteLine(Invariant($"Student {r + 1}/{recipes.Length}, {recipes[r].Name}: {recipes[r].Description}"));
            }

            students.Add(Trainer.Train(new SoftmaxLinearModel(studentFeatures, v), recipes[r], train, s.Steps, verbose ? s : s with { ProgressLines = 0 }, heldOutSet.Evaluate, "KL(teacher||student)"));
        }

        return new ExperimentResult(SourceCrossEntropy(source, heldOut), teacherRun, students, heldOutSet.Rows);
    }

    /// <summary>The teacher's batch: it has a large corpus and is trained once.</summary>
    public const int TeacherBatch = 64;

    /// <summary>The teacher's Adam learning rate.</summary>
    public const float TeacherLearningRate = 0.02f;

    /// <summary>The source's true P(y | prev, z) for every row, rows × V.</summary>
    private static float[] SourceProbabilities(HiddenRegimeSource source, TokenSequence[] sequences)
    {
        var rows = new List<float>();
        foreach (TokenSequence s in sequences)
        {
            int prev = source.Start;
            foreach (int y in s.Tokens)
            {
                foreach (double p in source.Probabilities(s.Regime, prev))
                {
                    rows.Add((float)p);
                }

                prev = y;
            }
        }

        return rows.ToArray();
    }

    /// <summary>The source's own cross-entropy on the held-out tokens.</summary>
    private static double SourceCrossEntropy(HiddenRegimeSource source, TokenSequence[] sequences)
    {
        double sum = 0;
        int count = 0;
        foreach (TokenSequence s in sequences)
        {
            int prev = source.Start;
            foreach (int y in s.Tokens)
            {
                sum -= Math.Log(source.Probabilities(s.Regime, prev)[y]);
                prev = y;
                count++;
            }
        }

        return sum / count;
    }

    private static string Invariant(FormattableString text) => FormattableString.Invariant(text);
}
