using Distillation.Kernels;
using static Distillation.Tests.InputBuilders;

namespace Distillation.Tests;

/// <summary>
/// Every documented way to call the library wrongly: the exact exception type, its parameter name and the telling
/// part of its message; that structural errors write nothing; and the valid edge inputs that must not throw.
/// </summary>
public class BadInputTests
{
    private const int Rows = 3;

    // ------------------------------------------------------------------------------------------------------------
    // Distribution factories
    // ------------------------------------------------------------------------------------------------------------

    [Theory]
    [InlineData(0)]
    [InlineData(-1)]
    [InlineData(int.MinValue)]
    public void Factories_ThrowForNonPositiveVocabularySize(int vocab)
    {
        float[] values = new float[6];
        var calls = new (string Name, Action Call)[]
        {
            ("Teacher.FromLogits", () => TeacherDistribution.FromLogits(values, vocab)),
            ("Teacher.FromLogProbabilities", () => TeacherDistribution.FromLogProbabilities(values, vocab)),
            ("Teacher.FromProbabilities", () => TeacherDistribution.FromProbabilities(values, vocab)),
            ("Student.FromLogits", () => StudentDistribution.FromLogits(values, vocab)),
            ("Student.FromLogProbabilities", () => StudentDistribution.FromLogProbabilities(values, vocab)),
        };

        foreach ((string name, Action call) in calls)
        {
            call.Should().ThrowExactly<ArgumentOutOfRangeException>(name)
                .WithParameterName("vocabularySize")
                .WithMessage("*vocabulary size must be at least 1*");
        }
    }

    [Theory]
    [InlineData(11, 5)]
    [InlineData(1, 2)]
    [InlineData(110, 37)]
    [InlineData(3001, 1000)]
    public void Factories_ThrowWhenLengthIsNotAMultipleOfVocabularySize(int length, int vocab)
    {
        float[] values = new float[length];
        var calls = new (string Param, Action Call)[]
        {
            ("logits", () => TeacherDistribution.FromLogits(values, vocab)),
            ("logProbabilities", () => TeacherDistribution.FromLogProbabilities(values, vocab)),
            ("probabilities", () => TeacherDistribution.FromProbabilities(values, vocab)),
            ("logits", () => StudentDistribution.FromLogits(values, vocab)),
            ("logProbabilities", () => StudentDistribution.FromLogProbabilities(values, vocab)),
        };

        foreach ((string param, Action call) in calls)
        {
            call.Should().ThrowExactly<ArgumentException>()
                .WithParameterName(param)
                .WithMessage($"*buffer has {length} values, which is not a multiple of the vocabulary size {vocab}*");
        }
    }

    [Theory]
    [InlineData(2)]
    [InlineData(4)]
    [InlineData(0)]
    public void Factories_ThrowWhenLayoutRowCountDiffersFromBuffer(int layoutRows)
    {
        const int vocab = 5;
        float[] values = new float[Rows * vocab];
        SequenceLayout layout = SequenceLayout.Independent(layoutRows);
        var calls = new Action[]
        {
            () => TeacherDistribution.FromLogits(values, vocab, layout),
            () => TeacherDistribution.FromLogProbabilities(values, vocab, layout),
            () => TeacherDistribution.FromProbabilities(values, vocab, layout),
            () => StudentDistribution.FromLogits(values, vocab, layout),
            () => StudentDistribution.FromLogProbabilities(values, vocab, layout),
        };

        foreach (Action call in calls)
        {
            call.Should().ThrowExactly<ArgumentException>()
                .WithParameterName("layout")
                .WithMessage($"*layout has {layoutRows} rows but the buffer holds {Rows} rows of {vocab}*");
        }
    }

    // ------------------------------------------------------------------------------------------------------------
    // Sequence layouts
    // ------------------------------------------------------------------------------------------------------------

    [Fact]
    public void Rectangular_ThrowsForNegativeBatchOrLength()
    {
        Action negativeBatch = () => SequenceLayout.Rectangular(-1, 4);
        Action negativeLength = () => SequenceLayout.Rectangular(2, -3);
        Action overflow = () => SequenceLayout.Rectangular(1 << 16, 1 << 16);
        negativeBatch.Should().ThrowExactly<ArgumentOutOfRangeException>().WithParameterName("batch").WithMessage("*batch size must be 0 or more*");
        negativeLength.Should().ThrowExactly<ArgumentOutOfRangeException>().WithParameterName("length").WithMessage("*sequence length must be 0 or more*");
        overflow.Should().ThrowExactly<ArgumentOutOfRangeException>().WithParameterName("length").WithMessage("*rows exceeds 2147483647*");
    }

    [Theory]
    [InlineData(5)]
    [InlineData(7)]
    [InlineData(1)]
    public void Rectangular_ThrowsForMaskOfWrongLength(int maskLength)
    {
        Action act = () => SequenceLayout.Rectangular(2, 3, new bool[maskLength]);
        act.Should().ThrowExactly<ArgumentException>()
            .WithParameterName("paddingMask")
            .WithMessage($"*padding mask has {maskLength} entries but the layout has 6 rows*");
    }

    [Theory]
    [InlineData(-1, 0)]
    [InlineData(-5, 2)]
    public void Padded_ThrowsForNegativeLength(int length, int index)
    {
        int[] lengths = [2, 2, 2];
        lengths[index] = length;
        Action act = () => SequenceLayout.Padded(lengths, 4);
        act.Should().ThrowExactly<ArgumentOutOfRangeException>()
            .WithParameterName("lengths")
            .WithMessage($"*lengths[{index}] = {length} is outside [0, 4]*");
    }

    [Theory]
    [InlineData(5, 1)]
    [InlineData(int.MaxValue, 2)]
    public void Padded_ThrowsForLengthAboveMaxLength(int length, int index)
    {
        int[] lengths = [4, 0, 3];
        lengths[index] = length;
        Action act = () => SequenceLayout.Padded(lengths, 4);
        act.Should().ThrowExactly<ArgumentOutOfRangeException>()
            .WithParameterName("lengths")
            .WithMessage($"*lengths[{index}] = {length} is outside [0, 4]*");
    }

    [Fact]
    public void Padded_ThrowsForNegativeMaxLength()
    {
        Action act = () => SequenceLayout.Padded([0, 0], -1);
        act.Should().ThrowExactly<ArgumentOutOfRangeException>()
            .WithParameterName("maxLength")
            .WithMessage("*padded length must be 0 or more*");
    }

    [Theory]
    [InlineData(-1, 0)]
    [InlineData(-7, 2)]
    public void FromLengths_ThrowsForNegativeLength(int length, int index)
    {
        int[] lengths = [3, 1, 4];
        lengths[index] = length;
        Action act = () => SequenceLayout.FromLengths(lengths);
        act.Should().ThrowExactly<ArgumentOutOfRangeException>()
            .WithParameterName("lengths")
            .WithMessage($"*lengths[{index}] = {length} is negative*");
    }

    [Fact]
    public void FromLengths_ThrowsWhenTheTotalOverflows()
    {
        Action act = () => SequenceLayout.FromLengths([int.MaxValue, 1]);
        act.Should().ThrowExactly<ArgumentOutOfRangeException>()
            .WithParameterName("lengths")
            .WithMessage("*total length exceeds 2147483647 rows*");
    }

    [Fact]
    public void FromOffsets_ThrowsForEmptyOffsets()
    {
        Action act = () => SequenceLayout.FromOffsets([]);
        act.Should().ThrowExactly<ArgumentException>()
            .WithParameterName("offsets")
            .WithMessage("*offsets must have at least one entry*");
    }

    [Theory]
    [InlineData(1)]
    [InlineData(-2)]
    public void FromOffsets_ThrowsWhenNotStartingAtZero(int first)
    {
        Action act = () => SequenceLayout.FromOffsets([first, 4, 6]);
        act.Should().ThrowExactly<ArgumentException>()
            .WithParameterName("offsets")
            .WithMessage($"*offsets[0] must be 0, not {first}*");
    }

    [Fact]
    public void FromOffsets_ThrowsForDecreasingOffsets()
    {
        Action act = () => SequenceLayout.FromOffsets([0, 3, 5, 4, 6]);
        act.Should().ThrowExactly<ArgumentException>()
            .WithParameterName("offsets")
            .WithMessage("*non-decreasing: offsets[3] = 4 < offsets[2] = 5*");
    }

    [Fact]
    public void FromOffsets_ThrowsForMaskOfWrongLength()
    {
        Action act = () => SequenceLayout.FromOffsets([0, 2, 5], new bool[4]);
        act.Should().ThrowExactly<ArgumentException>()
            .WithParameterName("paddingMask")
            .WithMessage("*padding mask has 4 entries but the layout has 5 rows*");
    }

    [Fact]
    public void FromOffsets_AcceptsRepeatedOffsetsAndTheEmptyBatch()
    {
        SequenceLayout layout = SequenceLayout.FromOffsets([0, 3, 3, 5]);
        layout.RowCount.Should().Be(5);
        layout.SequenceCount.Should().Be(3);
        SequenceLayout empty = SequenceLayout.FromOffsets([0]);
        empty.RowCount.Should().Be(0);
        empty.SequenceCount.Should().Be(0);
    }

    [Fact]
    public void Independent_ThrowsForNegativeRowsNamingRows()
    {
        // The XML doc names the parameter "rows"; the exception must name a parameter the caller can see.
        Action act = () => SequenceLayout.Independent(-1);
        act.Should().ThrowExactly<ArgumentOutOfRangeException>()
            .WithParameterName("rows")
            .WithMessage("*0 or more*");
    }

    [Fact]
    public void IsRowReal_ThrowsOutsideTheRows()
    {
        SequenceLayout layout = SequenceLayout.Rectangular(2, 2);
        Action below = () => layout.IsRowReal(-1);
        Action above = () => layout.IsRowReal(4);
        below.Should().ThrowExactly<ArgumentOutOfRangeException>().WithParameterName("row").WithMessage("*row must be in [0, 4)*");
        above.Should().ThrowExactly<ArgumentOutOfRangeException>().WithParameterName("row").WithMessage("*row must be in [0, 4)*");
    }

    // ------------------------------------------------------------------------------------------------------------
    // Loss parameters
    // ------------------------------------------------------------------------------------------------------------

    [Theory]
    [InlineData(0f)]
    [InlineData(-1f)]
    [InlineData(float.NaN)]
    [InlineData(float.PositiveInfinity)]
    [InlineData(float.NegativeInfinity)]
    [InlineData(1e-40f)]
    [InlineData(1e-7f)]
    [InlineData(2e6f)]
    public void DistillationLoss_ThrowsForInvalidTemperature(float badTemperature)
    {
        Action act = () => _ = new DistillationLoss(Divergence.ForwardKL, badTemperature);
        act.Should().ThrowExactly<ArgumentOutOfRangeException>()
            .WithParameterName("temperature")
            .WithMessage("*temperature must be finite and lie in [1e-6, 1e6]*");
    }

