using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Globalization;
using System.Linq;
using System.Text;
using Distillation.Demo.Plotting;

namespace Distillation.Demo;

/// <summary>
/// Distils for real on data the program makes itself: a teacher that sees a hidden regime z, and small students that
/// see only the visible tokens, trained with four of the library's losses. Prints the training progress and a table
/// of held-out metrics, repeats the run over more seeds, and writes a PNG of the training curves.
/// <c>--examples</c> prints the worked examples (single rows, every divergence) instead.
/// </summary>
internal static class Program
{
    private const string Usage = """
        Usage: dotnet run --project src/Distillation.Demo -c Release [-- options]

          --seed N         seed of the source, the data and the training (default 1)
          --steps N        training steps of every student (default 1000; 300 with --quick)
          --train N        training sequences of the students (default 64)
          --seeds N        seeds in the robustness table, the first included (default 5; 1 with --quick)
          --temperature T  distillation temperature of token KD and the objective (default 2)
          --quick          a small, fast run (about 15 s), for CI
          --out PATH       where to write the PNG (default artifacts/demo/training-curves.png)
          --examples       print the worked examples (losses and gradients of single rows) instead
          --help           this text
        """;

    private static readonly Rgb[] StudentColors = [Rgb.Hex(0xD62728), Rgb.Hex(0x1F77B4), Rgb.Hex(0x2CA02C), Rgb.Hex(0xFF7F0E)];

    public static int Main(string[] args)
    {
        DemoSettings settings = new();
        int? steps = null, seed = null, train = null, seeds = null;
        float? temperature = null;
        string? output = null;
        for (int i = 0; i < args.Length; i++)
        {
            string? value = i + 1 < args.Length ? args[i + 1] : null;
            switch (args[i])
            {
                case "--examples":
                    WorkedExamples.Run();
                    return 0;
                case "--help" or "-h":
                    Console.WriteLine(Usage);
                    return 0;
                case "--quick":
                    settings = DemoSettings.Quick;
                    continue;
                case "--seed" when int.TryParse(value, CultureInfo.InvariantCulture, out int n) && n >= 0:
                    seed = n;
                    break;
                case "--steps" when int.TryParse(value, CultureInfo.InvariantCulture, out int n) && n > 0:
                    steps = n;
                    break;
                case "--train" when int.TryParse(value, CultureInfo.InvariantCulture, out int n) && n > 0:
                    train = n;
                    break;
                case "--seeds" when int.TryParse(value, CultureInfo.InvariantCulture, out int n) && n > 0:
                    seeds = n;
                    break;
                case "--temperature" when float.TryParse(value, CultureInfo.InvariantCulture, out float t) && t >= 1e-6f && t <= 1e6f:
                    temperature = t;
                    break;
                case "--out" when value is not null:
                    output = value;
                    break;
                default:
                    Console.Error.WriteLine($"Unknown option, or a missing or invalid value: '{args[i]}'.");
                    Console.Error.WriteLine(Usage);
                    return 2;
            }

            i++; // the option's value
        }

        settings = settings with
        {
            Seed = seed ?? settings.Seed,
            Steps = steps ?? settings.Steps,
            TrainSequences = train ?? settings.TrainSequences,
            Seeds = seeds ?? settings.Seeds,
            Temperature = temperature ?? settings.Temperature,
            PlotPath = output ?? settings.PlotPath,
        };
        return Run(settings);
    }

    /// <summary>Runs the experiment; returns 1 if a distilled student failed to end closer to the teacher than the hard-label one.</summary>
    private static int Run(DemoSettings s)
    {
        var clock = Stopwatch.StartNew();
        Console.WriteLine("Distillation demo: a teacher that sees a hidden regime z, students that see only the visible tokens.");
        ExperimentResult result = DistillationExperiment.Run(s, verbose: true);
        PrintTable(result);

        if (s.Seeds > 1)
        {
            PrintRobustness(s, result);
        }

        WritePlot(s, result);
        Console.WriteLine();
        Console.WriteLine(Invariant($"Training curves: {s.PlotPath}"));
        Console.WriteLine(Invariant($"Done in {clock.Elapsed.TotalSeconds:F1} s."));
        return CheckDistilledBeatHardLabels(result) ? 0 : 1;
    }

    /// <summary>The demo's claim, checked: every distilled student ends with a lower held-out KL to the teacher than the hard-label student.</summary>
    private static bool CheckDistilledBeatHardLabels(ExperimentResult r)
    {
        TrainingRun hard = r.Students[0];
        foreach (TrainingRun run in r.Students.Skip(1))
        {
            if (!(run.KL < hard.KL))
            {
                Console.Error.WriteLine(Invariant($"Check failed: {run.Name} ends at KL {run.KL:F4}, not below the hard-label student's {hard.KL:F4}."));
                return false;
            }
        }

        return true;
    }

