using static Distillation.Tests.InputBuilders;

namespace Distillation.Tests;

/// <summary>
/// Inputs are never overwritten: teacher, student, labels and padding mask are bit-identical after every call,
/// for every divergence, every kind of teacher, the hard-label loss and the functional forms, on the scalar path
/// (V &lt; 8), vector paths with tails, and a large V whose batch runs on several threads; after errors too.
/// </summary>
public class NonMutationTests
{
    public static IEnumerable<object[]> DivergenceKindVocab() =>
        from d in Enumerable.Range(0, TestSupport.AllDivergences.Length)
        from kind in TeacherKinds
        from vocab in new[] { 5, 37, 5000 }
        select new object[] { d, kind, vocab };

    [Theory]
    [MemberData(nameof(DivergenceKindVocab))]
    public void Divergences_NeverMutateInputs(int divergenceIndex, DistributionKind teacherKind, int vocab)
    {
        Divergence divergence = TestSupport.AllDivergences[divergenceIndex];

        // 32 rows of V = 5000 are enough elements for the driver to use more than one thread.
        int rows = vocab >= 1000 ? 32 : 6;
        (float[] teacherValues, float[] studentValues, int[] ids, bool[] mask) = Batch(teacherKind, rows, vocab);
        float[] teacherCopy = teacherValues.ToArray(), studentCopy = studentValues.ToArray();
        int[] idsCopy = ids.ToArray();
        bool[] maskCopy = mask.ToArray();
        SequenceLayout layout = SequenceLayout.Rectangular(rows / 2, 2, mask);
        var labels = new TokenLabels(ids);
        var loss = new DistillationLoss(divergence, 2f, TemperatureScaling.Squared) { MaxDegreeOfParallelism = 2 };

        foreach (DistributionKind studentKind in StudentKinds)
        {
            var teacher = Teacher(teacherKind, teacherValues, vocab, layout);
            var student = Student(studentKind, studentValues, vocab, layout);
            loss.Compute(teacher, student, new float[rows * vocab], Reduction.None, labels, new float[rows]);
            loss.Compute(teacher, student, new float[rows * vocab], Reduction.MeanOverSequences);
            loss.Evaluate(teacher, student, Reduction.Sum, labels, new float[rows]);
            loss.Evaluate(teacher, student, Reduction.SumDividedBy(7));

            string because = $"{divergence}, {teacherKind} teacher, {studentKind} student, V = {vocab}";
            teacherValues.ShouldBeBitIdentical(teacherCopy, $"{because}: the teacher is an input");
            studentValues.ShouldBeBitIdentical(studentCopy, $"{because}: the student is an input");
            ids.ShouldBeBitIdentical(idsCopy, $"{because}: the labels are an input");
            mask.ShouldBeBitIdentical(maskCopy, $"{because}: the padding mask is an input");
        }
    }

    public static IEnumerable<object[]> SmoothingVocab() =>
        from smoothing in new[] { 0f, 0.1f, 1f }
        from vocab in new[] { 5, 37, 5000 }
        select new object[] { smoothing, vocab };

    [Theory]
    [MemberData(nameof(SmoothingVocab))]
    public void LanguageModelLoss_NeverMutatesInputs(float smoothing, int vocab)
    {
        int rows = vocab >= 1000 ? 32 : 6;
        (_, float[] studentValues, int[] ids, bool[] mask) = Batch(DistributionKind.Logits, rows, vocab);
        float[] studentCopy = studentValues.ToArray();
        int[] idsCopy = ids.ToArray();
        bool[] maskCopy = mask.ToArray();
        SequenceLayout layout = SequenceLayout.Rectangular(rows / 2, 2, mask);
        var labels = new TokenLabels(ids);
        var loss = new LanguageModelLoss(smoothing) { MaxDegreeOfParallelism = 2 };

        foreach (DistributionKind studentKind in StudentKinds)
        {
            var student = Student(studentKind, studentValues, vocab, layout);
            loss.Compute(student, labels, new float[rows * vocab], Reduction.None, new float[rows]);
            loss.Compute(student, labels, new float[rows * vocab], Reduction.MeanOverTokens);
            loss.Evaluate(student, labels, Reduction.Sum, new float[rows]);

            string because = $"smoothing {smoothing}, {studentKind} student, V = {vocab}";
            studentValues.ShouldBeBitIdentical(studentCopy, $"{because}: the student is an input");
            ids.ShouldBeBitIdentical(idsCopy, $"{because}: the labels are an input");
            mask.ShouldBeBitIdentical(maskCopy, $"{because}: the padding mask is an input");
        }
    }

    [Theory]
    [InlineData(5)]
    [InlineData(37)]
    [InlineData(5000)]
    public void Losses_NeverMutateInputs(int vocab)
    {
        const int rows = 4;
        float[] teacher = Logits(rows, vocab), student = Logits(rows, vocab, 3);
        teacher[1] = float.NegativeInfinity;
        student[vocab + 2] = float.NegativeInfinity;
        float[] teacherCopy = teacher.ToArray(), studentCopy = student.ToArray();

        Losses.ForwardKL(teacher, student, new float[rows * vocab], vocab, 2f);
        Losses.ReverseKL(teacher, student, new float[rows * vocab], vocab, 2f, Reduction.Sum);
        Losses.SoftCrossEntropy(teacher, student, new float[rows * vocab], vocab, 0.5f);
        Losses.TotalVariation(teacher, student, new float[rows * vocab], vocab);
        Losses.GeneralizedJsd(0.3, teacher, student, new float[rows * vocab], vocab, 3f, Reduction.SumDividedBy(2));
        foreach (Divergence divergence in TestSupport.AllDivergences)
        {
            Losses.Compute(divergence, teacher, student, new float[rows * vocab], vocab, 1.5f, Reduction.MeanOverSequences);
        }

        teacher.ShouldBeBitIdentical(teacherCopy, "the teacher logits are an input");
        student.ShouldBeBitIdentical(studentCopy, "the student logits are an input");
    }

