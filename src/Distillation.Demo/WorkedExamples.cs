using System;
using System.Collections.Generic;
using System.Globalization;
using System.Linq;
using System.Text;

namespace Distillation.Demo;

/// <summary>
/// Two worked examples (<c>--examples</c>): one teacher row against several student rows (V = 3, T = 1), every
/// divergence computed per row with <see cref="Reduction.None"/>, and the forward-KL gradient checked against (q − p)/T.
/// </summary>
internal static class WorkedExamples
{
    private const int Vocabulary = 3;
    private const float Temperature = 1f;

    /// <summary>The table's columns, in order.</summary>
    private static readonly (string Name, Divergence Divergence)[] Columns =
    [
        ("forward KL", Divergence.ForwardKL),
        ("reverse KL", Divergence.ReverseKL),
        ("soft CE", Divergence.SoftCrossEntropy),
        ("JSD(0.5)", Divergence.GeneralizedJsd(0.5)),
        ("skew KL(0.1)", Divergence.SkewKL(0.1)),
        ("TVD", Divergence.TotalVariation),
    ];

    public static void Run()
    {
        Console.WriteLine(Invariant($"Distillation demo: V = {Vocabulary}, T = {Temperature}, no T^2 scaling, one row per teacher/student pair."));
        Console.WriteLine("Teacher from probabilities; student logits = log(probabilities).");

        RunExample(
            "Example 1",
            teacher: [0.8f, 0.15f, 0.05f],
            students: [[0.6f, 0.3f, 0.1f], [0.6f, 0.1f, 0.3f]]);

        RunExample(
            "Example 2",
            teacher: [0.70f, 0.20f, 0.10f],
            students: [[0.65f, 0.22f, 0.13f], [0.70f, 0.10f, 0.20f], [0.50f, 0.30f, 0.20f]]);
    }

    /// <summary>Computes every column for each student against the teacher and prints the tables and a summary.</summary>
    private static void RunExample(string title, float[] teacher, float[][] students)
    {
        int rows = students.Length;

        // The teacher row is repeated once per student, so one call computes every pair (one row each).
        var teacherRows = new float[rows * Vocabulary];
        var studentLogits = new float[rows * Vocabulary];
        for (int r = 0; r < rows; r++)
        {
            teacher.CopyTo(teacherRows, r * Vocabulary);
            for (int j = 0; j < Vocabulary; j++)
            {
                studentLogits[(r * Vocabulary) + j] = MathF.Log(students[r][j]);
            }
        }

        TeacherDistribution p = TeacherDistribution.FromProbabilities(teacherRows, Vocabulary);
        StudentDistribution q = StudentDistribution.FromLogits(studentLogits, Vocabulary);

        var values = new float[Columns.Length][];
        float[] forwardGradient = [];
        for (int c = 0; c < Columns.Length; c++)
        {
            var loss = new DistillationLoss(Columns[c].Divergence, Temperature);
            var gradient = new float[rows * Vocabulary];
            values[c] = new float[rows];

            // Reduction.None: one value per row, and each gradient row is that row's own gradient.
            loss.Compute(p, q, gradient, Reduction.None, rowLosses: values[c]);
            if (Columns[c].Divergence == Divergence.ForwardKL)
            {
                forwardGradient = gradient;
            }
        }

        Console.WriteLine();
        Console.WriteLine(Invariant($"{title}: teacher p = {Vector(teacher)}"));
        Console.WriteLine();

        const int nameWidth = 28;
        var header = new StringBuilder("student q".PadRight(nameWidth));
        foreach ((string name, _) in Columns)
        {
            header.Append(name.PadLeft(14));
        }

        Console.WriteLine(header);
        Console.WriteLine(new string('-', header.Length));
        for (int r = 0; r < rows; r++)
        {
            var line = new StringBuilder(Invariant($"{r + 1}: {Vector(students[r])}").PadRight(nameWidth));
            for (int c = 0; c < Columns.Length; c++)
            {
                line.Append(Invariant($"{values[c][r],14:F4}"));
            }

            Console.WriteLine(line);
        }

        Console.WriteLine();
        Console.WriteLine(Summary(teacher, students, values));

        Console.WriteLine();
        Console.WriteLine("Student gradient of forward KL, dL/ds (expected (q - p)/T):");
        double worst = 0;
        for (int r = 0; r < rows; r++)
        {
            var row = new float[Vocabulary];
            for (int j = 0; j < Vocabulary; j++)
            {
                row[j] = forwardGradient[(r * Vocabulary) + j];
                double expected = (students[r][j] - teacher[j]) / Temperature;
                worst = Math.Max(worst, Math.Abs(row[j] - expected));
            }

            Console.WriteLine(Invariant($"{r + 1}: {Vector(students[r])}").PadRight(nameWidth) + "dL/ds = " + Vector(row, "+0.0000;-0.0000; 0.0000"));
        }

        Console.WriteLine(Invariant($"Largest difference from (q - p)/T: {worst:0.0E+0}."));
    }

    /// <summary>One sentence on what the table shows, built from the computed values (never written by hand).</summary>
    private static string Summary(float[] teacher, float[][] students, float[][] values)
    {
        int rows = students.Length;
        int forward = Array.FindIndex(Columns, c => c.Divergence == Divergence.ForwardKL);
        int[] order = Ranking(values[forward]);
        List<string> disagreeing = [];
        for (int c = 0; c < Columns.Length; c++)
        {
            if (!Ranking(values[c]).SequenceEqual(order))
            {
                disagreeing.Add(Columns[c].Name);
            }
        }

        string ranking = string.Join(" < ", order.Select(r => (r + 1).ToString(CultureInfo.InvariantCulture)));
        string agreement = disagreeing.Count == 0
            ? Invariant($"All {Columns.Length} columns rank the students in the same order, {ranking} (closest first)")
            : Invariant($"Forward KL ranks the students {ranking} (closest first), but {string.Join(", ", disagreeing)} rank them differently");

        if (rows == 2)
        {
            double lo = values[forward][order[0]], hi = values[forward][order[1]];
            agreement += lo == hi
                ? Invariant($", and the two students are equally far in forward KL ({lo:F4})")
                : Invariant($", so the two students are not equally far: forward KL {lo:F4} vs {hi:F4} ({hi / lo:F2}x)");
        }
        else
        {
            agreement += ": forward KL " + string.Join(" < ", order.Select(r => values[forward][r].ToString("F4", CultureInfo.InvariantCulture)));
        }

        // Do the students all give the teacher's top token the same probability? Then say so: the difference
        // between them then lies entirely in how they spread the rest of the mass.
        int top = Array.IndexOf(teacher, teacher.Max());
        if (students.All(s => s[top] == students[0][top]))
        {
            string who = rows == 2 ? "both" : "all";
            agreement += Invariant($", although {who} give {students[0][top]:F2} to the teacher's top token");
        }

        return agreement + ".";
    }

    /// <summary>Row indices sorted by value, smallest first (ties keep row order).</summary>
    private static int[] Ranking(float[] column) =>
        Enumerable.Range(0, column.Length).OrderBy(r => column[r]).ToArray();

    private static string Vector(float[] x, string format = "0.00") =>
        "[" + string.Join(", ", x.Select(v => v.ToString(format, CultureInfo.InvariantCulture))) + "]";

    private static string Invariant(FormattableString text) => FormattableString.Invariant(text);
}
