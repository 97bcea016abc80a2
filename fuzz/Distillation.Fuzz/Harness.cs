using System;
using System.Collections.Generic;
using System.Linq;
using System.Text.Json;

namespace Distillation.Fuzz;

/// <summary>A broken promise of the public API: the fuzzer reports it as a crash.</summary>
internal sealed class ContractViolation(string message) : Exception(message);

/// <summary>
/// Decodes the fuzzer's bytes into one call of the public API — shapes, values (NaN and ±∞ included), temperatures,
/// layouts and masks, labels, reductions, buffers (wrong lengths, overlaps), divergences and objective options — and
/// checks the contract: the call either throws a documented argument exception (the ArgumentException family, with a
/// parameter name) or returns a result with no NaN and a finite gradient (every entry written); inputs are never
/// modified. Anything else — another exception type, NaN, an unwritten or infinite gradient, a changed input, a value
/// outside its documented range — throws <see cref="ContractViolation"/> (or escapes), which the fuzzer records as a crash.
/// </summary>
internal static class Harness
{
    public const int Operations = 9;

    public static void Execute(byte[] data)
    {
        var input = new Input(data);
        var inputs = new InputGuard();
        int op = input.Below(Operations);
        try
        {
            switch (op)
            {
                case 0:
                case 1:
                    DistillationLossCall(input, inputs, evaluateOnly: op == 1);
                    break;
                case 2:
                    OneLineCall(input, inputs);
                    break;
                case 3:
                    LanguageModelCall(input, inputs);
                    break;
                case 4:
                    ObjectiveCall(input, inputs);
                    break;
                case 5:
                    SequenceLossCall(input, inputs);
                    break;
                case 6:
                    FromLogProbabilitiesCall(input, inputs);
                    break;
                case 7:
                    StudentLogProbabilitiesCall(input, inputs);
                    break;
                default:
                    // JSON never starts with 'D'; shard statistics bytes start with "DSTS".
                    if (data.Length > 1 && data[1] == (byte)'D')
                    {
                        ShardStatisticsBytes(data.AsSpan(1));
                    }
                    else
                    {
                        OptionsJson(input, data);
                    }

                    break;
            }
        }
        catch (ArgumentException e)
        {
            // Documented: every argument error names its parameter (ArgumentNullException and ArgumentOutOfRangeException included).
            if (string.IsNullOrEmpty(e.ParamName) || string.IsNullOrEmpty(e.Message))
            {
                throw new ContractViolation($"operation {op}: {e.GetType().Name} without a parameter name: {e.Message}");
            }
        }
        finally
        {
            inputs.Verify(op);
        }
    }

    // ----------------------------------------------------------------------------------------------------------------
    // Operations
    // ----------------------------------------------------------------------------------------------------------------

    private static void DistillationLossCall(Input input, InputGuard inputs, bool evaluateOnly)
    {
        Divergence divergence = DecodeDivergence(input);
        float temperature = input.Pick(Values.Temperatures);
        var scaling = (TemperatureScaling)(input.Rarely() ? input.Byte() : input.Below(2));
        int threads = input.Rarely() ? 0 : 1 + input.Below(4);
        Batch b = Batch.Decode(input, inputs, withTeacher: true);
        Reduction reduction = DecodeReduction(input);
        TokenLabels labels = input.Flag() ? DecodeLabels(input, inputs, b.Rows, b.Vocab) : default;
        Buffers buffers = Buffers.Decode(input, b, wantsRowLosses: reduction.Kind == ReductionKind.None || input.Flag());
        float[]? weights = input.Rarely(4) ? inputs.Add(DecodeWeights(input, b.Rows)) : null;

        var loss = new DistillationLoss(divergence, temperature, scaling) { MaxDegreeOfParallelism = threads };
        LossResult r = evaluateOnly
            ? loss.Evaluate(b.Teacher, b.Student, reduction, labels, buffers.RowLosses, weights)
            : loss.Compute(b.Teacher, b.Student, buffers.Gradient, reduction, labels, buffers.RowLosses, weights);

        double scale = scaling == TemperatureScaling.Squared ? (double)temperature * temperature : 1;
        string call = $"DistillationLoss({divergence}, T={temperature}, {scaling}) {reduction} {b}";
        CheckResult(r, b.Student.RowCount, call);
        if (!evaluateOnly)
        {
            CheckGradient(buffers.Gradient, call);
        }

        Span<float> rows = buffers.RowLosses;
        for (int i = 0; i < rows.Length; i++)
        {
            float v = rows[i];
            Require(!float.IsNaN(v), $"{call}: row {i} is NaN");
            Require(!divergence.IsDivergence || v >= 0, $"{call}: row {i} is negative ({v})");
            bool bounded = divergence.Kind == DivergenceKind.TotalVariation
                || (divergence.Kind is DivergenceKind.GeneralizedJsd or DivergenceKind.SkewKL or DivergenceKind.SkewReverseKL && divergence.Parameter > 0 && divergence.Parameter < 1);
            Require(!bounded || float.IsFinite(v), $"{call}: row {i} is {v}, documented as always finite");
            if (divergence.Kind == DivergenceKind.TotalVariation)
            {
                Require(v <= scale * (1 + 1e-5), $"{call}: row {i} is {v}, above the TVD bound {scale}");
            }
        }

        Require(!divergence.IsDivergence || r.Value >= 0 || weights is not null, $"{call}: negative value {r.Value}");
    }