    public static readonly string[] FunctionalForms = ["ForwardKL", "ReverseKL", "SoftCrossEntropy", "TotalVariation", "GeneralizedJsd", "Compute"];

    private static float CallFunctional(string form, float[] teacher, float[] student, float[] gradient, int vocab, float temperature = 1f, Reduction reduction = default) => form switch
    {
        "ForwardKL" => Losses.ForwardKL(teacher, student, gradient, vocab, temperature, reduction),
        "ReverseKL" => Losses.ReverseKL(teacher, student, gradient, vocab, temperature, reduction),
        "SoftCrossEntropy" => Losses.SoftCrossEntropy(teacher, student, gradient, vocab, temperature, reduction),
        "TotalVariation" => Losses.TotalVariation(teacher, student, gradient, vocab, temperature, reduction),
        "GeneralizedJsd" => Losses.GeneralizedJsd(0.5, teacher, student, gradient, vocab, temperature, reduction),
        "Compute" => Losses.Compute(Divergence.SkewKL(0.1), teacher, student, gradient, vocab, temperature, reduction),
        _ => throw new ArgumentOutOfRangeException(nameof(form), form, "Unknown functional form."),
    };

    public static IEnumerable<object[]> FunctionalFormsAndBadTemperatures() =>
        from form in FunctionalForms
        from t in new[] { 0f, -1f, float.NaN, float.PositiveInfinity }
        select new object[] { form, t };

    [Theory]
    [MemberData(nameof(FunctionalFormsAndBadTemperatures))]
    public void Losses_ThrowForInvalidTemperature(string form, float badTemperature)
    {
        const int vocab = 5;
        float[] teacher = Logits(Rows, vocab), student = Logits(Rows, vocab, 3);
        float[] gradient = Filled(Rows * vocab, Sentinel);
        Action act = () => CallFunctional(form, teacher, student, gradient, vocab, badTemperature);
        act.Should().ThrowExactly<ArgumentOutOfRangeException>()
            .WithParameterName("temperature")
            .WithMessage("*temperature must be finite and lie in [1e-6, 1e6]*");
        gradient.ShouldBeUntouched("an invalid temperature is rejected before anything is written");
    }

    [Theory]
    [InlineData(-0.1)]
    [InlineData(-1e-300)]
    [InlineData(1.0000001)]
    [InlineData(2.0)]
    [InlineData(1e-9)]
    [InlineData(1 - 1e-9)]
    [InlineData(double.NaN)]
    [InlineData(double.PositiveInfinity)]
    [InlineData(double.NegativeInfinity)]
    public void GeneralizedJsd_ThrowsForBetaOutsideUnitInterval(double badBeta)
    {
        Action divergence = () => Divergence.GeneralizedJsd(badBeta);
        divergence.Should().ThrowExactly<ArgumentOutOfRangeException>()
            .WithParameterName("beta")
            .WithMessage("*β must be 0, 1, or lie in [1e-6, 1 − 1e-6]*");

        float[] values = Logits(Rows, 5);
        Action functional = () => Losses.GeneralizedJsd(badBeta, values, values.ToArray(), new float[values.Length], 5);
        functional.Should().ThrowExactly<ArgumentOutOfRangeException>()
            .WithParameterName("beta")
            .WithMessage("*β must be 0, 1, or lie in [1e-6, 1 − 1e-6]*");
    }

    [Theory]
    [InlineData(0.0)]
    [InlineData(1.0)]
    [InlineData(0.5)]
    public void GeneralizedJsd_AcceptsBetaInTheClosedUnitInterval(double beta)
    {
        Divergence.GeneralizedJsd(beta).Parameter.Should().Be(beta);
    }

    [Theory]
    [InlineData(-0.1)]
    [InlineData(1.0)]
    [InlineData(1.5)]
    [InlineData(double.NaN)]
    [InlineData(double.PositiveInfinity)]
    [InlineData(double.NegativeInfinity)]
    [InlineData(1e-40)]
    [InlineData(0.999999999)]
    public void SkewDivergences_ThrowForAlphaOutsideHalfOpenInterval(double badAlpha)
    {
        Action skew = () => Divergence.SkewKL(badAlpha);
        Action skewReverse = () => Divergence.SkewReverseKL(badAlpha);
        skew.Should().ThrowExactly<ArgumentOutOfRangeException>().WithParameterName("alpha").WithMessage("*α must be 0 or lie in [1e-6, 1 − 1e-6]*");
        skewReverse.Should().ThrowExactly<ArgumentOutOfRangeException>().WithParameterName("alpha").WithMessage("*α must be 0 or lie in [1e-6, 1 − 1e-6]*");
    }

    [Fact]
    public void SkewDivergences_AcceptAlphaZeroAndJustBelowOne()
    {
        Divergence.SkewKL(0).Parameter.Should().Be(0);
        Divergence.SkewReverseKL(1 - 1e-6).Parameter.Should().Be(1 - 1e-6);
        Divergence.SkewKL(1e-6).Parameter.Should().Be(1e-6);
    }

    [Theory]
    [InlineData(-0.1f)]
    [InlineData(-float.Epsilon)]
    [InlineData(1.0001f)]
    [InlineData(float.NaN)]
    [InlineData(float.PositiveInfinity)]
    [InlineData(float.NegativeInfinity)]
    public void LanguageModelLoss_ThrowsForLabelSmoothingOutsideUnitInterval(float smoothing)
    {
        Action act = () => _ = new LanguageModelLoss(smoothing);
        act.Should().ThrowExactly<ArgumentOutOfRangeException>()
            .WithParameterName("labelSmoothing")
            .WithMessage("*Label smoothing must lie in [0, 1]*");
    }

    [Theory]
    [InlineData(0f)]
    [InlineData(1f)]
    public void LanguageModelLoss_AcceptsLabelSmoothingAtBothEnds(float smoothing)
    {
        new LanguageModelLoss(smoothing).LabelSmoothing.Should().Be(smoothing);
    }

    [Theory]
    [InlineData(0.0)]
    [InlineData(-1.0)]
    [InlineData(1e-300)]
    [InlineData(double.NaN)]
    [InlineData(double.PositiveInfinity)]
    [InlineData(double.NegativeInfinity)]
    public void SumDividedBy_ThrowsForNonPositiveOrNonFiniteDivisor(double badDivisor)
    {
        Action act = () => Reduction.SumDividedBy(badDivisor);
        act.Should().ThrowExactly<ArgumentOutOfRangeException>()
            .WithParameterName("divisor")
            .WithMessage("*divisor must be finite and at least 1e-6*");
    }

    [Theory]
    [InlineData(0)]
    [InlineData(-1)]
    public void MaxDegreeOfParallelism_ThrowsBelowOne(int threads)
    {
        Action distillation = () => _ = new DistillationLoss(Divergence.ForwardKL) { MaxDegreeOfParallelism = threads };
        Action languageModel = () => _ = new LanguageModelLoss() { MaxDegreeOfParallelism = threads };
        distillation.Should().ThrowExactly<ArgumentOutOfRangeException>()
            .WithParameterName("MaxDegreeOfParallelism")
            .WithMessage("*At least one thread is needed*");
        languageModel.Should().ThrowExactly<ArgumentOutOfRangeException>()
            .WithParameterName("MaxDegreeOfParallelism")
            .WithMessage("*At least one thread is needed*");
    }

    [Fact]
    public void DistillationLoss_ThrowsForDefaultDivergence()
    {
        Action act = () => _ = new DistillationLoss(default);
        act.Should().ThrowExactly<ArgumentException>()
            .WithParameterName("divergence")
            .WithMessage("*divergence is unspecified (default)*");
    }

    [Fact]
    public void Losses_Compute_ThrowsForDefaultDivergenceAndWritesNothing()
    {
        const int vocab = 37;
        float[] teacher = Logits(Rows, vocab), student = Logits(Rows, vocab, 3);
        float[] gradient = Filled(Rows * vocab, Sentinel);
        Action act = () => Losses.Compute(default, teacher, student, gradient, vocab);
        act.Should().ThrowExactly<ArgumentException>()
            .WithParameterName("divergence")
            .WithMessage("*divergence is unspecified (default)*");
        gradient.ShouldBeUntouched("an unspecified divergence is a structural error");
    }

    [Theory]
    [InlineData(2)]
    [InlineData(-1)]
    public void DistillationLoss_ThrowsForUndefinedTemperatureScaling(int scaling)
    {
        Action act = () => _ = new DistillationLoss(Divergence.ForwardKL, 2f, (TemperatureScaling)scaling);
        act.Should().ThrowExactly<ArgumentOutOfRangeException>()
            .WithParameterName("temperatureScaling")
            .WithMessage("*Unknown temperature scaling*");
    }

    [Fact]
    public void Compute_ThrowsForDefaultTeacher()
    {
        const int vocab = 5;
        var student = StudentDistribution.FromLogits(Logits(Rows, vocab), vocab);
        var loss = new DistillationLoss(Divergence.ForwardKL);
        ExpectStructuralError<ArgumentException>(
            Rows * vocab, Rows,
            (g, l) => loss.Compute(default(TeacherDistribution), student, g, Reduction.None, default, l),
            "teacher", "*distribution is uninitialised (default)*");
        Action evaluate = () => loss.Evaluate(default(TeacherDistribution), student);
        evaluate.Should().ThrowExactly<ArgumentException>().WithParameterName("teacher").WithMessage("*uninitialised (default)*");
    }

    [Fact]
    public void Compute_ThrowsForDefaultStudent()
    {
        const int vocab = 5;
        var teacher = TeacherDistribution.FromLogits(Logits(Rows, vocab), vocab);
        var loss = new DistillationLoss(Divergence.ForwardKL);
        ExpectStructuralError<ArgumentException>(
            Rows * vocab, Rows,
            (g, l) => loss.Compute(teacher, default, g, Reduction.None, default, l),
            "student", "*distribution is uninitialised (default)*");
        Action evaluate = () => loss.Evaluate(teacher, default);
        evaluate.Should().ThrowExactly<ArgumentException>().WithParameterName("student").WithMessage("*uninitialised (default)*");
    }

    [Fact]
    public void LanguageModelLoss_ThrowsForDefaultStudent()
    {
        var loss = new LanguageModelLoss();
        ExpectStructuralError<ArgumentException>(
            15, Rows,
            (g, l) => loss.Compute(default, new TokenLabels(new[] { 0, 1, 2 }), g, Reduction.None, l),
            "student", "*distribution is uninitialised (default)*");
        Action evaluate = () => loss.Evaluate(default, new TokenLabels(new[] { 0, 1, 2 }));
        evaluate.Should().ThrowExactly<ArgumentException>().WithParameterName("student").WithMessage("*uninitialised (default)*");
    }

    // ------------------------------------------------------------------------------------------------------------
    // Shapes that disagree
    // ------------------------------------------------------------------------------------------------------------

