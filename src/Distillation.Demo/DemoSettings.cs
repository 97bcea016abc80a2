using System.IO;

namespace Distillation.Demo;

/// <summary>The sizes and hyper-parameters of one run; <see cref="Quick"/> is the small CI version.</summary>
internal sealed record DemoSettings
{
    /// <summary>Seeds the source's parameters, the data, the batches and the teacher's samples.</summary>
    public int Seed { get; init; } = 1;

    /// <summary>V.</summary>
    public int VocabularySize { get; init; } = 24;

    /// <summary>How many values the hidden regime z takes.</summary>
    public int Regimes { get; init; } = 4;

    /// <summary>L, the tokens of every sequence.</summary>
    public int SequenceLength { get; init; } = 32;

    /// <summary>k: how many previous tokens the student sees.</summary>
    public int StudentContext { get; init; } = 3;

    /// <summary>The teacher's training corpus, in sequences.</summary>
    public int TeacherSequences { get; init; } = 2000;

    /// <summary>The teacher's training steps.</summary>
    public int TeacherSteps { get; init; } = 600;

    /// <summary>The students' training set, in sequences: small on purpose.</summary>
    public int TrainSequences { get; init; } = 64;

    /// <summary>The held-out sequences every metric is computed on.</summary>
    public int HeldOutSequences { get; init; } = 500;

    /// <summary>Every student's training steps.</summary>
    public int Steps { get; init; } = 1000;

    /// <summary>Training sequences per student step.</summary>
    public int BatchSequences { get; init; } = 8;

    /// <summary>The students' Adam learning rate.</summary>
    public float LearningRate { get; init; } = 0.02f;

    /// <summary>T of token-level KD and of the objective's KD term.</summary>
    public float Temperature { get; init; } = 2f;

    /// <summary>Teacher samples per training sequence and step for sequence-level KD.</summary>
    public int SequenceSamples { get; init; } = 2;

    /// <summary>Where the PNG of the training curves goes.</summary>
    public string PlotPath { get; init; } = Path.Combine("artifacts", "demo", "training-curves.png");

    /// <summary>How many seeds the robustness table runs, this one first.</summary>
    public int Seeds { get; init; } = 5;

    /// <summary>Held-out evaluations per run (points on each curve).</summary>
    public int Evaluations { get; init; } = 100;

    /// <summary>Progress lines per run.</summary>
    public int ProgressLines { get; init; } = 10;

    /// <summary>The small run for CI: a smaller teacher corpus and held-out set, 300 steps, two seeds.</summary>
    public static DemoSettings Quick { get; } = new() { TeacherSequences = 1000, TeacherSteps = 300, HeldOutSequences = 200, Steps = 300, Evaluations = 30, ProgressLines = 3, Seeds = 2 };
}