    private static void OneLineCall(Input input, InputGuard inputs)
    {
        int form = input.Below(6);
        double beta = input.Pick(Values.Parameters);
        float temperature = input.Pick(Values.Temperatures);
        int vocab = input.Pick(Values.Vocabularies);
        int rows = input.Below(7);
        rows = (long)rows * Math.Max(vocab, 1) > 100_000 ? 100_000 / Math.Max(vocab, 1) : rows; // keep one execution short
        int teacherLength = Math.Max(0, (rows * Math.Max(vocab, 1)) + (input.Rarely() ? 1 : 0));
        int studentLength = Math.Max(0, (rows * Math.Max(vocab, 1)) + (input.Rarely() ? -1 : 0));
        float[] teacher = inputs.Add(Elements(input, teacherLength));
        float[] student = inputs.Add(Elements(input, studentLength));
        float[] gradient = Filled(input.Rarely() ? studentLength + 1 : studentLength);
        Reduction reduction = DecodeReduction(input);
        float v = form switch
        {
            0 => Losses.ForwardKL(teacher, student, gradient, vocab, temperature, reduction),
            1 => Losses.ReverseKL(teacher, student, gradient, vocab, temperature, reduction),
            2 => Losses.SoftCrossEntropy(teacher, student, gradient, vocab, temperature, reduction),
            3 => Losses.TotalVariation(teacher, student, gradient, vocab, temperature, reduction),
            4 => Losses.GeneralizedJsd(beta, teacher, student, gradient, vocab, temperature, reduction),
            _ => Losses.Compute(DecodeDivergence(input), teacher, student, gradient, vocab, temperature, reduction),
        };
        string call = $"Losses form {form} (β={beta}) V={vocab} rows={rows} T={temperature} {reduction}: teacher [{Show(teacher)}] student [{Show(student)}]";
        Require(!float.IsNaN(v), $"{call}: NaN");
        Require(form == 2 || form == 5 || v >= 0, $"{call}: negative value {v}");
        CheckGradient(gradient, call);
    }

    private static void LanguageModelCall(Input input, InputGuard inputs)
    {
        float smoothing = input.Pick(Values.Smoothings);
        Batch b = Batch.Decode(input, inputs, withTeacher: false);
        Reduction reduction = DecodeReduction(input);
        TokenLabels labels = input.Rarely() ? default : DecodeLabels(input, inputs, b.Rows, b.Vocab);
        Buffers buffers = Buffers.Decode(input, b, wantsRowLosses: reduction.Kind == ReductionKind.None || input.Flag());
        var loss = new LanguageModelLoss(smoothing) { MaxDegreeOfParallelism = 1 + input.Below(3) };
        bool evaluate = input.Flag();
        LossResult r = evaluate ? loss.Evaluate(b.Student, labels, reduction, buffers.RowLosses) : loss.Compute(b.Student, labels, buffers.Gradient, reduction, buffers.RowLosses);
        string call = $"LanguageModelLoss(ε={smoothing}) {reduction} labels [{string.Join(", ", labels.Ids.ToArray().Take(8))}] {b}";
        CheckResult(r, b.Student.RowCount, call);
        Require(r.Value >= 0, $"{call}: negative value {r.Value}");
        if (!evaluate)
        {
            CheckGradient(buffers.Gradient, call);
        }

        foreach (float v in buffers.RowLosses)
        {
            Require(v >= 0, $"{call}: row value {v}");
        }
    }