    [Theory]
    [InlineData(5, 6)]
    [InlineData(37, 36)]
    [InlineData(1000, 1001)]
    public void Compute_ThrowsForMismatchedVocabularies(int teacherVocab, int studentVocab)
    {
        var teacher = TeacherDistribution.FromLogits(Logits(Rows, teacherVocab), teacherVocab);
        var student = StudentDistribution.FromLogits(Logits(Rows, studentVocab, 3), studentVocab);
        var loss = new DistillationLoss(Divergence.ReverseKL);
        string message = $"*teacher's vocabulary has {teacherVocab} tokens and the student's {studentVocab}*";
        ExpectStructuralError<ArgumentException>(Rows * studentVocab, Rows, (g, l) => loss.Compute(teacher, student, g, Reduction.None, default, l), "student", message);
        ExpectStructuralError<ArgumentException>(Rows * teacherVocab, Rows, (g, l) => loss.Compute(teacher, student, g, Reduction.Sum, default, l), "student", message);
        ExpectStructuralError<ArgumentException>(0, Rows, (_, l) => loss.Evaluate(teacher, student, Reduction.None, default, l), "student", message);
    }

    [Theory]
    [InlineData(3, 2, 5)]
    [InlineData(2, 3, 37)]
    [InlineData(1, 0, 16)]
    public void Compute_ThrowsForMismatchedRowCounts(int teacherRows, int studentRows, int vocab)
    {
        var teacher = TeacherDistribution.FromLogits(Logits(teacherRows, vocab), vocab);
        var student = StudentDistribution.FromLogits(Logits(studentRows, vocab, 3), vocab);
        var loss = new DistillationLoss(Divergence.SoftCrossEntropy);
        string message = $"*teacher has {teacherRows} rows and the student {studentRows}*";
        ExpectStructuralError<ArgumentException>(studentRows * vocab, studentRows, (g, l) => loss.Compute(teacher, student, g, Reduction.None, default, l), "student", message);
        ExpectStructuralError<ArgumentException>(teacherRows * vocab, teacherRows, (g, l) => loss.Compute(teacher, student, g, Reduction.None, default, l), "student", message);
        ExpectStructuralError<ArgumentException>(0, studentRows, (_, l) => loss.Evaluate(teacher, student, Reduction.None, default, l), "student", message);
    }

    [Theory]
    [MemberData(nameof(FunctionalFormsData))]
    public void Losses_ThrowForMismatchedRowCounts(string form)
    {
        const int vocab = 37;
        float[] teacher = Logits(3, vocab), student = Logits(2, vocab, 3);
        ExpectStructuralError<ArgumentException>(2 * vocab, 0, (g, _) => CallFunctional(form, teacher, student, g, vocab), "studentLogits", "*teacher has 3 rows and the student 2*");
        ExpectStructuralError<ArgumentException>(3 * vocab, 0, (g, _) => CallFunctional(form, teacher, student, g, vocab), "studentLogits", "*teacher has 3 rows and the student 2*");
    }

    [Theory]
    [MemberData(nameof(FunctionalFormsData))]
    public void Losses_ThrowForLengthNotAMultipleOfVocabularySize(string form)
    {
        const int vocab = 5;
        float[] good = Logits(Rows, vocab), bad = new float[(Rows * vocab) - 1];
        ExpectStructuralError<ArgumentException>(Rows * vocab, 0, (g, _) => CallFunctional(form, bad, good, g, vocab), "teacherLogits", "*buffer has 14 values, which is not a multiple of the vocabulary size 5*");
        ExpectStructuralError<ArgumentException>(Rows * vocab, 0, (g, _) => CallFunctional(form, good, bad, g, vocab), "studentLogits", "*buffer has 14 values, which is not a multiple of the vocabulary size 5*");
    }

    [Theory]
    [MemberData(nameof(FunctionalFormsData))]
    public void Losses_ThrowForNonPositiveVocabularySize(string form)
    {
        float[] values = Logits(Rows, 5);
        ExpectStructuralError<ArgumentOutOfRangeException>(values.Length, 0, (g, _) => CallFunctional(form, values, values.ToArray(), g, 0), "vocabularySize", "*vocabulary size must be at least 1*");
        ExpectStructuralError<ArgumentOutOfRangeException>(values.Length, 0, (g, _) => CallFunctional(form, values, values.ToArray(), g, -5), "vocabularySize", "*vocabulary size must be at least 1*");
    }

    public static IEnumerable<object[]> FunctionalFormsData() => FunctionalForms.Select(f => new object[] { f });

    [Fact]
    public void Compute_ThrowsForDifferentLayoutsOnTeacherAndStudent()
    {
        const int vocab = 5;
        float[] teacherValues = Logits(4, vocab), studentValues = Logits(4, vocab, 3);
        var loss = new DistillationLoss(Divergence.ForwardKL);
        var cases = new (string Name, SequenceLayout Teacher, SequenceLayout Student)[]
        {
            ("offsets", SequenceLayout.Rectangular(2, 2), SequenceLayout.FromLengths([1, 3])),
            ("sequence count", SequenceLayout.Rectangular(2, 2), SequenceLayout.Independent(4)),
            ("mask", SequenceLayout.Padded([2, 1], 2), SequenceLayout.Padded([1, 2], 2)),
            ("mask on one side", SequenceLayout.Padded([2, 1], 2), SequenceLayout.Rectangular(2, 2)),
        };

        foreach ((string name, SequenceLayout teacherLayout, SequenceLayout studentLayout) in cases)
        {
            var teacher = TeacherDistribution.FromLogits(teacherValues, vocab, teacherLayout);
            var student = StudentDistribution.FromLogits(studentValues, vocab, studentLayout);
            ExpectStructuralError<ArgumentException>(
                4 * vocab, 4,
                (g, l) => loss.Compute(teacher, student, g, Reduction.None, default, l),
                "student", "*teacher and student have different sequence layouts*", name);
            Action evaluate = () => loss.Evaluate(teacher, student);
            evaluate.Should().ThrowExactly<ArgumentException>(name).WithParameterName("student").WithMessage("*different sequence layouts*");
        }
    }

    [Fact]
    public void Compute_AcceptsEqualLayoutsAndALayoutOnOneSideOnly()
    {
        const int vocab = 5;
        float[] teacherValues = Logits(4, vocab), studentValues = Logits(4, vocab, 3);
        var loss = new DistillationLoss(Divergence.ForwardKL);
        var teacher = TeacherDistribution.FromLogits(teacherValues, vocab, SequenceLayout.Padded([2, 1], 2));
        var equalStudent = StudentDistribution.FromLogits(studentValues, vocab, SequenceLayout.Padded([2, 1], 2));
        var bareStudent = StudentDistribution.FromLogits(studentValues, vocab);
        LossResult equal = loss.Evaluate(teacher, equalStudent);
        LossResult oneSide = loss.Evaluate(teacher, bareStudent);
        equal.TokenCount.Should().Be(3);
        oneSide.Should().Be(equal, "a layout on one side only is the layout of the call");
    }

    // ------------------------------------------------------------------------------------------------------------
    // Labels
    // ------------------------------------------------------------------------------------------------------------

    [Theory]
    [InlineData(2)]
    [InlineData(4)]
    public void Compute_ThrowsForWrongLabelCount(int labelCount)
    {
        const int vocab = 5;
        var teacher = TeacherDistribution.FromLogits(Logits(Rows, vocab), vocab);
        var student = StudentDistribution.FromLogits(Logits(Rows, vocab, 3), vocab);
        var labels = new TokenLabels(new int[labelCount]);
        var loss = new DistillationLoss(Divergence.ForwardKL);
        ExpectStructuralError<ArgumentException>(Rows * vocab, Rows, (g, l) => loss.Compute(teacher, student, g, Reduction.None, labels, l), "labels", $"*There are {labelCount} labels for {Rows} rows*");
        ExpectStructuralError<ArgumentException>(0, Rows, (_, l) => loss.Evaluate(teacher, student, Reduction.None, labels, l), "labels", $"*There are {labelCount} labels for {Rows} rows*");
    }

    [Theory]
    [InlineData(5, 2, 5)]
    [InlineData(5, 0, 6)]
    [InlineData(5, 1, -1)]
    [InlineData(5, 2, int.MinValue)]
    [InlineData(5, 0, int.MaxValue)]
    [InlineData(37, 2, 37)]
    [InlineData(37, 1, -99)]
    [InlineData(1000, 2, 1000)]
    public void Compute_ThrowsForLabelOutsideVocabulary(int vocab, int row, int label)
    {
        var teacher = TeacherDistribution.FromLogits(Logits(Rows, vocab), vocab);
        var student = StudentDistribution.FromLogits(Logits(Rows, vocab, 3), vocab);
        int[] ids = [0, TokenLabels.DefaultIgnoreIndex, vocab - 1];
        ids[row] = label;
        var labels = new TokenLabels(ids);
        var loss = new DistillationLoss(Divergence.GeneralizedJsd(0.5));
        string message = $"*label of row {row} is {label}: labels must lie in [0, {vocab}) or equal the ignore index -100*";
        ExpectStructuralError<ArgumentOutOfRangeException>(Rows * vocab, Rows, (g, l) => loss.Compute(teacher, student, g, Reduction.None, labels, l), "labels", message);
        ExpectStructuralError<ArgumentOutOfRangeException>(0, Rows, (_, l) => loss.Evaluate(teacher, student, Reduction.None, labels, l), "labels", message);
    }

    [Fact]
    public void Compute_ThrowsForDefaultIgnoreIndexWhenAnotherIgnoreIndexIsGiven()
    {
        const int vocab = 5;
        var teacher = TeacherDistribution.FromLogits(Logits(Rows, vocab), vocab);
        var student = StudentDistribution.FromLogits(Logits(Rows, vocab, 3), vocab);
        var labels = new TokenLabels(new[] { -1, 2, -100 }, ignoreIndex: -1);
        var loss = new DistillationLoss(Divergence.ForwardKL);
        ExpectStructuralError<ArgumentOutOfRangeException>(
            Rows * vocab, Rows,
            (g, l) => loss.Compute(teacher, student, g, Reduction.None, labels, l),
            "labels", "*label of row 2 is -100: labels must lie in [0, 5) or equal the ignore index -1*");
    }

    [Theory]
    [InlineData(2)]
    [InlineData(4)]
    public void LanguageModelLoss_ThrowsForWrongLabelCount(int labelCount)
    {
        const int vocab = 37;
        var student = StudentDistribution.FromLogits(Logits(Rows, vocab), vocab);
        var labels = new TokenLabels(new int[labelCount]);
        var loss = new LanguageModelLoss();
        ExpectStructuralError<ArgumentException>(Rows * vocab, Rows, (g, l) => loss.Compute(student, labels, g, Reduction.None, l), "labels", $"*There are {labelCount} labels for {Rows} rows*");
        ExpectStructuralError<ArgumentException>(0, Rows, (_, l) => loss.Evaluate(student, labels, Reduction.None, l), "labels", $"*There are {labelCount} labels for {Rows} rows*");
    }

