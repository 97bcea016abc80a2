namespace Distillation.Tests;

/// <summary>Teacher and student vocabularies of different sizes: padding and explicit maps, dense and top-k.</summary>
public class VocabularyMappingTests
{
    [Fact]
    public void Padded_TopK_152064To151936_MapsIdsAndRejectsMassOnPadding()
    {
        const int vt = 152064, vs = 151936, k = 4;
        int[] ids = [5, 151935, 100, 7, /* row 1 uses a padding id */ 1, 2, 152000, 3];
        float[] logp = [-1f, -2f, -3f, -4f, -1f, -2f, -3f, -4f];
        var teacher = TopKTeacherDistribution.FromLogProbabilities(ids, logp, k, vt, ResidualMassPolicy.RestBucket);
        FluentActions.Invoking(() => VocabularyMapping.Padded(vt, vs).Map(teacher)).Should().ThrowExactly<ArgumentException>()
            .WithParameterName("teacher").WithMessage("*Row 1 puts probability 0.0497871 on teacher tokens with no student id (the first is 152000)*Drop*");

        TopKTeacherDistribution dropped = VocabularyMapping.Padded(vt, vs, UnmappedTeacherTokens.Drop).Map(teacher);
        dropped.VocabularySize.Should().Be(vs);
        dropped.Ids.ToArray().Should().Equal(5, 151935, 100, 7, 1, 2, -1, 3);
        dropped.LogProbabilities.Span[6].Should().Be(float.NegativeInfinity);
        dropped.Residual.Should().Be(ResidualMassPolicy.RestBucket);

        // The dropped mass joins the rest bucket: the same as a teacher that never kept that token.
        float[] student = TestSupport.RandomLogits(new Random(1), 2 * vs);
        var expected = TopKTeacherDistribution.FromLogProbabilities(new[] { 5, 151935, 100, 7, 1, 2, -1, 3 }, new[] { -1f, -2f, -3f, -4f, -1f, -2f, float.NegativeInfinity, -4f }, k, vs, ResidualMassPolicy.RestBucket);
        var loss = new DistillationLoss(Divergence.ForwardKL, 2f);
        loss.Evaluate(dropped, StudentDistribution.FromLogits(student, vs)).Should().Be(loss.Evaluate(expected, StudentDistribution.FromLogits(student, vs)));

        // A teacher with no mass on its padding ids maps under Reject.
        int[] clean = [5, 151935, 100, 7, 1, 2, 152000, 3];
        float[] none = [-1f, -2f, -3f, -4f, -1f, -2f, float.NegativeInfinity, -4f];
        VocabularyMapping.Padded(vt, vs).Map(TopKTeacherDistribution.FromLogProbabilities(clean, none, k, vt, ResidualMassPolicy.Renormalize)).Ids.Span[6].Should().Be(-1);
    }

    [Fact]
    public void Padded_Dense_TeacherLonger_DropsOrRejectsTheExtraColumns()
    {
        const int vt = 40, vs = 32, rows = 3;
        var random = new Random(2);
        float[] teacher = TestSupport.RandomLogits(random, rows * vt);
        float[] student = TestSupport.RandomLogits(random, rows * vs);
        float[] truncated = Enumerable.Range(0, rows).SelectMany(r => teacher.Skip(r * vt).Take(vs)).ToArray();
        var loss = new DistillationLoss(Divergence.GeneralizedJsd(0.5), 1.5f);
        float[] g1 = new float[student.Length], g2 = new float[student.Length];

        float[] mapped = new float[rows * vs];
        FluentActions.Invoking(() => VocabularyMapping.Padded(vt, vs).Map(TeacherDistribution.FromLogits(teacher, vt), mapped))
            .Should().ThrowExactly<ArgumentException>().WithMessage("*Row 0 puts probability*no student id (the first is 32)*");
        TeacherDistribution dropped = VocabularyMapping.Padded(vt, vs, UnmappedTeacherTokens.Drop).Map(TeacherDistribution.FromLogits(teacher, vt), mapped);
        LossResult a = loss.Compute(dropped, StudentDistribution.FromLogits(student, vs), g1);
        LossResult b = loss.Compute(TeacherDistribution.FromLogits(truncated, vs), StudentDistribution.FromLogits(student, vs), g2);
        a.Should().Be(b);
        g1.Should().Equal(g2);

        // Padding columns at −∞ carry no mass: Reject accepts them.
        for (int r = 0; r < rows; r++)
        {
            teacher.AsSpan((r * vt) + vs, vt - vs).Fill(float.NegativeInfinity);
        }

        VocabularyMapping.Padded(vt, vs).Map(TeacherDistribution.FromLogits(teacher, vt), mapped);
        loss.Compute(TeacherDistribution.FromLogits(mapped, vs), StudentDistribution.FromLogits(student, vs), g1).Should().Be(b);
    }

