using System.IO;
using System.Text.Json;

namespace Distillation.Tests;

/// <summary>
/// The README's code blocks, compiled here and run; a test checks that the README shows exactly this code
/// (between the <c>quickstart</c> and <c>training-step</c> markers, ignoring indentation and using lines).
/// </summary>
public class ReadmeSamples
{
    private const int V = 64;

    private readonly List<float> _gradientNorms = [];
    private float[] _gradient = [];

    [Fact]
    public void QuickStart_Runs()
    {
        var output = new StringWriter();
        TextWriter original = Console.Out;
        Console.SetOut(output);
        try
        {
            QuickStart();
        }
        finally
        {
            Console.SetOut(original);
        }

        output.ToString().Should().Contain("over 5 tokens").And.Contain("over all 6 rows");
    }

    [Fact]
    public void TrainingStep_Runs()
    {
        var output = new StringWriter();
        TextWriter original = Console.Out;
        Console.SetOut(output);
        try
        {
            TrainingLoop(steps: 201);
        }
        finally
        {
            Console.SetOut(original);
        }

        _gradientNorms.Should().HaveCount(201).And.OnlyContain(n => n > 0 && float.IsFinite(n));
        output.ToString().Should().Contain("step 200: loss");
    }

    [Theory]
    [InlineData("quickstart", nameof(QuickStart))]
    [InlineData("training-step", nameof(TrainingLoop))]
    public void Readme_ShowsTheCompiledCode(string marker, string method)
    {
        string readme = File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "Data", "README.md"));
        int begin = readme.IndexOf($"<!-- {marker}:begin -->", StringComparison.Ordinal);
        int end = readme.IndexOf($"<!-- {marker}:end -->", StringComparison.Ordinal);
        begin.Should().BeGreaterThan(0, $"the README has the {marker} markers");
        string block = readme[begin..end];
        block = block[(block.IndexOf("```csharp", StringComparison.Ordinal) + 9)..block.LastIndexOf("```", StringComparison.Ordinal)];

        string source = File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "Data", "ReadmeSamples.cs.txt"));
        int from = source.IndexOf($"// {marker}:begin", StringComparison.Ordinal), to = source.IndexOf($"// {marker}:end", StringComparison.Ordinal);
        string compiled = source[(source.IndexOf('\n', from) + 1)..to];
        Normalise(block).Should().Equal(Normalise(compiled), $"the README's {marker} block is the code compiled in {method}");
    }

    private static string[] Normalise(string code) =>
        code.Split('\n').Select(l => l.Trim()).Where(l => l.Length > 0 && !l.StartsWith("using ", StringComparison.Ordinal)).ToArray();

    private static void QuickStart()
    {
        // quickstart:begin
        const int V = 5;                                   // vocabulary size
        int[] lengths = [3, 2];                            // two sequences, padded to 3 rows each
        var layout = SequenceLayout.Padded(lengths, maxLength: 3);   // 6 rows; row 5 is padding

        // Rows × V logits, row-major (row = b · 3 + position), as the two models produced them.
        float[] teacherLogits = new float[layout.RowCount * V];
        float[] studentLogits = new float[layout.RowCount * V];
        for (int i = 0; i < teacherLogits.Length; i++)
        {
            teacherLogits[i] = MathF.Sin(i);
            studentLogits[i] = MathF.Cos(i);
        }

        var teacher = TeacherDistribution.FromLogits(teacherLogits, V, layout);
        var student = StudentDistribution.FromLogits(studentLogits, V, layout);

        var loss = new DistillationLoss(Divergence.ForwardKL, temperature: 2f, TemperatureScaling.Squared);
        float[] gradient = new float[studentLogits.Length];
        LossResult result = loss.Compute(teacher, student, gradient, Reduction.MeanOverTokens);
        Console.WriteLine($"forward KL × T² = {result.Value:F4} over {result.TokenCount} tokens");
        // gradient now holds d(result.Value)/d(studentLogits); the padding row is zero.

        // One line, over plain spans (every row real, no T² factor):
        float kl = Losses.ForwardKL(teacherLogits, studentLogits, gradient, V, temperature: 2f);
        Console.WriteLine($"forward KL = {kl:F4} over all {layout.RowCount} rows");
        // quickstart:end
    }

    private void TrainingLoop(long steps)
    {
        // training-step:begin
        var objective = new DistillationObjective(new DistillationObjectiveOptions
        {
            Divergence = Divergence.ForwardKL,
            Temperature = 2f,                                          // the KD term is × T² by default
            Lambda = LambdaSchedule.WarmUp(100, LambdaSchedule.Cosine(from: 0.9, to: 0.3, steps: 2_000)),
            Form = ObjectiveForm.Interpolated,                         // λ·KD + (1 − λ)·LM
        });
        string recorded = JsonSerializer.Serialize(objective.Options, DistillationObjectiveOptions.JsonOptions);

        for (long step = 0; step < steps; step++)
        {
            // Your models' forward passes: rows = sequences × positions, V columns; padded positions labelled −100.
            Batch batch = NextBatch(step);
            var layout = SequenceLayout.Padded(batch.Lengths, maxLength: batch.MaxLength);
            var teacher = TeacherDistribution.FromLogits(batch.TeacherLogits, V, layout);
            var student = StudentDistribution.FromLogits(batch.StudentLogits, V, layout);
            float[] gradient = GradientBuffer(batch.StudentLogits.Length);

            ObjectiveResult r = objective.Compute(teacher, student, new TokenLabels(batch.Labels), gradient, step,
                                                  Reduction.MeanOverTokens, computeMetrics: step % 100 == 0);
            Backward(gradient);                                        // dL/d(student logits) for the student's backward pass
            if (r.Metrics is { } m)
            {
                Console.WriteLine($"step {step}: loss {r.Total:F4} = {r.Lambda:F2}·{r.Distillation:F4} + {1 - r.Lambda:F2}·{r.LanguageModel:F4}, top-1 agreement {m.TopOneAgreement:P0}");
            }
        }
        // training-step:end
        JsonSerializer.Deserialize<DistillationObjectiveOptions>(recorded, DistillationObjectiveOptions.JsonOptions).Should().Be(objective.Options);
    }

    private static Batch NextBatch(long step)
    {
        var random = new Random((int)step);
        int[] lengths = [5, 3, 8];
        const int maxLength = 8;
        int rows = lengths.Length * maxLength;
        float[] teacher = TestSupport.RandomLogits(random, rows * V);
        float[] student = TestSupport.RandomLogits(random, rows * V);
        int[] labels = Enumerable.Range(0, rows).Select(r => r % maxLength < lengths[r / maxLength] ? random.Next(V) : -100).ToArray();
        return new Batch(teacher, student, labels, lengths, maxLength);
    }

    private float[] GradientBuffer(int length) => _gradient.Length == length ? _gradient : _gradient = new float[length];

    private void Backward(float[] gradient) => _gradientNorms.Add(MathF.Sqrt(gradient.Sum(g => g * g)));

    private sealed record Batch(float[] TeacherLogits, float[] StudentLogits, int[] Labels, int[] Lengths, int MaxLength);
}