    [Theory]
    [InlineData(5, 0, 5)]
    [InlineData(5, 2, -1)]
    [InlineData(37, 1, 37)]
    [InlineData(1000, 2, 1001)]
    public void LanguageModelLoss_ThrowsForLabelOutsideVocabulary(int vocab, int row, int label)
    {
        var student = StudentDistribution.FromLogits(Logits(Rows, vocab), vocab);
        int[] ids = [1, 0, TokenLabels.DefaultIgnoreIndex];
        ids[row] = label;
        var labels = new TokenLabels(ids);
        var loss = new LanguageModelLoss(0.1f);
        string message = $"*label of row {row} is {label}: labels must lie in [0, {vocab})*";
        ExpectStructuralError<ArgumentOutOfRangeException>(Rows * vocab, Rows, (g, l) => loss.Compute(student, labels, g, Reduction.None, l), "labels", message);
        ExpectStructuralError<ArgumentOutOfRangeException>(0, Rows, (_, l) => loss.Evaluate(student, labels, Reduction.None, l), "labels", message);
    }

    [Fact]
    public void LanguageModelLoss_ThrowsWithoutLabels()
    {
        const int vocab = 5;
        var student = StudentDistribution.FromLogits(Logits(Rows, vocab), vocab);
        var loss = new LanguageModelLoss();
        ExpectStructuralError<ArgumentException>(Rows * vocab, Rows, (g, l) => loss.Compute(student, default, g, Reduction.None, l), "labels", "*hard-label loss needs one label per row*");
        ExpectStructuralError<ArgumentException>(Rows * vocab, Rows, (g, l) => loss.Compute(student, new TokenLabels(Array.Empty<int>()), g, Reduction.None, l), "labels", "*needs one label per row*");
        ExpectStructuralError<ArgumentException>(0, Rows, (_, l) => loss.Evaluate(student, default, Reduction.None, l), "labels", "*needs one label per row*");
    }

    // ------------------------------------------------------------------------------------------------------------
    // Output buffers
    // ------------------------------------------------------------------------------------------------------------

    [Theory]
    [InlineData(5, -1)]
    [InlineData(5, 1)]
    [InlineData(5, -15)]
    [InlineData(37, -5)]
    [InlineData(37, 37)]
    [InlineData(1000, -1)]
    public void Compute_ThrowsForGradientOfWrongLength(int vocab, int delta)
    {
        int length = (Rows * vocab) + delta;
        var teacher = TeacherDistribution.FromLogits(Logits(Rows, vocab), vocab);
        var student = StudentDistribution.FromLogits(Logits(Rows, vocab, 3), vocab);
        var loss = new DistillationLoss(Divergence.TotalVariation);
        ExpectStructuralError<ArgumentException>(
            length, Rows,
            (g, l) => loss.Compute(teacher, student, g, Reduction.None, default, l),
            "studentGradient", $"*gradient buffer has {length} entries; it must have exactly {Rows * vocab}*");
    }

    [Theory]
    [MemberData(nameof(FunctionalFormsData))]
    public void Losses_ThrowForGradientOfWrongLength(string form)
    {
        const int vocab = 37;
        float[] teacher = Logits(Rows, vocab), student = Logits(Rows, vocab, 3);
        ExpectStructuralError<ArgumentException>((Rows * vocab) - 1, 0, (g, _) => CallFunctional(form, teacher, student, g, vocab), "studentGradient", $"*gradient buffer has {(Rows * vocab) - 1} entries; it must have exactly {Rows * vocab}*");
        ExpectStructuralError<ArgumentException>((Rows * vocab) + 1, 0, (g, _) => CallFunctional(form, teacher, student, g, vocab), "studentGradient", $"*gradient buffer has {(Rows * vocab) + 1} entries; it must have exactly {Rows * vocab}*");
        ExpectStructuralError<ArgumentException>(0, 0, (g, _) => CallFunctional(form, teacher, student, g, vocab), "studentGradient", $"*gradient buffer has 0 entries; it must have exactly {Rows * vocab}*");
    }

    [Theory]
    [InlineData(-1)]
    [InlineData(1)]
    public void LanguageModelLoss_ThrowsForGradientOfWrongLength(int delta)
    {
        const int vocab = 37;
        int length = (Rows * vocab) + delta;
        var student = StudentDistribution.FromLogits(Logits(Rows, vocab), vocab);
        var labels = new TokenLabels(new[] { 0, 1, 2 });
        var loss = new LanguageModelLoss();
        ExpectStructuralError<ArgumentException>(length, Rows, (g, l) => loss.Compute(student, labels, g, Reduction.None, l), "studentGradient", $"*gradient buffer has {length} entries; it must have exactly {Rows * vocab}*");
    }

    /// <summary>
    /// One array holds [teacher | gap | student | gap]; the gradient is a slice starting at <paramref name="gradientStart"/>
    /// in units of the buffer size n. Whatever it overlaps, nothing in the array may change.
    /// </summary>
    [Theory]
    [InlineData(5, 0.0)]
    [InlineData(5, 0.5)]
    [InlineData(37, 0.9)]
    [InlineData(37, 1.5)]
    [InlineData(37, 2.0)]
    [InlineData(1000, 2.5)]
    [InlineData(1000, -0.999)]
    public void Compute_ThrowsForGradientOverlappingAnInput(int vocab, double gradientStart)
    {
        int n = Rows * vocab;
        float[] arena = new float[5 * n];
        Logits(Rows, vocab).CopyTo(arena, n);
        Logits(Rows, vocab, 3).CopyTo(arena, 3 * n);
        float[] before = arena.ToArray();
        var teacher = TeacherDistribution.FromLogits(arena.AsMemory(n, n), vocab);
        var student = StudentDistribution.FromLogits(arena.AsMemory(3 * n, n), vocab);
        int start = n + (int)Math.Round(gradientStart * n);
        float[] rowLosses = Filled(Rows, Sentinel);
        var loss = new DistillationLoss(Divergence.ForwardKL);

        Action act = () => loss.Compute(teacher, student, arena.AsSpan(start, n), Reduction.None, default, rowLosses);
        act.Should().ThrowExactly<ArgumentException>()
            .WithParameterName("studentGradient")
            .WithMessage("*gradient buffer overlaps an input buffer*");
        arena.ShouldBeBitIdentical(before, "a structural error writes nothing, inputs included");
        rowLosses.ShouldBeUntouched("a structural error writes nothing");
    }

    [Theory]
    [InlineData(5, 0.5)]
    [InlineData(37, 2.0)]
    [InlineData(1000, 1.9)]
    public void Losses_ThrowForGradientOverlappingAnInput(int vocab, double gradientStart)
    {
        int n = Rows * vocab;
        float[] arena = new float[5 * n];
        Logits(Rows, vocab).CopyTo(arena, n);
        Logits(Rows, vocab, 3).CopyTo(arena, 3 * n);
        float[] before = arena.ToArray();
        int start = n + (int)Math.Round(gradientStart * n);
        foreach (string form in FunctionalForms)
        {
            Action act = () => CallFunctionalOnSlices(form, arena, n, start, vocab);
            act.Should().ThrowExactly<ArgumentException>(form)
                .WithParameterName("studentGradient")
                .WithMessage("*gradient buffer overlaps an input buffer*");
            arena.ShouldBeBitIdentical(before, $"{form}: a structural error writes nothing, inputs included");
        }
    }

    private static float CallFunctionalOnSlices(string form, float[] arena, int n, int gradientStart, int vocab)
    {
        ReadOnlySpan<float> teacher = arena.AsSpan(n, n), student = arena.AsSpan(3 * n, n);
        Span<float> gradient = arena.AsSpan(gradientStart, n);
        return form switch
        {
            "ForwardKL" => Losses.ForwardKL(teacher, student, gradient, vocab),
            "ReverseKL" => Losses.ReverseKL(teacher, student, gradient, vocab),
            "SoftCrossEntropy" => Losses.SoftCrossEntropy(teacher, student, gradient, vocab),
            "TotalVariation" => Losses.TotalVariation(teacher, student, gradient, vocab),
            "GeneralizedJsd" => Losses.GeneralizedJsd(0.5, teacher, student, gradient, vocab),
            _ => Losses.Compute(Divergence.SkewKL(0.1), teacher, student, gradient, vocab),
        };
    }

    [Theory]
    [InlineData(5, 0.0)]
    [InlineData(37, 0.5)]
    [InlineData(1000, -0.5)]
    public void LanguageModelLoss_ThrowsForGradientOverlappingTheStudent(int vocab, double gradientStart)
    {
        int n = Rows * vocab;
        float[] arena = new float[3 * n];
        Logits(Rows, vocab).CopyTo(arena, n);
        float[] before = arena.ToArray();
        var student = StudentDistribution.FromLogits(arena.AsMemory(n, n), vocab);
        int start = n + (int)Math.Round(gradientStart * n);
        float[] rowLosses = Filled(Rows, Sentinel);
        var loss = new LanguageModelLoss();
        Action act = () => loss.Compute(student, new TokenLabels(new[] { 0, 1, 2 }), arena.AsSpan(start, n), Reduction.None, rowLosses);
        act.Should().ThrowExactly<ArgumentException>()
            .WithParameterName("studentGradient")
            .WithMessage("*gradient buffer overlaps an input buffer*");
        arena.ShouldBeBitIdentical(before, "a structural error writes nothing, inputs included");
        rowLosses.ShouldBeUntouched("a structural error writes nothing");
    }

    [Theory]
    [InlineData(0)]
    [InlineData(2)]
    [InlineData(4)]
    public void Compute_ThrowsForReductionNoneWithoutAFittingRowLossBuffer(int rowLossLength)
    {
        const int vocab = 37;
        var teacher = TeacherDistribution.FromLogits(Logits(Rows, vocab), vocab);
        var student = StudentDistribution.FromLogits(Logits(Rows, vocab, 3), vocab);
        var loss = new DistillationLoss(Divergence.SkewReverseKL(0.1));
        string message = $"*Reduction.None writes one value per row: the row-loss buffer must have {Rows} entries, not {rowLossLength}*";
        ExpectStructuralError<ArgumentException>(Rows * vocab, rowLossLength, (g, l) => loss.Compute(teacher, student, g, Reduction.None, default, l), "rowLosses", message);
        ExpectStructuralError<ArgumentException>(0, rowLossLength, (_, l) => loss.Evaluate(teacher, student, Reduction.None, default, l), "rowLosses", message);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(2)]
    [InlineData(4)]
    public void LanguageModelLoss_ThrowsForReductionNoneWithoutAFittingRowLossBuffer(int rowLossLength)
    {
        const int vocab = 5;
        var student = StudentDistribution.FromLogits(Logits(Rows, vocab), vocab);
        var labels = new TokenLabels(new[] { 0, 1, 2 });
        var loss = new LanguageModelLoss();
        string message = $"*row-loss buffer must have {Rows} entries, not {rowLossLength}*";
        ExpectStructuralError<ArgumentException>(Rows * vocab, rowLossLength, (g, l) => loss.Compute(student, labels, g, Reduction.None, l), "rowLosses", message);
        ExpectStructuralError<ArgumentException>(0, rowLossLength, (_, l) => loss.Evaluate(student, labels, Reduction.None, l), "rowLosses", message);
    }