    private static void ObjectiveCall(Input input, InputGuard inputs)
    {
        var options = new DistillationObjectiveOptions
        {
            Divergence = DecodeDivergence(input),
            Temperature = input.Pick(Values.Temperatures),
            TemperatureScaling = (TemperatureScaling)(input.Rarely() ? input.Byte() : input.Below(2)),
            Lambda = DecodeSchedule(input, depth: 0),
            Form = (ObjectiveForm)(input.Rarely() ? input.Byte() : input.Below(2)),
            LabelSmoothing = input.Pick(Values.Smoothings),
            TokenWeighting = (TokenWeighting)(input.Rarely() ? input.Byte() : input.Below(3)),
            MismatchWeight = input.Pick(Values.Lambdas),
        };
        var objective = new DistillationObjective(options) { MaxDegreeOfParallelism = 1 + input.Below(3) };
        Batch b = Batch.Decode(input, inputs, withTeacher: true);
        TokenLabels labels = DecodeLabels(input, inputs, b.Rows, b.Vocab);
        Buffers buffers = Buffers.Decode(input, b, wantsRowLosses: false);
        long step = input.Rarely() ? input.RawInt() : input.Below(300);
        Reduction reduction = DecodeReduction(input);
        ObjectiveResult r = objective.Compute(b.Teacher, b.Student, labels, buffers.Gradient, step, reduction, computeMetrics: input.Flag());
        string call = $"DistillationObjective({options.Divergence}, T={options.Temperature}, {options.TemperatureScaling}, {options.Lambda}, {options.Form}, ε={options.LabelSmoothing}, {options.TokenWeighting}) step {step} {reduction} {b}";
        Require(!double.IsNaN(r.Total) && !double.IsNaN(r.Distillation) && !double.IsNaN(r.LanguageModel), $"DistillationObjective: NaN in {r}");
        Require(r.Lambda is >= 0 and <= 1 && r.MeanTokenLambda is >= 0 and <= 1, $"DistillationObjective: λ outside [0, 1] in {r}");
        Require(r.TokenCount >= 0 && r.TokenCount <= b.Student.RowCount && r.SequenceCount <= r.TokenCount, $"DistillationObjective: counts {r}");
        Require(r.LanguageModel >= 0, $"DistillationObjective: negative hard-label part {r.LanguageModel}");
        if (r.Metrics is { } m)
        {
            Require(!double.IsNaN(m.TeacherEntropy) && !double.IsNaN(m.StudentEntropy) && m.TopOneAgreement is >= 0 and <= 1 && m.TeacherLabelAgreement is >= 0 and <= 1, $"DistillationObjective: metrics {m}");
        }

        CheckGradient(buffers.Gradient, call);
        string json = JsonSerializer.Serialize(options, DistillationObjectiveOptions.JsonOptions);
        DistillationObjectiveOptions back = JsonSerializer.Deserialize<DistillationObjectiveOptions>(json, DistillationObjectiveOptions.JsonOptions)!;
        Require(JsonSerializer.Serialize(back, DistillationObjectiveOptions.JsonOptions) == json, $"DistillationObjectiveOptions do not round-trip through JSON:\n{json}");
    }

    private static void SequenceLossCall(Input input, InputGuard inputs)
    {
        var estimator = (SequenceEstimator)(input.Rarely() ? input.Byte() : 1 + input.Below(4));
        float temperature = input.Pick(Values.Temperatures);
        Batch b = Batch.Decode(input, inputs, withTeacher: false, requireLayout: !input.Rarely());
        int candidates = b.Student.Layout?.SequenceCount ?? 0;
        TokenLabels tokens = DecodeLabels(input, inputs, b.Rows, b.Vocab);
        double[] a = inputs.Add(DecodeSequenceLogProbabilities(input, input.Rarely() ? candidates + 1 : candidates, estimator == SequenceEstimator.Exact));
        double[] proposal = estimator == SequenceEstimator.ImportanceSampled || input.Rarely() ? inputs.Add(DecodeSequenceLogProbabilities(input, candidates, false)) : [];
        Buffers buffers = Buffers.Decode(input, b, wantsRowLosses: false);
        SequenceLossResult r = new SequenceDistillationLoss(estimator, temperature).Compute(b.Student, tokens, a, buffers.Gradient, proposal);
        string call = $"SequenceDistillationLoss({estimator}, T={temperature}) a [{string.Join(", ", a)}] {b}";
        CheckSequenceResult(r, candidates, call);
        CheckGradient(buffers.Gradient, call);
    }