    private static void PrintTable(ExperimentResult r)
    {
        Console.WriteLine();
        Console.WriteLine(Invariant($"Held-out results ({r.HeldOutTokens} tokens, nats per token; CE against the source's true next tokens):"));
        Console.WriteLine();
        const int name = 38;
        Console.WriteLine(Invariant($"{"model",-name}{"CE",8}{"perplexity",12}{"KL(teacher||model)",20}{"best KL (step)",18}"));
        Console.WriteLine(new string('-', name + 8 + 12 + 20 + 18));
        Console.WriteLine(Invariant($"{"source (the truth, sees z)",-name}{r.SourceCrossEntropy,8:F4}{Math.Exp(r.SourceCrossEntropy),12:F3}"));
        Console.WriteLine(Invariant($"{"teacher (sees z)",-name}{r.Teacher.CrossEntropy,8:F4}{Math.Exp(r.Teacher.CrossEntropy),12:F3}{0.0,20:F4}"));
        for (int i = 0; i < r.Students.Count; i++)
        {
            TrainingRun run = r.Students[i];
            CurvePoint best = run.Best;
            string label = Invariant($"{i + 1}. {run.Name}");
            string bestText = Invariant($"{best.KL:F4} ({best.Step})");
            Console.WriteLine(Invariant($"{label,-name}{run.CrossEntropy,8:F4}{Math.Exp(run.CrossEntropy),12:F3}{run.KL,20:F4}{bestText,18}"));
        }

        Console.WriteLine();
        Console.WriteLine(Invariant($"KL(source||teacher) = {r.Teacher.KL:F4}. Best KL: the lowest held-out KL along the curve (an early-stopping oracle)."));
    }

    /// <summary>
    /// The same run over more seeds, quietly: every student's final held-out KL, the hard-label student's best KL
    /// along its curve, and how many distilled students beat even that.
    /// </summary>
    private static void PrintRobustness(DemoSettings s, ExperimentResult first)
    {
        Console.WriteLine();
        Console.WriteLine(Invariant($"Robustness: the whole run (new source, data, teacher and students) for seeds {s.Seed} to {s.Seed + s.Seeds - 1}."));
        Console.WriteLine("Final held-out KL(teacher||student); 'hard, best' is the hard-label student's lowest KL along its curve:");
        Console.WriteLine();
        var all = new List<ExperimentResult> { first };
        for (int k = 1; k < s.Seeds; k++)
        {
            all.Add(DistillationExperiment.Run(s with { Seed = s.Seed + k }, verbose: false));
        }

        IReadOnlyList<TrainingRun> students = first.Students;
        const int column = 13;
        var header = new StringBuilder(Invariant($"{"seed",6}{students[0].ShortName,column}{"hard, best",column}"));
        for (int i = 1; i < students.Count; i++)
        {
            header.Append(students[i].ShortName.PadLeft(column));
        }

        header.Append("   distilled < hard, best");
        Console.WriteLine(header);
        Console.WriteLine(new string('-', header.Length));

        int wins = 0, comparisons = 0;
        for (int k = 0; k < all.Count; k++)
        {
            IReadOnlyList<TrainingRun> runs = all[k].Students;
            double bestHard = runs[0].Best.KL;
            var line = new StringBuilder(Invariant($"{s.Seed + k,6}{runs[0].KL,column:F4}{bestHard,column:F4}"));
            for (int i = 1; i < runs.Count; i++)
            {
                line.Append(Invariant($"{runs[i].KL,column:F4}"));
            }

            int beat = runs.Skip(1).Count(run => run.KL < bestHard);
            wins += beat;
            comparisons += runs.Count - 1;
            Console.WriteLine(line.Append(Invariant($"{beat}/{runs.Count - 1}").PadLeft(25)));
        }

        var mean = new StringBuilder(Invariant($"{"mean",6}{all.Average(r => r.Students[0].KL),column:F4}{all.Average(r => r.Students[0].Best.KL),column:F4}"));
        for (int i = 1; i < students.Count; i++)
        {
            mean.Append(Invariant($"{all.Average(r => r.Students[i].KL),column:F4}"));
        }

        Console.WriteLine(mean.Append(Invariant($"{wins}/{comparisons}").PadLeft(25)));
    }

    private static void WritePlot(DemoSettings s, ExperimentResult r)
    {
        var kl = new List<Series>();
        var ce = new List<Series>();
        for (int i = 0; i < r.Students.Count; i++)
        {
            TrainingRun run = r.Students[i];
            kl.Add(new Series(run.Name, StudentColors[i % StudentColors.Length], run.Curve.Select(p => ((double)p.Step, p.KL)).ToList()));
            ce.Add(new Series(run.Name, StudentColors[i % StudentColors.Length], run.Curve.Select(p => ((double)p.Step, p.CrossEntropy)).ToList()));
        }

        ce.Add(new Series("teacher (sees z)", Rgb.Hex(0x555555), [(0, r.Teacher.CrossEntropy), (s.Steps, r.Teacher.CrossEntropy)], Dashed: true));
        ce.Add(new Series("source (truth)", Rgb.Black, [(0, r.SourceCrossEntropy), (s.Steps, r.SourceCrossEntropy)], Dashed: true));
        LineChart.Write(
            s.PlotPath,
            Invariant($"Distilling a teacher that sees z into students that do not (seed {s.Seed})"),
            [
                new Panel("Held-out KL(teacher || student)", "training step", "nats per token", kl, YFromZero: true),
                new Panel("Held-out cross-entropy on true tokens", "training step", "nats per token", ce),
            ]);
    }

    private static string Invariant(FormattableString text) => FormattableString.Invariant(text);
}