    [Fact]
    public void Padded_Dense_StudentLonger_GivesTheTeacherNoMassOnTheExtraIds()
    {
        const int vt = 30, vs = 36, rows = 2;
        var random = new Random(3);
        float[] teacherProbabilities = Enumerable.Range(0, rows).SelectMany(_ =>
        {
            double[] w = Enumerable.Range(0, vt).Select(_ => random.NextDouble()).ToArray();
            return w.Select(x => (float)(x / w.Sum()));
        }).ToArray();
        float[] student = TestSupport.RandomLogits(random, rows * vs);
        float[] mapped = new float[rows * vs];
        TeacherDistribution t = VocabularyMapping.Padded(vt, vs).Map(TeacherDistribution.FromProbabilities(teacherProbabilities, vt), mapped);
        t.Kind.Should().Be(DistributionKind.Probabilities);
        mapped.Skip(vt).Take(vs - vt).Should().OnlyContain(p => p == 0);
        LossResult r = new DistillationLoss(Divergence.ForwardKL).Evaluate(t, StudentDistribution.FromLogits(student, vs), Reduction.Sum);
        double expected = 0;
        for (int row = 0; row < rows; row++)
        {
            double[] lq = DoubleFormulas.LogSoftmax(student.Skip(row * vs).Take(vs).Select(x => (double)x).ToArray(), 1);
            for (int j = 0; j < vt; j++)
            {
                double p = teacherProbabilities[(row * vt) + j];
                expected += p * (Math.Log(p) - lq[j]);
            }
        }

        r.Value.Should().BeApproximately(expected, 1e-5 * expected);

        // Top-k: the ids keep their values, only V changes.
        var topk = TopKTeacherDistribution.FromLogProbabilities(new[] { 29, 0 }, new[] { -0.5f, -1f }, 2, vt, ResidualMassPolicy.Renormalize);
        TopKTeacherDistribution wide = VocabularyMapping.Padded(vt, vs).Map(topk);
        wide.VocabularySize.Should().Be(vs);
        wide.Ids.ToArray().Should().Equal(29, 0);
    }

    [Fact]
    public void ExplicitMap_PermutesIds_AndDropsUnmappedOnes()
    {
        // Teacher id t → student id (t * 7) % 20 for t < 18; teacher ids 18 and 19 have no counterpart.
        int[] map = Enumerable.Range(0, 20).Select(t => t < 18 ? (t * 7) % 20 : -1).ToArray();
        var mapping = VocabularyMapping.FromTeacherToStudent(map, 20);
        mapping.StudentId(3).Should().Be(1);
        mapping.StudentId(19).Should().Be(-1);
        mapping.Unmapped.Should().Be(UnmappedTeacherTokens.Drop);
        var random = new Random(4);
        float[] teacher = TestSupport.RandomLogits(random, 2 * 20);
        float[] student = TestSupport.RandomLogits(random, 2 * 20);
        float[] mapped = new float[40], expected = Enumerable.Repeat(float.NegativeInfinity, 40).ToArray();
        for (int r = 0; r < 2; r++)
        {
            for (int t = 0; t < 18; t++)
            {
                expected[(r * 20) + map[t]] = teacher[(r * 20) + t];
            }
        }

        mapping.Map(TeacherDistribution.FromLogits(teacher, 20), mapped);
        mapped.Should().Equal(expected);

        var topk = TopKTeacherDistribution.FromLogProbabilities(new[] { 3, 19, 0 }, new[] { -1f, -2f, -3f }, 3, 20, ResidualMassPolicy.RestBucket);
        mapping.Map(topk).Ids.ToArray().Should().Equal(1, -1, 0);
    }

    [Fact]
    public void Mapping_RejectsInvalidMaps_WithTheParameterName()
    {
        FluentActions.Invoking(() => VocabularyMapping.FromTeacherToStudent(new[] { 0, 1, 1 }, 5)).Should().ThrowExactly<ArgumentException>()
            .WithParameterName("studentIdOfTeacherId").WithMessage("*Teacher ids 1 and 2 both map to student id 1*");
        FluentActions.Invoking(() => VocabularyMapping.FromTeacherToStudent(new[] { 0, 5 }, 5)).Should().ThrowExactly<ArgumentOutOfRangeException>()
            .WithParameterName("studentIdOfTeacherId").WithMessage("*Teacher id 1 maps to 5*");
        FluentActions.Invoking(() => VocabularyMapping.Padded(0, 5)).Should().ThrowExactly<ArgumentOutOfRangeException>().WithParameterName("teacherVocabularySize");
        FluentActions.Invoking(() => VocabularyMapping.Padded(10, 5).Map(TopKTeacherDistribution.FromLogProbabilities(new[] { 1 }, new[] { -1f }, 1, 9, ResidualMassPolicy.Renormalize)))
            .Should().ThrowExactly<ArgumentException>().WithParameterName("teacher");
        FluentActions.Invoking(() => VocabularyMapping.Padded(10, 5).Map(TeacherDistribution.FromLogits(new float[10], 10), new float[4]))
            .Should().ThrowExactly<ArgumentException>().WithParameterName("destination");
    }
}
