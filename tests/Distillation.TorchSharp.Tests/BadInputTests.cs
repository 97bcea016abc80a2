using static Distillation.TorchSharp.Tests.TorchSupport;

namespace Distillation.TorchSharp.Tests;

/// <summary>Inputs the adapter refuses, with the parameter named and a message that says what to do.</summary>
public class BadInputTests
{
    private static readonly DistillationLoss Loss = new(Divergence.ForwardKL, 2f);

    [Fact]
    public void ATeacherThatRequiresAGradient_IsRejected()
    {
        Tensor teacher = Uniform([3, 10], 60, requiresGrad: true), student = Uniform([3, 10], 61, requiresGrad: true);

        Action call = () => Loss.Compute(teacher, student);

        call.Should().ThrowExactly<ArgumentException>().WithParameterName("teacher").WithMessage("*detach()*");
        ValueShouldMatch(Loss.Compute(teacher.detach(), student).item<float>(), KlDivSum(teacher.detach(), student.detach(), 2).item<float>() / 3);
    }

    [Fact]
    public void TensorsOfOtherTypesOrShapes_AreRejected()
    {
        Tensor teacher = Uniform([3, 10], 62), student = Uniform([3, 10], 63);

        ((Action)(() => Loss.Compute(teacher, student.to_type(ScalarType.Float64)))).Should().ThrowExactly<ArgumentException>().WithParameterName("student").WithMessage("*float32*");
        ((Action)(() => Loss.Compute(teacher.to_type(ScalarType.Float16), student))).Should().ThrowExactly<ArgumentException>().WithParameterName("teacher").WithMessage("*float32*");
        ((Action)(() => Loss.Compute(Uniform([3, 11], 64), student))).Should().ThrowExactly<ArgumentException>().WithParameterName("teacher").WithMessage("*[3, 11]*[3, 10]*");
        ((Action)(() => Loss.Compute(tensor(1f), tensor(2f)))).Should().ThrowExactly<ArgumentException>().WithParameterName("student").WithMessage("*scalar*");
        ((Action)(() => Loss.Compute(zeros(3, 0), zeros(3, 0)))).Should().ThrowExactly<ArgumentException>().WithParameterName("student").WithMessage("*vocabulary*");
        ((Action)(() => Loss.Compute(default, StudentTensor.FromLogits(student)))).Should().ThrowExactly<ArgumentException>().WithParameterName("teacher");
        ((Action)(() => TeacherTensor.FromLogits(null!))).Should().ThrowExactly<ArgumentNullException>().WithParameterName("logits");
        ((Action)(() => ((DistillationLoss)null!).Compute(teacher, student))).Should().ThrowExactly<ArgumentNullException>().WithParameterName("loss");
        ((Action)(() => Loss.Compute(null!, student))).Should().ThrowExactly<ArgumentNullException>().WithParameterName("teacherLogits");
        ((Action)(() => new LanguageModelLoss().Compute((Tensor)null!, Labels([3], 10, 1)))).Should().ThrowExactly<ArgumentNullException>().WithParameterName("studentLogits");
    }

    [Fact]
    public void LabelsAndMasksOfTheWrongShapeOrType_AreRejected()
    {
        Tensor teacher = Uniform([2, 3, 10], 65), student = Uniform([2, 3, 10], 66);

        ((Action)(() => Loss.Compute(teacher, student, labels: Labels([3, 2], 10, 1)))).Should().ThrowExactly<ArgumentException>().WithParameterName("labels").WithMessage("*[2, 3]*");
        ((Action)(() => Loss.Compute(teacher, student, labels: Labels([2, 3], 10, 1).to_type(ScalarType.Float32)))).Should().ThrowExactly<ArgumentException>().WithParameterName("labels").WithMessage("*int64*");
        ((Action)(() => Loss.Compute(teacher, student, paddingMask: ones(2, 3)))).Should().ThrowExactly<ArgumentException>().WithParameterName("paddingMask").WithMessage("*bool*");
        ((Action)(() => new LanguageModelLoss().Compute(student, Labels([2, 3], 10, 1) + 10))).Should().ThrowExactly<ArgumentOutOfRangeException>().WithParameterName("labels");

        // A flat [rows] tensor of labels is accepted as well.
        ValueShouldMatch(new LanguageModelLoss().Compute(student, Labels([6], 10, 2)).item<float>(), nn.functional.cross_entropy(student.reshape(6, 10), Labels([6], 10, 2)).item<float>());
    }

    [Fact]
    public void InvalidValues_AreReportedByTheCoreLibrary_WithRowAndColumn()
    {
        Tensor teacher = Uniform([3, 10], 67), student = Uniform([3, 10], 68, requiresGrad: true);
        Tensor poisoned = student.detach().clone();
        poisoned[1, 4] = tensor(float.NaN);

        ((Action)(() => Loss.Compute(teacher, poisoned.requires_grad_(true)))).Should().Throw<ArgumentException>().WithMessage("*row 1*column 4*");
    }

    [Fact]
    public void DisposedTensors_AreRejected()
    {
        Tensor teacher = Uniform([3, 10], 69), student = Uniform([3, 10], 70);
        student.Dispose();

        ((Action)(() => Loss.Compute(teacher, student))).Should().ThrowExactly<ArgumentException>().WithParameterName("student").WithMessage("*disposed*");
    }
}