    private static void FromLogProbabilitiesCall(Input input, InputGuard inputs)
    {
        var estimator = (SequenceEstimator)(input.Rarely() ? input.Byte() : 1 + input.Below(4));
        int k = input.Below(9);
        double[] a = inputs.Add(DecodeSequenceLogProbabilities(input, k, estimator == SequenceEstimator.Exact));
        double[] b = inputs.Add(DecodeSequenceLogProbabilities(input, input.Rarely() ? k + 1 : k, false));
        double[] proposal = estimator == SequenceEstimator.ImportanceSampled || input.Rarely() ? inputs.Add(DecodeSequenceLogProbabilities(input, k, false)) : [];
        double[] gradient = input.Flag() ? [] : new double[input.Rarely() ? k + 1 : k];
        Array.Fill(gradient, double.NaN);
        SequenceLossResult r = SequenceLosses.FromLogProbabilities(estimator, a, b, gradient, proposal);
        CheckSequenceResult(r, k, "SequenceLosses.FromLogProbabilities");
        foreach (double g in gradient)
        {
            Require(g is <= 0 and >= -(1 + 1e-5), $"SequenceLosses.FromLogProbabilities: ∂L/∂b_k = {g}, not −w_k in [−1, 0]");
        }

        Require(estimator != SequenceEstimator.NBest || !(r.KL < 0), $"N-best KL is documented ≥ 0, got {r.KL}");
    }

    private static void StudentLogProbabilitiesCall(Input input, InputGuard inputs)
    {
        float temperature = input.Pick(Values.Temperatures);
        Batch b = Batch.Decode(input, inputs, withTeacher: false, requireLayout: !input.Rarely());
        TokenLabels tokens = DecodeLabels(input, inputs, b.Rows, b.Vocab);
        int sequences = b.Student.Layout?.SequenceCount ?? 0;
        double[] output = new double[input.Rarely() ? sequences + 1 : sequences];
        Array.Fill(output, double.NaN);
        SequenceLosses.StudentLogProbabilities(b.Student, tokens, temperature, output);
        foreach (double v in output)
        {
            Require(!double.IsNaN(v) && v <= 1e-6, $"SequenceLosses.StudentLogProbabilities: {v} is not a log-probability");
        }
    }

    /// <summary>
    /// Arbitrary bytes as serialised shard statistics: an InvalidDataException (or an argument exception naming the
    /// layout), or statistics that write back to exactly the same bytes.
    /// </summary>
    private static void ShardStatisticsBytes(ReadOnlySpan<byte> bytes)
    {
        ShardStatistics statistics;
        try
        {
            statistics = ShardStatistics.ReadFrom(bytes);
        }
        catch (System.IO.InvalidDataException e)
        {
            Require(!string.IsNullOrEmpty(e.Message), "an InvalidDataException without a message");
            return;
        }

        Require(statistics.SerializedLength == bytes.Length && statistics.ToBytes().AsSpan().SequenceEqual(bytes), "shard statistics do not write back to the bytes they were read from");
        Require(statistics.RowCount >= 0 && statistics.Shards.Count >= 1, $"shard statistics with {statistics.RowCount} rows and {statistics.Shards.Count} shards");
    }