    [Theory]
    [InlineData(5)]
    [InlineData(37)]
    [InlineData(5000)]
    public void FailedCalls_NeverMutateInputs(int vocab)
    {
        const int rows = 4;
        foreach (DistributionKind kind in TeacherKinds)
        {
            float[] teacherValues = TeacherValues(kind, rows, vocab), studentValues = Logits(rows, vocab, 3);
            int[] ids = [0, 1, 2, TokenLabels.DefaultIgnoreIndex];
            bool[] mask = [true, true, true, false];

            // Row 2 is real and its last teacher value is invalid: the call fails after the rows before it were
            // computed. Row 3 is padding full of NaN.
            teacherValues[(3 * vocab) - 1] = float.NaN;
            Array.Fill(teacherValues, float.NaN, 3 * vocab, vocab);
            Array.Fill(studentValues, float.NaN, 3 * vocab, vocab);
            float[] teacherCopy = teacherValues.ToArray(), studentCopy = studentValues.ToArray();
            int[] idsCopy = ids.ToArray();
            bool[] maskCopy = mask.ToArray();
            SequenceLayout layout = SequenceLayout.Rectangular(2, 2, mask);
            var teacher = Teacher(kind, teacherValues, vocab, layout);
            var student = StudentDistribution.FromLogits(studentValues, vocab, layout);

            foreach (Divergence divergence in TestSupport.AllDivergences)
            {
                var loss = new DistillationLoss(divergence);
                Action compute = () => loss.Compute(teacher, student, new float[rows * vocab], Reduction.None, new TokenLabels(ids), new float[rows]);
                Action evaluate = () => loss.Evaluate(teacher, student, Reduction.Sum, new TokenLabels(ids));
                Action wrongGradient = () => loss.Compute(teacher, student, new float[(rows * vocab) - 1]);
                compute.Should().ThrowExactly<ArgumentException>().WithParameterName("teacher").WithMessage($"*row 2, column {vocab - 1} is NaN*");
                evaluate.Should().ThrowExactly<ArgumentException>().WithParameterName("teacher").WithMessage($"*row 2, column {vocab - 1} is NaN*");
                wrongGradient.Should().ThrowExactly<ArgumentException>().WithParameterName("studentGradient");
            }

            string because = $"{kind} teacher, V = {vocab}, after failed calls";
            teacherValues.ShouldBeBitIdentical(teacherCopy, because);
            studentValues.ShouldBeBitIdentical(studentCopy, because);
            ids.ShouldBeBitIdentical(idsCopy, because);
            mask.ShouldBeBitIdentical(maskCopy, because);
        }
    }

    [Theory]
    [InlineData(5)]
    [InlineData(5000)]
    public void Compute_AcceptsTeacherAndStudentSharingOneBuffer(int vocab)
    {
        const int rows = 3;
        float[] shared = Logits(rows, vocab);
        float[] copy = shared.ToArray();
        foreach (Divergence divergence in TestSupport.AllDivergences.Where(d => d.IsDivergence))
        {
            float[] gradient = Filled(rows * vocab, Sentinel);
            LossResult result = new DistillationLoss(divergence, 2f).Compute(TeacherDistribution.FromLogits(shared, vocab), StudentDistribution.FromLogits(shared, vocab), gradient);
            result.Value.Should().BeApproximately(0, 1e-6, $"{divergence} of a distribution with itself");
            gradient.Should().OnlyContain(g => Math.Abs(g) <= 1e-6f, $"{divergence} is stationary at q = p");
        }

        shared.ShouldBeBitIdentical(copy, "a buffer shared by teacher and student is still only read");
    }

    /// <summary>
    /// A batch with an impossible token on each side, one padded row holding NaN, and one row whose label is ignored.
    /// </summary>
    private static (float[] Teacher, float[] Student, int[] Ids, bool[] Mask) Batch(DistributionKind teacherKind, int rows, int vocab)
    {
        float[] teacher = TeacherValues(teacherKind, rows, vocab), student = Logits(rows, vocab, 3);
        if (teacherKind == DistributionKind.Probabilities)
        {
            teacher[1] += teacher[0];
            teacher[0] = 0f;
        }
        else
        {
            teacher[0] = float.NegativeInfinity;
        }

        student[vocab + 1] = float.NegativeInfinity;
        Array.Fill(teacher, float.NaN, 2 * vocab, vocab);
        Array.Fill(student, float.NaN, 2 * vocab, vocab);
        student[(rows * vocab) - 1] = -0f;
        int[] ids = Enumerable.Range(0, rows).Select(r => (r * 7) % vocab).ToArray();
        ids[rows - 1] = TokenLabels.DefaultIgnoreIndex;
        bool[] mask = Enumerable.Repeat(true, rows).ToArray();
        mask[2] = false;
        return (teacher, student, ids, mask);
    }
}