    [Theory]
    [InlineData("Sum", 2)]
    [InlineData("MeanOverTokens", 4)]
    [InlineData("MeanOverSequences", 1)]
    [InlineData("SumDividedBy", 2)]
    public void Compute_ThrowsForRowLossBufferOfWrongLengthWithAnyReduction(string reduction, int rowLossLength)
    {
        const int vocab = 5;
        var teacher = TeacherDistribution.FromLogits(Logits(Rows, vocab), vocab);
        var student = StudentDistribution.FromLogits(Logits(Rows, vocab, 3), vocab);
        var loss = new DistillationLoss(Divergence.ForwardKL);
        string message = $"*row-loss buffer has {rowLossLength} entries; it must have exactly {Rows}*";
        ExpectStructuralError<ArgumentException>(Rows * vocab, rowLossLength, (g, l) => loss.Compute(teacher, student, g, ReductionNamed(reduction), default, l), "rowLosses", message);
        ExpectStructuralError<ArgumentException>(0, rowLossLength, (_, l) => loss.Evaluate(teacher, student, ReductionNamed(reduction), default, l), "rowLosses", message);
    }

    [Fact]
    public void Compute_ThrowsForRowLossBufferOverlappingTheGradientOrAnInput()
    {
        const int vocab = 5;
        int n = Rows * vocab;
        float[] arena = new float[4 * n];
        Logits(Rows, vocab).CopyTo(arena, 0);
        Logits(Rows, vocab, 3).CopyTo(arena, n);
        Array.Fill(arena, Sentinel, 2 * n, 2 * n);
        float[] before = arena.ToArray();
        var teacher = TeacherDistribution.FromLogits(arena.AsMemory(0, n), vocab);
        var student = StudentDistribution.FromLogits(arena.AsMemory(n, n), vocab);
        var loss = new DistillationLoss(Divergence.ForwardKL);

        Action overGradient = () => loss.Compute(teacher, student, arena.AsSpan(2 * n, n), Reduction.None, default, arena.AsSpan((3 * n) - 1, Rows));
        overGradient.Should().ThrowExactly<ArgumentException>().WithParameterName("rowLosses").WithMessage("*row-loss buffer overlaps the gradient buffer*");
        arena.ShouldBeBitIdentical(before, "a structural error writes nothing");

        Action overTeacher = () => loss.Compute(teacher, student, arena.AsSpan(2 * n, n), Reduction.Sum, default, arena.AsSpan(n - 1, Rows));
        overTeacher.Should().ThrowExactly<ArgumentException>().WithParameterName("rowLosses").WithMessage("*row-loss buffer overlaps an input buffer*");
        arena.ShouldBeBitIdentical(before, "a structural error writes nothing");

        Action overStudentWhenEvaluating = () => loss.Evaluate(teacher, student, Reduction.None, default, arena.AsSpan(2 * n - Rows, Rows));
        overStudentWhenEvaluating.Should().ThrowExactly<ArgumentException>().WithParameterName("rowLosses").WithMessage("*row-loss buffer overlaps an input buffer*");
        arena.ShouldBeBitIdentical(before, "a structural error writes nothing");
    }

    [Theory]
    [MemberData(nameof(FunctionalFormsData))]
    public void Losses_ThrowForReductionNone(string form)
    {
        const int vocab = 5;
        float[] teacher = Logits(Rows, vocab), student = Logits(Rows, vocab, 3);
        ExpectStructuralError<ArgumentException>(Rows * vocab, 0, (g, _) => CallFunctional(form, teacher, student, g, vocab, 1f, Reduction.None), "reduction", "*Reduction.None returns per-row values*");
    }

    // ------------------------------------------------------------------------------------------------------------
    // Invalid values: NaN, +∞, negative probabilities, bad sums, rows with no possible token
    // ------------------------------------------------------------------------------------------------------------

    /// <summary>Positions (V, row, column) covering the scalar path (V &lt; 8), full vectors and vector tails.</summary>
    private static readonly (int Vocab, int Row, int Column)[] Positions =
    [
        (5, 0, 0), (5, 2, 4), (7, 1, 6), (16, 2, 15), (17, 1, 16), (37, 0, 20), (37, 1, 33), (37, 2, 36),
        (1000, 0, 0), (1000, 1, 995), (1000, 2, 999),
    ];

    public static IEnumerable<object[]> InvalidValueCases()
    {
        foreach ((int vocab, int row, int column) in Positions)
        {
            foreach (float bad in new[] { float.NaN, float.PositiveInfinity })
            {
                foreach (DistributionKind kind in TeacherKinds)
                {
                    yield return [vocab, row, column, bad, "teacher", kind];
                }

                foreach (DistributionKind kind in StudentKinds)
                {
                    yield return [vocab, row, column, bad, "student", kind];
                }
            }
        }
    }

    [Theory]
    [MemberData(nameof(InvalidValueCases))]
    public void Compute_ReportsInvalidValueWithRowAndColumn(int vocab, int row, int column, float bad, string side, DistributionKind kind)
    {
        DistributionKind teacherKind = side == "teacher" ? kind : DistributionKind.Logits;
        DistributionKind studentKind = side == "student" ? kind : DistributionKind.Logits;
        float[] teacherValues = TeacherValues(teacherKind, Rows, vocab), studentValues = Logits(Rows, vocab, 3);
        (side == "teacher" ? teacherValues : studentValues)[(row * vocab) + column] = bad;
        var teacher = Teacher(teacherKind, teacherValues, vocab);
        var student = Student(studentKind, studentValues, vocab);
        string what = float.IsNaN(bad) ? "NaN" : "+∞";
        string message = side == "teacher"
            ? $"*The teacher {ValuesWord(kind)} at row {row}, column {column} is {what}*"
            : $"*The student * at row {row}, column {column} is {what}*";
        var loss = new DistillationLoss(Divergence.ForwardKL, 2f);

        Action compute = () => loss.Compute(teacher, student, new float[Rows * vocab]);
        Action evaluate = () => loss.Evaluate(teacher, student, Reduction.Sum);
        compute.Should().ThrowExactly<ArgumentException>().WithParameterName(side).WithMessage(message);
        evaluate.Should().ThrowExactly<ArgumentException>().WithParameterName(side).WithMessage(message);
    }

    public static IEnumerable<object[]> DivergenceIndices() => Enumerable.Range(0, TestSupport.AllDivergences.Length).Select(i => new object[] { i });

    [Theory]
    [MemberData(nameof(DivergenceIndices))]
    public void Compute_EveryDivergenceReportsInvalidValues(int divergenceIndex)
    {
        Divergence divergence = TestSupport.AllDivergences[divergenceIndex];
        var loss = new DistillationLoss(divergence, 1.5f);
        foreach ((int vocab, int row, int column) in Positions)
        {
            float[] teacherValues = Logits(Rows, vocab), studentValues = Logits(Rows, vocab, 3);
            teacherValues[(row * vocab) + column] = float.NaN;
            Action teacherBad = () => loss.Compute(TeacherDistribution.FromLogits(teacherValues, vocab), StudentDistribution.FromLogits(studentValues, vocab), new float[Rows * vocab]);
            teacherBad.Should().ThrowExactly<ArgumentException>($"{divergence} V={vocab}").WithParameterName("teacher")
                .WithMessage($"*teacher logits at row {row}, column {column} is NaN*");

            teacherValues[(row * vocab) + column] = 0.5f;
            studentValues[(row * vocab) + column] = float.PositiveInfinity;
            Action studentBad = () => loss.Compute(TeacherDistribution.FromLogits(teacherValues, vocab), StudentDistribution.FromLogits(studentValues, vocab), new float[Rows * vocab]);
            studentBad.Should().ThrowExactly<ArgumentException>($"{divergence} V={vocab}").WithParameterName("student")
                .WithMessage($"*student logits at row {row}, column {column} is +∞*");
        }
    }

    public static IEnumerable<object[]> PathsAndSides() =>
        from p in TestSupport.Paths
        from side in new[] { "teacher", "student" }
        select new object[] { p.ToString(), side };

    [Theory]
    [MemberData(nameof(PathsAndSides))]
    public void Compute_ReportsInvalidValuesOnEveryKernelPath(string pathName, string side)
    {
        KernelPath path = Enum.Parse<KernelPath>(pathName);
        var loss = new DistillationLoss(Divergence.ReverseKL) { MaxDegreeOfParallelism = 1 };
        foreach ((int vocab, int row, int column) in Positions)
        {
            foreach (float bad in new[] { float.NaN, float.PositiveInfinity })
            {
                float[] teacherValues = Logits(Rows, vocab), studentValues = Logits(Rows, vocab, 3);
                (side == "teacher" ? teacherValues : studentValues)[(row * vocab) + column] = bad;
                var teacher = TeacherDistribution.FromLogits(teacherValues, vocab);
                var student = StudentDistribution.FromLogits(studentValues, vocab);
                string message = $"*The {side} logits at row {row}, column {column} is {(float.IsNaN(bad) ? "NaN" : "+∞")}*";
                Action act = () => loss.ComputeCore(teacher, student, new float[Rows * vocab], true, Reduction.Sum, default, default, path);
                act.Should().ThrowExactly<ArgumentException>($"{path} V={vocab} ({row}, {column}) = {bad}").WithParameterName(side).WithMessage(message);
            }
        }
    }

    [Theory]
    [InlineData(5, 0, 0)]
    [InlineData(7, 2, 6)]
    [InlineData(37, 2, 36)]
    [InlineData(1000, 1, 993)]
    public void LanguageModelLoss_ReportsInvalidValueWithRowAndColumn(int vocab, int row, int column)
    {
        var loss = new LanguageModelLoss(0.1f);
        foreach (float bad in new[] { float.NaN, float.PositiveInfinity })
        {
            float[] values = Logits(Rows, vocab);
            values[(row * vocab) + column] = bad;
            var student = StudentDistribution.FromLogits(values, vocab);
            var labels = new TokenLabels(new[] { 0, 1, 2 });
            string message = $"*The student logits at row {row}, column {column} is {(float.IsNaN(bad) ? "NaN" : "+∞")}*";
            Action compute = () => loss.Compute(student, labels, new float[Rows * vocab]);
            Action evaluate = () => loss.Evaluate(student, labels);
            compute.Should().ThrowExactly<ArgumentException>().WithParameterName("student").WithMessage(message);
            evaluate.Should().ThrowExactly<ArgumentException>().WithParameterName("student").WithMessage(message);
        }
    }

