using System;
using System.Linq;

namespace Distillation.Fuzz;

/// <summary>A decoded teacher/student pair: vocabulary, rows, layouts, kinds and values.</summary>
internal sealed class Batch
{
    public int Vocab { get; private init; }

    public int Rows { get; private init; }

    public TeacherDistribution Teacher { get; private init; }

    public StudentDistribution Student { get; private init; }

    /// <summary>The teacher's backing array (an output buffer may be made to overlap it).</summary>
    public float[] TeacherValues { get; private init; } = [];

    public float[] StudentValues { get; private init; } = [];

    public override string ToString() =>
        $"V={Vocab} rows={Rows} teacher {Teacher.Kind} [{Harness.Show(TeacherValues)}] student {Student.Kind} [{Harness.Show(StudentValues)}] layout {(Student.Layout is { } l ? $"{l.SequenceCount} sequences, mask {(l.Mask.IsEmpty ? "none" : string.Join("", l.Mask.ToArray().Select(m => m ? '1' : '0')))}" : "none")}";

    public static Batch Decode(Input input, InputGuard inputs, bool withTeacher, bool requireLayout = false)
    {
        int vocab = input.Pick(Values.Vocabularies);
        SequenceLayout? layout = DecodeLayout(input, inputs, requireLayout);
        int rows = layout?.RowCount ?? input.Below(7);
        int v = Math.Max(vocab, 1);
        if ((long)rows * v > 100_000)
        {
            rows = 100_000 / v; // keep one execution short; a layout of more rows then fails its row check, as documented
        }

        int length = (rows * v) + (input.Rarely() ? (input.Flag() ? 1 : -1) : 0);
        length = Math.Max(length, 0);
        DistributionKind teacherKind = (DistributionKind)(1 + input.Below(3));
        DistributionKind studentKind = (DistributionKind)(1 + input.Below(2));
        float[] teacher = withTeacher ? inputs.Add(TeacherElements(input, teacherKind, length, v)) : [];
        float[] student = inputs.Add(Harness.Elements(input, length + (input.Rarely() ? Math.Min(v, 7) : 0)));

        // The student usually shares the teacher's layout; sometimes it has none, or a different one.
        int other = input.Below(8);
        SequenceLayout? studentLayout = other switch
        {
            0 when withTeacher => null,
            1 when withTeacher => DecodeLayout(input, inputs, requireLayout: true),
            _ => layout,
        };
        SequenceLayout? teacherLayout = withTeacher && other == 2 ? null : layout;

        StudentDistribution studentDistribution = input.Rarely(64) ? default : studentKind == DistributionKind.LogProbabilities
            ? StudentDistribution.FromLogProbabilities(student, vocab, studentLayout)
            : StudentDistribution.FromLogits(student, vocab, studentLayout);
        return new Batch
        {
            Vocab = vocab,
            Rows = studentDistribution.VocabularySize > 0 ? studentDistribution.RowCount : rows,
            TeacherValues = teacher,
            StudentValues = student,
            Teacher = withTeacher && !input.Rarely(32) ? teacherKind switch
            {
                DistributionKind.Probabilities => TeacherDistribution.FromProbabilities(teacher, vocab, teacherLayout),
                DistributionKind.LogProbabilities => TeacherDistribution.FromLogProbabilities(teacher, vocab, teacherLayout),
                _ => TeacherDistribution.FromLogits(teacher, vocab, teacherLayout),
            } : default,
            Student = studentDistribution,
        };
    }