    /// <summary>Arbitrary bytes as the JSON of the options: a JsonException or an argument exception, or options that round-trip.</summary>
    private static void OptionsJson(Input input, byte[] data)
    {
        _ = input;
        DistillationObjectiveOptions? options;
        try
        {
            options = JsonSerializer.Deserialize<DistillationObjectiveOptions>(data.AsSpan(Math.Min(1, data.Length)), DistillationObjectiveOptions.JsonOptions);
        }
        catch (JsonException)
        {
            return; // System.Text.Json's documented exception for malformed JSON (the divergence converter throws it too)
        }
        catch (NotSupportedException)
        {
            return; // System.Text.Json: a polymorphic LambdaSchedule without its "type" discriminator
        }

        if (options is null)
        {
            return;
        }

        string json = JsonSerializer.Serialize(options, DistillationObjectiveOptions.JsonOptions);
        DistillationObjectiveOptions back = JsonSerializer.Deserialize<DistillationObjectiveOptions>(json, DistillationObjectiveOptions.JsonOptions)!;
        Require(JsonSerializer.Serialize(back, DistillationObjectiveOptions.JsonOptions) == json, $"options do not round-trip:\n{json}");
        if (options.Divergence.Kind != DivergenceKind.Unspecified)
        {
            _ = new DistillationObjective(options);
        }
    }

    // ----------------------------------------------------------------------------------------------------------------
    // Decoders
    // ----------------------------------------------------------------------------------------------------------------

    internal static Divergence DecodeDivergence(Input input)
    {
        int kind = input.Below(9);
        return kind switch
        {
            0 => Divergence.ForwardKL,
            1 => Divergence.ReverseKL,
            2 => Divergence.SoftCrossEntropy,
            3 => Divergence.TotalVariation,
            4 => Divergence.GeneralizedJsd(input.Pick(Values.Parameters)),
            5 => Divergence.SkewKL(input.Pick(Values.Parameters)),
            6 => Divergence.SkewReverseKL(input.Pick(Values.Parameters)),
            7 => Divergence.GeneralizedJsd(0.5),
            _ => default,
        };
    }

    private static Reduction DecodeReduction(Input input) => input.Below(6) switch
    {
        0 => Reduction.MeanOverTokens,
        1 => Reduction.Sum,
        2 => Reduction.MeanOverSequences,
        3 => Reduction.SumDividedBy(input.Pick(Values.Divisors)),
        4 => Reduction.None,
        _ => default,
    };

    private static LambdaSchedule DecodeSchedule(Input input, int depth)
    {
        double Lambda() => input.Pick(Values.Lambdas);
        long Steps() => input.Rarely() ? input.RawInt() : input.Below(100);
        return input.Below(depth < 2 ? 6 : 5) switch
        {
            0 => LambdaSchedule.Constant(Lambda()),
            1 => LambdaSchedule.Linear(Lambda(), Lambda(), Steps()),
            2 => LambdaSchedule.Cosine(Lambda(), Lambda(), Steps()),
            3 => LambdaSchedule.ExponentialDecay(Lambda(), Lambda(), input.Pick(Values.Divisors)),
            4 => LambdaSchedule.Piecewise(Longs(input, input.Below(4)), Doubles(input, input.Below(5))),
            _ => LambdaSchedule.WarmUp(Steps(), DecodeSchedule(input, depth + 1), Lambda()),
        };
    }

    private static long[] Longs(Input input, int n)
    {
        var x = new long[n];
        long at = 0;
        for (int i = 0; i < n; i++)
        {
            at += input.Rarely() ? -input.Below(3) : 1 + input.Below(10);
            x[i] = at;
        }

        return x;
    }

    private static double[] Doubles(Input input, int n)
    {
        var x = new double[n];
        for (int i = 0; i < n; i++)
        {
            x[i] = input.Pick(Values.Lambdas);
        }

        return x;
    }

    internal static TokenLabels DecodeLabels(Input input, InputGuard inputs, int rows, int vocab)
    {
        int n = input.Rarely() ? rows + 1 : rows;
        var ids = new int[Math.Max(n, 0)];
        for (int i = 0; i < ids.Length; i++)
        {
            int b = input.Byte();
            ids[i] = b < 200 ? (vocab > 0 ? b % vocab : 0) : b < 220 ? TokenLabels.DefaultIgnoreIndex : Values.Labels[b % Values.Labels.Length];
        }

        int ignore = input.Rarely() ? input.Pick(Values.Labels) : TokenLabels.DefaultIgnoreIndex;
        return new TokenLabels(inputs.Add(ids), ignore);
    }

    private static float[] DecodeWeights(Input input, int rows)
    {
        var w = new float[input.Rarely() ? rows + 1 : rows];
        for (int i = 0; i < w.Length; i++)
        {
            w[i] = input.Pick(Values.Weights);
        }

        return w;
    }