    [Theory]
    [InlineData(5, 2, 4)]
    [InlineData(37, 1, 34)]
    [InlineData(1000, 2, 999)]
    public void Losses_ReportInvalidValueWithRowAndColumn(int vocab, int row, int column)
    {
        foreach (string form in FunctionalForms)
        {
            float[] teacher = Logits(Rows, vocab), student = Logits(Rows, vocab, 3);
            teacher[(row * vocab) + column] = float.PositiveInfinity;
            Action teacherBad = () => CallFunctional(form, teacher, student, new float[Rows * vocab], vocab);
            teacherBad.Should().ThrowExactly<ArgumentException>(form).WithParameterName("teacherLogits")
                .WithMessage($"*teacher logits at row {row}, column {column} is +∞*");

            teacher[(row * vocab) + column] = 0f;
            student[(row * vocab) + column] = float.NaN;
            Action studentBad = () => CallFunctional(form, teacher, student, new float[Rows * vocab], vocab);
            studentBad.Should().ThrowExactly<ArgumentException>(form).WithParameterName("studentLogits")
                .WithMessage($"*student logits at row {row}, column {column} is NaN*");
        }
    }

    [Theory]
    [InlineData(5, 1, 3)]
    [InlineData(7, 0, 0)]
    [InlineData(16, 2, 15)]
    [InlineData(37, 2, 36)]
    [InlineData(1000, 1, 997)]
    public void Compute_ReportsNegativeProbability(int vocab, int row, int column)
    {
        float[] probabilities = Probabilities(Rows, vocab);
        probabilities[(row * vocab) + column] = -0.25f;
        var teacher = TeacherDistribution.FromProbabilities(probabilities, vocab);
        var student = StudentDistribution.FromLogits(Logits(Rows, vocab, 3), vocab);
        var loss = new DistillationLoss(Divergence.ForwardKL);
        Action act = () => loss.Compute(teacher, student, new float[Rows * vocab]);
        act.Should().ThrowExactly<ArgumentException>()
            .WithParameterName("teacher")
            .WithMessage($"*teacher probabilities at row {row}, column {column} is negative (-0.25)*");
    }

    [Theory]
    [InlineData(5, 1, 0.9f)]
    [InlineData(7, 2, 1.1f)]
    [InlineData(16, 0, 0.9f)]
    [InlineData(37, 2, 0.9f)]
    [InlineData(1000, 1, 0.9f)]
    [InlineData(1000, 2, 1.01f)]
    public void Compute_ReportsProbabilityRowNotSummingToOne(int vocab, int row, float factor)
    {
        float[] probabilities = Probabilities(Rows, vocab);
        for (int j = 0; j < vocab; j++)
        {
            probabilities[(row * vocab) + j] *= factor;
        }

        var teacher = TeacherDistribution.FromProbabilities(probabilities, vocab);
        var student = StudentDistribution.FromLogits(Logits(Rows, vocab, 3), vocab);
        var loss = new DistillationLoss(Divergence.ForwardKL);
        Action act = () => loss.Compute(teacher, student, new float[Rows * vocab]);
        act.Should().ThrowExactly<ArgumentException>()
            .WithParameterName("teacher")
            .WithMessage($"*teacher probabilities of row {row} sum to {(factor < 1 ? "0." : "1.")}*, not 1 (tolerance 0.001)*");
    }

    [Theory]
    [InlineData(5, 1)]
    [InlineData(7, 0)]
    [InlineData(37, 2)]
    [InlineData(1000, 2)]
    public void Compute_ReportsAllZeroProbabilityRow(int vocab, int row)
    {
        float[] probabilities = Probabilities(Rows, vocab);
        Array.Clear(probabilities, row * vocab, vocab);
        var teacher = TeacherDistribution.FromProbabilities(probabilities, vocab);
        var student = StudentDistribution.FromLogits(Logits(Rows, vocab, 3), vocab);
        var loss = new DistillationLoss(Divergence.ReverseKL);
        Action act = () => loss.Compute(teacher, student, new float[Rows * vocab]);
        act.Should().ThrowExactly<ArgumentException>()
            .WithParameterName("teacher")
            .WithMessage($"*teacher probabilities of row {row} sum to 0, not 1*");
    }

    [Theory]
    [InlineData(5, 1.0009f)]
    [InlineData(37, 0.9991f)]
    [InlineData(1000, 1.0009f)]
    public void Compute_AcceptsProbabilityRowWithinTolerance(int vocab, float factor)
    {
        float[] probabilities = Probabilities(Rows, vocab);
        for (int j = 0; j < vocab; j++)
        {
            probabilities[vocab + j] *= factor;
        }

        var teacher = TeacherDistribution.FromProbabilities(probabilities, vocab);
        var student = StudentDistribution.FromLogits(Logits(Rows, vocab, 3), vocab);
        double value = new DistillationLoss(Divergence.ForwardKL).Evaluate(teacher, student).Value;
        double.IsFinite(value).Should().BeTrue();
    }

    public static IEnumerable<object[]> NoMassCases() =>
        from vocab in new[] { 1, 5, 7, 16, 37, 1000 }
        from side in new[] { "teacher logits", "teacher log-probabilities", "student logits", "student log-probabilities" }
        select new object[] { vocab, side };

    [Theory]
    [MemberData(nameof(NoMassCases))]
    public void Compute_ReportsRowWithNoPossibleToken(int vocab, string side)
    {
        const int row = 1;
        bool teacherSide = side.StartsWith("teacher", StringComparison.Ordinal);
        bool logProbabilities = side.EndsWith("log-probabilities", StringComparison.Ordinal);
        float[] teacherValues = Logits(Rows, vocab), studentValues = Logits(Rows, vocab, 3);
        Array.Fill(teacherSide ? teacherValues : studentValues, float.NegativeInfinity, row * vocab, vocab);
        var teacher = teacherSide && logProbabilities ? TeacherDistribution.FromLogProbabilities(teacherValues, vocab) : TeacherDistribution.FromLogits(teacherValues, vocab);
        var student = !teacherSide && logProbabilities ? StudentDistribution.FromLogProbabilities(studentValues, vocab) : StudentDistribution.FromLogits(studentValues, vocab);
        string who = teacherSide ? "teacher" : "student";
        foreach (Divergence divergence in new[] { Divergence.ForwardKL, Divergence.GeneralizedJsd(0.5), Divergence.TotalVariation })
        {
            var loss = new DistillationLoss(divergence);
            Action compute = () => loss.Compute(teacher, student, new float[Rows * vocab]);
            Action evaluate = () => loss.Evaluate(teacher, student);
            compute.Should().ThrowExactly<ArgumentException>($"{divergence}").WithParameterName(who)
                .WithMessage($"*The {who} row {row} has no possible token: every value is −∞*");
            evaluate.Should().ThrowExactly<ArgumentException>($"{divergence}").WithParameterName(who)
                .WithMessage($"*The {who} row {row} has no possible token*");
        }
    }

    [Theory]
    [InlineData(1)]
    [InlineData(5)]
    [InlineData(37)]
    [InlineData(1000)]
    public void LanguageModelLoss_ReportsRowWithNoPossibleToken(int vocab)
    {
        float[] values = Logits(Rows, vocab);
        Array.Fill(values, float.NegativeInfinity, 2 * vocab, vocab);
        var student = StudentDistribution.FromLogits(values, vocab);
        var labels = new TokenLabels(new[] { 0, 0, 0 });
        Action act = () => new LanguageModelLoss().Compute(student, labels, new float[Rows * vocab]);
        act.Should().ThrowExactly<ArgumentException>()
            .WithParameterName("student")
            .WithMessage("*The student row 2 has no possible token: every value is −∞*");
    }

    [Fact]
    public void Compute_ReportsTheLowestInvalidRowWhenRowsRunInParallel()
    {
        // 8 rows × 20 001 columns is enough elements for the driver to split the rows between two threads.
        const int rows = 8, vocab = 20_001;
        float[] teacherValues = Logits(rows, vocab), studentValues = Logits(rows, vocab, 3);
        var loss = new DistillationLoss(Divergence.ForwardKL) { MaxDegreeOfParallelism = 4 };
        var teacher = TeacherDistribution.FromLogits(teacherValues, vocab);
        var student = StudentDistribution.FromLogits(studentValues, vocab);

        teacherValues[(6 * vocab) + 20_000] = float.NaN;
        Action onlyLate = () => loss.Compute(teacher, student, new float[rows * vocab]);
        onlyLate.Should().ThrowExactly<ArgumentException>().WithParameterName("teacher").WithMessage("*teacher logits at row 6, column 20000 is NaN*");

        studentValues[(2 * vocab) + 5] = float.PositiveInfinity;
        Action both = () => loss.Compute(teacher, student, new float[rows * vocab]);
        both.Should().ThrowExactly<ArgumentException>().WithParameterName("student").WithMessage("*student logits at row 2, column 5 is +∞*");
    }

    // ------------------------------------------------------------------------------------------------------------
    // Valid edge inputs that must not throw
    // ------------------------------------------------------------------------------------------------------------

    public static IEnumerable<object[]> ReductionsData() => ReductionNames.Select(r => new object[] { r });

    [Theory]
    [MemberData(nameof(ReductionsData))]
    public void Compute_ZeroRowsGiveZeroForEveryReduction(string reductionName)
    {
        Reduction reduction = ReductionNamed(reductionName);
        var layouts = new (string Name, SequenceLayout? Layout)[]
        {
            ("none", null),
            ("Rectangular(0, 4)", SequenceLayout.Rectangular(0, 4)),
            ("Rectangular(3, 0)", SequenceLayout.Rectangular(3, 0)),
            ("FromOffsets([0])", SequenceLayout.FromOffsets([0])),
            ("FromLengths([0, 0])", SequenceLayout.FromLengths([0, 0])),
            ("Padded([], 3)", SequenceLayout.Padded([], 3)),
            ("Independent(0)", SequenceLayout.Independent(0)),
        };

        foreach ((string name, SequenceLayout? layout) in layouts)
        {
            foreach (DistributionKind kind in TeacherKinds)
            {
                foreach (Divergence divergence in TestSupport.AllDivergences)
                {
                    var teacher = Teacher(kind, [], 5, layout);
                    var student = StudentDistribution.FromLogits(Array.Empty<float>(), 5, layout);
                    var loss = new DistillationLoss(divergence, 2f, TemperatureScaling.Squared);
                    string because = $"{divergence}, {kind} teacher, layout {name}";
                    loss.Compute(teacher, student, Span<float>.Empty, reduction).Should().Be(new LossResult(0, 0, 0, 0), because);
                    loss.Evaluate(teacher, student, reduction).Should().Be(new LossResult(0, 0, 0, 0), because);
                }
            }
        }
    }