    private static float[] TeacherElements(Input input, DistributionKind kind, int length, int vocab)
    {
        float[] x = Harness.Elements(input, length);
        if (kind != DistributionKind.Probabilities || input.Rarely(8))
        {
            return x; // raw values: as probabilities these are mostly invalid rows
        }

        // Valid probabilities: the softmax of each row of decoded values (rows of −∞ only stay invalid), in double.
        for (int r = 0; r + vocab <= length; r += vocab)
        {
            double max = double.NegativeInfinity, sum = 0;
            for (int j = r; j < r + vocab; j++)
            {
                max = float.IsFinite(x[j]) ? Math.Max(max, x[j]) : max;
            }

            for (int j = r; j < r + vocab; j++)
            {
                sum += float.IsFinite(x[j]) ? Math.Exp(x[j] - max) : 0;
            }

            for (int j = r; j < r + vocab; j++)
            {
                x[j] = float.IsFinite(x[j]) && sum > 0 ? (float)(Math.Exp(x[j] - max) / sum) : 0f;
            }
        }

        return x;
    }

    private static SequenceLayout? DecodeLayout(Input input, InputGuard inputs, bool requireLayout)
    {
        int kind = input.Below(6);
        if (kind == 0 && !requireLayout)
        {
            return null;
        }

        int Small() => input.Rarely() ? -input.Below(3) : input.Below(5);
        bool[] Mask(int n)
        {
            var m = new bool[Math.Max(n + (input.Rarely() ? 1 : 0), 0)];
            for (int i = 0; i < m.Length; i++)
            {
                m[i] = input.Byte() % 4 != 0;
            }

            return inputs.Add(m);
        }

        int[] Lengths(int n, int max)
        {
            var l = new int[n];
            for (int i = 0; i < n; i++)
            {
                l[i] = input.Rarely() ? max + 1 - (2 * input.Below(2) * (max + 1)) : input.Below(max + 1);
            }

            return inputs.Add(l);
        }

        switch (kind)
        {
            case 1:
            {
                int batch = Small(), length = Small();
                return SequenceLayout.Rectangular(batch, length, input.Flag() ? Mask(Math.Max(batch, 0) * Math.Max(length, 0)) : default);
            }

            case 2:
            {
                int batch = Math.Abs(Small()), max = Small();
                return SequenceLayout.Padded(Lengths(batch, Math.Max(max, 0)), max);
            }

            case 3:
                return SequenceLayout.FromLengths(Lengths(Math.Abs(Small()), 3));
            case 4:
            {
                int n = 1 + Math.Abs(Small());
                var offsets = new int[n];
                for (int i = 1; i < n; i++)
                {
                    offsets[i] = offsets[i - 1] + (input.Rarely() ? -1 : input.Below(3));
                }

                if (input.Rarely())
                {
                    offsets[0] = 1;
                }

                inputs.Add(offsets);
                return SequenceLayout.FromOffsets(offsets, input.Flag() ? Mask(offsets[^1]) : default);
            }

            default:
                return SequenceLayout.Independent(Small());
        }
    }
}

/// <summary>The output buffers of a call: a gradient and row losses, of the right length or not, overlapping an input or not.</summary>
internal sealed class Buffers
{
    public float[] Gradient { get; private init; } = [];

    public float[] RowLosses { get; private init; } = [];

    public static Buffers Decode(Input input, Batch b, bool wantsRowLosses)
    {
        int expected = b.StudentValues.Length;
        float[] gradient;
        switch (input.Rarely(8) ? input.Below(4) : 0)
        {
            case 1:
                gradient = Harness.Filled(expected + (input.Flag() ? 1 : -1));
                break;
            case 2 when b.TeacherValues.Length > 0:
            case 3 when b.StudentValues.Length > 0:
                // An output buffer that is an input buffer: documented as a structural error before anything is written.
                gradient = input.Flag() ? b.TeacherValues : b.StudentValues;
                break;
            default:
                gradient = Harness.Filled(expected);
                break;
        }

        float[] rowLosses = !wantsRowLosses ? [] : input.Rarely(8) ? (input.Flag() ? gradient : Harness.Filled(b.Rows + 1)) : Harness.Filled(b.Rows);
        return new Buffers { Gradient = gradient, RowLosses = rowLosses };
    }
}