    private static double[] DecodeSequenceLogProbabilities(Input input, int k, bool normalised)
    {
        var a = new double[Math.Max(k, 0)];
        for (int i = 0; i < a.Length; i++)
        {
            a[i] = normalised && !input.Rarely() ? Math.Log((1.0 + input.Byte()) / (256.0 * Math.Max(k, 1))) : input.Pick(Values.SequenceLogProbabilities);
        }

        return a;
    }

    internal static float[] Elements(Input input, int count)
    {
        var x = new float[count];
        for (int i = 0; i < count; i++)
        {
            x[i] = Values.Element(input);
        }

        return x;
    }

    internal static float[] Filled(int count)
    {
        var x = new float[Math.Max(count, 0)];
        Array.Fill(x, float.NaN); // every entry must be overwritten: a NaN left behind is an unwritten gradient
        return x;
    }

    // ----------------------------------------------------------------------------------------------------------------
    // Checks
    // ----------------------------------------------------------------------------------------------------------------

    internal static string Show(float[] x) => string.Join(", ", x.Take(16).Select(v => v.ToString("R", System.Globalization.CultureInfo.InvariantCulture))) + (x.Length > 16 ? $", … ({x.Length})" : string.Empty);

    internal static void Require(bool condition, string message)
    {
        if (!condition)
        {
            throw new ContractViolation(message);
        }
    }

    private static void CheckResult(LossResult r, int rows, string what)
    {
        Require(!double.IsNaN(r.Value) && !double.IsNaN(r.Sum), $"{what}: NaN in {r}");
        Require(r.TokenCount >= 0 && r.TokenCount <= rows && r.SequenceCount >= 0 && r.SequenceCount <= r.TokenCount, $"{what}: counts {r} for {rows} rows");
    }

    private static void CheckGradient(ReadOnlySpan<float> gradient, string what)
    {
        for (int i = 0; i < gradient.Length; i++)
        {
            // Never NaN, and every entry written (the buffer starts as NaN). ±∞ is allowed: where logit gaps ÷ T leave
            // float's range the true gradient itself is not representable in float32 (README, "Precision").
            Require(!float.IsNaN(gradient[i]), $"{what}: gradient[{i}] = {gradient[i]} (never NaN; every entry written)");
        }
    }

    private static void CheckSequenceResult(SequenceLossResult r, int candidates, string what)
    {
        Require(!double.IsNaN(r.CrossEntropy) && !double.IsNaN(r.KL) && !double.IsNaN(r.TeacherEntropy) && !double.IsNaN(r.TeacherMass), $"{what}: NaN in {r}");
        Require(r.CandidateCount == candidates && r.TeacherMass >= 0, $"{what}: {r} for {candidates} candidates");
    }
}

/// <summary>Copies of every input buffer, compared bit for bit after the call (whether it returned or threw).</summary>
internal sealed class InputGuard
{
    private readonly List<(Array Live, Array Copy)> _arrays = [];

    public T[] Add<T>(T[] array)
    {
        _arrays.Add((array, (Array)array.Clone()));
        return array;
    }

    public void Verify(int op)
    {
        foreach ((Array live, Array copy) in _arrays)
        {
            bool same = live switch
            {
                float[] f => Bits(f, (float[])copy),
                double[] d => Bits(d, (double[])copy),
                int[] i => i.AsSpan().SequenceEqual((int[])copy),
                bool[] b => b.AsSpan().SequenceEqual((bool[])copy),
                _ => true,
            };
            Harness.Require(same, $"operation {op}: an input buffer ({live.GetType().Name}[{live.Length}]) was modified");
        }
    }

    private static bool Bits(float[] a, float[] b)
    {
        for (int i = 0; i < a.Length; i++)
        {
            if (BitConverter.SingleToInt32Bits(a[i]) != BitConverter.SingleToInt32Bits(b[i]))
            {
                return false;
            }
        }

        return true;
    }

    private static bool Bits(double[] a, double[] b)
    {
        for (int i = 0; i < a.Length; i++)
        {
            if (BitConverter.DoubleToInt64Bits(a[i]) != BitConverter.DoubleToInt64Bits(b[i]))
            {
                return false;
            }
        }

        return true;
    }
}