    [Theory]
    [MemberData(nameof(ReductionsData))]
    public void LanguageModelLoss_ZeroRowsGiveZeroForEveryReduction(string reductionName)
    {
        Reduction reduction = ReductionNamed(reductionName);
        var student = StudentDistribution.FromLogits(Array.Empty<float>(), 37, SequenceLayout.Rectangular(2, 0));
        var loss = new LanguageModelLoss(0.1f);
        loss.Compute(student, default, Span<float>.Empty, reduction).Should().Be(new LossResult(0, 0, 0, 0));
        loss.Compute(student, new TokenLabels(Array.Empty<int>()), Span<float>.Empty, reduction).Should().Be(new LossResult(0, 0, 0, 0));
        loss.Evaluate(student, default, reduction).Should().Be(new LossResult(0, 0, 0, 0));
    }

    [Theory]
    [MemberData(nameof(FunctionalFormsData))]
    public void Losses_ZeroRowsGiveZero(string form)
    {
        foreach (string reductionName in ReductionNames.Where(r => r != "None"))
        {
            float value = CallFunctional(form, [], [], [], 5, 2f, ReductionNamed(reductionName));
            value.Should().Be(0f, reductionName);
        }
    }

    public static IEnumerable<object[]> AllMaskedCases() =>
        from vocab in new[] { 5, 37, 1000 }
        from how in new[] { "mask", "padded", "labels", "mask and labels", "teacher layout only" }
        from reduction in ReductionNames
        select new object[] { vocab, how, reduction };

    [Theory]
    [MemberData(nameof(AllMaskedCases))]
    public void Compute_AllRowsMaskedGivesZeroAndAZeroGradient(int vocab, string how, string reductionName)
    {
        const int rows = 4;
        Reduction reduction = ReductionNamed(reductionName);
        SequenceLayout? layout = how switch
        {
            "mask" or "mask and labels" or "teacher layout only" => SequenceLayout.Rectangular(2, 2, new bool[rows]),
            "padded" => SequenceLayout.Padded([0, 0], 2),
            _ => null,
        };
        TokenLabels labels = how is "labels" or "mask and labels" ? new TokenLabels(Enumerable.Repeat(TokenLabels.DefaultIgnoreIndex, rows).ToArray()) : default;

        foreach (DistributionKind kind in TeacherKinds)
        {
            foreach (Divergence divergence in TestSupport.AllDivergences)
            {
                var teacher = Teacher(kind, TeacherValues(kind, rows, vocab), vocab, layout);
                var student = StudentDistribution.FromLogits(Logits(rows, vocab, 3), vocab, how == "teacher layout only" ? null : layout);
                var loss = new DistillationLoss(divergence, 2f, TemperatureScaling.Squared);
                float[] gradient = Filled(rows * vocab, Sentinel), rowLosses = Filled(rows, Sentinel);
                string because = $"{divergence}, {kind} teacher, {how}";

                LossResult result = loss.Compute(teacher, student, gradient, reduction, labels, rowLosses);
                result.Should().Be(new LossResult(0, 0, 0, 0), because);
                gradient.ShouldBeAllPositiveZero($"{because}: excluded rows get a zero gradient");
                rowLosses.ShouldBeAllPositiveZero($"{because}: excluded rows have value 0");

                Array.Fill(rowLosses, Sentinel);
                loss.Evaluate(teacher, student, reduction, labels, rowLosses).Should().Be(new LossResult(0, 0, 0, 0), because);
                rowLosses.ShouldBeAllPositiveZero($"{because}: excluded rows have value 0");
            }
        }
    }

    [Theory]
    [InlineData(5, "labels")]
    [InlineData(37, "mask")]
    [InlineData(1000, "padded")]
    public void LanguageModelLoss_AllRowsExcludedGivesZeroAndAZeroGradient(int vocab, string how)
    {
        const int rows = 4;
        SequenceLayout? layout = how switch
        {
            "mask" => SequenceLayout.Rectangular(1, rows, new bool[rows]),
            "padded" => SequenceLayout.Padded([0, 0, 0, 0], 1),
            _ => null,
        };
        int[] ids = how == "labels" ? Enumerable.Repeat(-1, rows).ToArray() : [0, 1, 2, 3];
        var labels = new TokenLabels(ids, ignoreIndex: -1);
        var student = StudentDistribution.FromLogits(Logits(rows, vocab), vocab, layout);
        foreach (string reductionName in ReductionNames)
        {
            float[] gradient = Filled(rows * vocab, Sentinel), rowLosses = Filled(rows, Sentinel);
            new LanguageModelLoss(0.2f).Compute(student, labels, gradient, ReductionNamed(reductionName), rowLosses)
                .Should().Be(new LossResult(0, 0, 0, 0), reductionName);
            gradient.ShouldBeAllPositiveZero(reductionName);
            rowLosses.ShouldBeAllPositiveZero(reductionName);
        }
    }

    public static IEnumerable<object[]> MaskedGarbageCases() =>
        from vocab in new[] { 5, 37, 1000 }
        from kind in TeacherKinds
        from how in new[] { "mask", "labels", "teacher layout only" }
        select new object[] { vocab, kind, how };

    [Theory]
    [MemberData(nameof(MaskedGarbageCases))]
    public void Compute_NeverReadsMaskedOrIgnoredRows(int vocab, DistributionKind kind, string how)
    {
        const int rows = 4;
        float[] teacherValues = TeacherValues(kind, rows, vocab), studentValues = Logits(rows, vocab, 3);
        float[] cleanTeacher = new float[2 * vocab], cleanStudent = new float[2 * vocab];
        Array.Copy(teacherValues, 0, cleanTeacher, 0, vocab);
        Array.Copy(teacherValues, 2 * vocab, cleanTeacher, vocab, vocab);
        Array.Copy(studentValues, 0, cleanStudent, 0, vocab);
        Array.Copy(studentValues, 2 * vocab, cleanStudent, vocab, vocab);

        // Rows 1 and 3 are excluded and hold every kind of invalid value.
        Array.Fill(teacherValues, float.NaN, vocab, vocab);
        Array.Fill(studentValues, float.PositiveInfinity, vocab, vocab);
        Array.Fill(teacherValues, kind == DistributionKind.Probabilities ? -1f : float.NegativeInfinity, 3 * vocab, vocab);
        Array.Fill(studentValues, float.NegativeInfinity, 3 * vocab, vocab);
        studentValues[(3 * vocab) + vocab - 1] = float.NaN;

        SequenceLayout? layout = how == "labels" ? null : SequenceLayout.Rectangular(2, 2, new[] { true, false, true, false });
        TokenLabels labels = how == "labels" ? new TokenLabels(new[] { 0, TokenLabels.DefaultIgnoreIndex, vocab - 1, TokenLabels.DefaultIgnoreIndex }) : default;

        foreach (Divergence divergence in TestSupport.AllDivergences)
        {
            var loss = new DistillationLoss(divergence, 2f) { MaxDegreeOfParallelism = 1 };
            var teacher = Teacher(kind, teacherValues, vocab, layout);
            var student = StudentDistribution.FromLogits(studentValues, vocab, how == "teacher layout only" ? null : layout);
            float[] gradient = Filled(rows * vocab, Sentinel), rowLosses = Filled(rows, Sentinel);
            string because = $"{divergence}, {kind} teacher, {how}";

            LossResult result = loss.Compute(teacher, student, gradient, Reduction.MeanOverTokens, labels, rowLosses);
            float[] cleanGradient = new float[2 * vocab];
            LossResult clean = loss.Compute(Teacher(kind, cleanTeacher, vocab), StudentDistribution.FromLogits(cleanStudent, vocab), cleanGradient);

            result.TokenCount.Should().Be(2, because);
            double.IsFinite(result.Value).Should().BeTrue(because);
            result.Value.Should().BeApproximately(clean.Value, 1e-6 * Math.Max(1, Math.Abs(clean.Value)), because);
            rowLosses[1].Should().Be(0f, because);
            rowLosses[3].Should().Be(0f, because);
            gradient.AsSpan(vocab, vocab).ToArray().ShouldBeAllPositiveZero($"{because}: row 1");
            gradient.AsSpan(3 * vocab, vocab).ToArray().ShouldBeAllPositiveZero($"{because}: row 3");
            for (int j = 0; j < vocab; j++)
            {
                gradient[j].Should().BeApproximately(cleanGradient[j], 1e-6f, because);
                gradient[(2 * vocab) + j].Should().BeApproximately(cleanGradient[vocab + j], 1e-6f, because);
            }

            loss.Evaluate(teacher, student, Reduction.Sum, labels).TokenCount.Should().Be(2, because);
        }
    }

    [Theory]
    [InlineData(5)]
    [InlineData(1000)]
    public void LanguageModelLoss_NeverReadsIgnoredRows(int vocab)
    {
        const int rows = 3;
        float[] values = Logits(rows, vocab);
        Array.Fill(values, float.NaN, vocab, vocab);
        Array.Fill(values, float.NegativeInfinity, 2 * vocab, vocab);
        var student = StudentDistribution.FromLogits(values, vocab, SequenceLayout.Rectangular(1, 3, new[] { true, true, false }));
        var labels = new TokenLabels(new[] { 1, TokenLabels.DefaultIgnoreIndex, 0 });
        float[] gradient = Filled(rows * vocab, Sentinel);
        LossResult result = new LanguageModelLoss(0.1f).Compute(student, labels, gradient);
        result.TokenCount.Should().Be(1);
        double.IsFinite(result.Value).Should().BeTrue();
        gradient.Skip(vocab).ToArray().ShouldBeAllPositiveZero("excluded rows get a zero gradient");
    }

    public static IEnumerable<object[]> InfiniteLossCases() =>
        from vocab in new[] { 5, 7, 16, 37, 1000 }
        from divergence in new[] { "ForwardKL", "SoftCrossEntropy", "ReverseKL", "GeneralizedJsd(0)", "GeneralizedJsd(1)", "SkewKL(0)", "SkewReverseKL(0)" }
        select new object[] { vocab, divergence };

    [Theory]
    [MemberData(nameof(InfiniteLossCases))]
    public void Compute_InfiniteLossHasAFiniteGradient(int vocab, string divergenceName)
    {
        Divergence divergence = divergenceName switch
        {
            "ForwardKL" => Divergence.ForwardKL,
            "SoftCrossEntropy" => Divergence.SoftCrossEntropy,
            "ReverseKL" => Divergence.ReverseKL,
            "GeneralizedJsd(0)" => Divergence.GeneralizedJsd(0),
            "GeneralizedJsd(1)" => Divergence.GeneralizedJsd(1),
            "SkewKL(0)" => Divergence.SkewKL(0),
            _ => Divergence.SkewReverseKL(0),
        };

        // Forward-type divergences are +∞ where the teacher has mass and the student none; reverse-type ones the other way round.
        bool reverse = divergenceName is "ReverseKL" or "GeneralizedJsd(1)" or "SkewReverseKL(0)";
        const int rows = 2, column = 3;
        float[] teacherValues = Logits(rows, vocab), studentValues = Logits(rows, vocab, 3);
        (reverse ? teacherValues : studentValues)[column] = float.NegativeInfinity;
        var teacher = TeacherDistribution.FromLogits(teacherValues, vocab);
        var student = StudentDistribution.FromLogits(studentValues, vocab);
        var loss = new DistillationLoss(divergence, 2f);

        float[] gradient = Filled(rows * vocab, Sentinel), rowLosses = Filled(rows, Sentinel);
        LossResult result = loss.Compute(teacher, student, gradient, Reduction.MeanOverTokens, default, rowLosses);
        result.Value.Should().Be(double.PositiveInfinity);
        result.Sum.Should().Be(double.PositiveInfinity);
        result.TokenCount.Should().Be(rows);
        rowLosses[0].Should().Be(float.PositiveInfinity);
        float.IsFinite(rowLosses[1]).Should().BeTrue();
        gradient.Should().OnlyContain(g => float.IsFinite(g), "an infinite row gets the finite gradient (q − p)/T");
        gradient.Take(vocab).Sum().Should().BeApproximately(0f, 1e-5f, "a softmax gradient row sums to 0");
        loss.Evaluate(teacher, student, Reduction.Sum).Value.Should().Be(double.PositiveInfinity);
    }

    [Theory]
    [InlineData(5)]
    [InlineData(37)]
    [InlineData(1000)]
    public void Losses_ForwardKL_ReturnsInfinityWithAFiniteGradient(int vocab)
    {
        float[] teacher = Logits(Rows, vocab), student = Logits(Rows, vocab, 3);
        student[(2 * vocab) + vocab - 1] = float.NegativeInfinity;
        float[] gradient = Filled(Rows * vocab, Sentinel);
        Losses.ForwardKL(teacher, student, gradient, vocab).Should().Be(float.PositiveInfinity);
        gradient.Should().OnlyContain(g => float.IsFinite(g));
    }

    [Theory]
    [InlineData(5, 0f)]
    [InlineData(37, 0f)]
    [InlineData(1000, 0.1f)]
    public void LanguageModelLoss_MinusInfinityLabelLogitGivesInfiniteLossAndAFiniteGradient(int vocab, float smoothing)
    {
        float[] values = Logits(Rows, vocab);
        values[vocab + 2] = float.NegativeInfinity;
        var student = StudentDistribution.FromLogits(values, vocab);
        float[] gradient = Filled(Rows * vocab, Sentinel), rowLosses = Filled(Rows, Sentinel);
        LossResult result = new LanguageModelLoss(smoothing).Compute(student, new TokenLabels(new[] { 0, 2, 1 }), gradient, Reduction.None, rowLosses);
        result.Value.Should().Be(double.PositiveInfinity);
        rowLosses[1].Should().Be(float.PositiveInfinity);
        float.IsFinite(rowLosses[0]).Should().BeTrue();
        gradient.Should().OnlyContain(g => float.IsFinite(g));
    }

    [Fact]
    public void Compute_VocabularyOfOneGivesZero()
    {
        float[] teacher = [3f, -1f, 0.5f], student = [7f, 2f, -4f];
        foreach (Divergence divergence in TestSupport.AllDivergences.Where(d => d.IsDivergence))
        {
            float[] gradient = Filled(3, Sentinel);
            LossResult result = new DistillationLoss(divergence).Compute(TeacherDistribution.FromLogits(teacher, 1), StudentDistribution.FromLogits(student, 1), gradient, Reduction.Sum);
            result.Value.Should().Be(0, $"{divergence}");
            gradient.Should().OnlyContain(g => g == 0f, $"{divergence}");
        }
    }

    /// <summary>
    /// The smallest and largest accepted temperatures compute on valid inputs as the scalar reference does (below
    /// 1e-6 logits ÷ T would overflow float32 in the fused kernels, so such temperatures are rejected up front).
    /// </summary>
    [Theory]
    [InlineData(37, 1e-6f)]
    [InlineData(1000, 1e-6f)]
    [InlineData(37, 1e6f)]
    [InlineData(1000, 1e6f)]
    public void Compute_ExtremeAcceptedTemperaturesMatchTheReference(int vocab, float temperature)
    {
        var loss = new DistillationLoss(Divergence.ForwardKL, temperature) { MaxDegreeOfParallelism = 1 };
        var teacher = TeacherDistribution.FromLogits(Logits(Rows, vocab), vocab);
        var student = StudentDistribution.FromLogits(Logits(Rows, vocab, 3), vocab);
        LossResult reference = loss.ComputeCore(teacher, student, new float[Rows * vocab], true, Reduction.Sum, default, default, KernelPath.Scalar);
        LossResult result = loss.Compute(teacher, student, new float[Rows * vocab], Reduction.Sum);
        double.IsFinite(reference.Value).Should().BeTrue();
        ReferenceValueTests.AssertValue(result.Value, reference.Value, $"T = {temperature}: the fused path against the scalar reference");
    }

    // ------------------------------------------------------------------------------------------------------------
    // Helpers
    // ------------------------------------------------------------------------------------------------------------

    /// <summary>
    /// Calls <paramref name="call"/> with a gradient and a row-loss buffer pre-filled with <see cref="InputBuilders.Sentinel"/>,
    /// asserts the exact exception, and that neither buffer was written (a structural error writes nothing).
    /// </summary>
    private static void ExpectStructuralError<TException>(int gradientLength, int rowLossLength, Action<float[], float[]> call, string paramName, string message, string? because = null)
        where TException : ArgumentException
    {
        float[] gradient = Filled(gradientLength, Sentinel), rowLosses = Filled(rowLossLength, Sentinel);
        Action act = () => call(gradient, rowLosses);
        act.Should().ThrowExactly<TException>(because ?? string.Empty).WithParameterName(paramName).WithMessage(message);
        gradient.ShouldBeUntouched($"{because} a structural error writes nothing to the gradient");
        rowLosses.ShouldBeUntouched($"{because} a structural error writes nothing to the row losses");
    }
}

/// <summary>Builders and bit-exact comparisons shared by the bad-input and non-mutation tests.</summary>
internal static class InputBuilders
{
    /// <summary>What output buffers are pre-filled with, to prove whether a call wrote to them.</summary>
    public const float Sentinel = 123f;

    public static readonly DistributionKind[] TeacherKinds = [DistributionKind.Logits, DistributionKind.LogProbabilities, DistributionKind.Probabilities];

    public static readonly DistributionKind[] StudentKinds = [DistributionKind.Logits, DistributionKind.LogProbabilities];

    public static readonly string[] ReductionNames = ["None", "Sum", "MeanOverTokens", "MeanOverSequences", "SumDividedBy"];

    public static Reduction ReductionNamed(string name) => name switch
    {
        "None" => Reduction.None,
        "Sum" => Reduction.Sum,
        "MeanOverTokens" => Reduction.MeanOverTokens,
        "MeanOverSequences" => Reduction.MeanOverSequences,
        "SumDividedBy" => Reduction.SumDividedBy(3.5),
        _ => throw new ArgumentOutOfRangeException(nameof(name), name, "Unknown reduction."),
    };

    /// <summary>Random logits, normal(0, 3), from a fixed seed.</summary>
    public static float[] Logits(int rows, int vocab, int seed = 7) => TestSupport.RandomLogits(new Random(seed), rows * vocab);

    /// <summary>Rows of probabilities (a softmax of random logits, computed in double).</summary>
    public static float[] Probabilities(int rows, int vocab, int seed = 11)
    {
        float[] logits = Logits(rows, vocab, seed);
        var p = new float[logits.Length];
        for (int r = 0; r < rows; r++)
        {
            double[] row = ReferenceValueTests.Softmax(logits.AsSpan(r * vocab, vocab), 1.0);
            for (int j = 0; j < vocab; j++)
            {
                p[(r * vocab) + j] = (float)row[j];
            }
        }

        return p;
    }

    /// <summary>Valid teacher values of the given kind.</summary>
    public static float[] TeacherValues(DistributionKind kind, int rows, int vocab, int seed = 11) =>
        kind == DistributionKind.Probabilities ? Probabilities(rows, vocab, seed) : Logits(rows, vocab, seed);

    public static TeacherDistribution Teacher(DistributionKind kind, float[] values, int vocab, SequenceLayout? layout = null) => kind switch
    {
        DistributionKind.Logits => TeacherDistribution.FromLogits(values, vocab, layout),
        DistributionKind.LogProbabilities => TeacherDistribution.FromLogProbabilities(values, vocab, layout),
        DistributionKind.Probabilities => TeacherDistribution.FromProbabilities(values, vocab, layout),
        _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, "Unknown kind."),
    };

    public static StudentDistribution Student(DistributionKind kind, float[] values, int vocab, SequenceLayout? layout = null) => kind switch
    {
        DistributionKind.Logits => StudentDistribution.FromLogits(values, vocab, layout),
        DistributionKind.LogProbabilities => StudentDistribution.FromLogProbabilities(values, vocab, layout),
        _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, "A student is logits or log-probabilities."),
    };

    /// <summary>The word the library's messages use for a teacher of this kind.</summary>
    public static string ValuesWord(DistributionKind kind) => kind switch
    {
        DistributionKind.Probabilities => "probabilities",
        DistributionKind.LogProbabilities => "log-probabilities",
        _ => "logits",
    };

    public static float[] Filled(int length, float value)
    {
        var a = new float[length];
        Array.Fill(a, value);
        return a;
    }

    public static void ShouldBeBitIdentical(this float[] actual, float[] expected, string because)
    {
        actual.Length.Should().Be(expected.Length, because);
        int first = -1;
        for (int i = 0; i < actual.Length; i++)
        {
            if (BitConverter.SingleToInt32Bits(actual[i]) != BitConverter.SingleToInt32Bits(expected[i]))
            {
                first = i;
                break;
            }
        }

        first.Should().Be(-1, $"{because} (first difference at index {first}: {(first >= 0 ? actual[first] : 0)} instead of {(first >= 0 ? expected[first] : 0)})");
    }

    public static void ShouldBeBitIdentical<T>(this T[] actual, T[] expected, string because)
        where T : IEquatable<T>
    {
        actual.Length.Should().Be(expected.Length, because);
        int first = -1;
        for (int i = 0; i < actual.Length; i++)
        {
            if (!actual[i].Equals(expected[i]))
            {
                first = i;
                break;
            }
        }

        first.Should().Be(-1, because);
    }

    /// <summary>Every entry is +0.0 exactly (the bit pattern of a cleared float).</summary>
    public static void ShouldBeAllPositiveZero(this float[] actual, string because)
    {
        int first = Array.FindIndex(actual, x => BitConverter.SingleToInt32Bits(x) != 0);
        first.Should().Be(-1, $"{because} (index {first} holds {(first >= 0 ? actual[first] : 0)})");
    }

    /// <summary>Every entry still holds <see cref="Sentinel"/>.</summary>
    public static void ShouldBeUntouched(this float[] actual, string because)
    {
        int first = Array.FindIndex(actual, x => BitConverter.SingleToInt32Bits(x) != BitConverter.SingleToInt32Bits(Sentinel));
        first.Should().Be(-1, $"{because} (index {first} holds {(first >= 0 ? actual[first] : 0)})");
    }
}
