using System;
using System.Collections.Generic;
using System.Globalization;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using TorchSharp;

namespace Distillation.TorchSharp.Internal;

/// <summary>
/// One call's tensors seen as the core library's rows: validated (CPU, float32, same shape, labels and mask of the
/// leading shape), made contiguous where they were not (copies this object owns and disposes), and wrapped as
/// distributions, labels and a layout over the tensors' own storage — no copy of a contiguous tensor.
/// </summary>
internal sealed unsafe class TensorRows : IDisposable
{
    private readonly List<torch.Tensor> _owned = [];

    private TensorRows(long[] shape)
    {
        Shape = shape;
        LeadingShape = shape[..^1];
    }

    /// <summary>The student's shape, [..., V].</summary>
    public long[] Shape { get; }

    /// <summary>The shape of one value per row, [...].</summary>
    public long[] LeadingShape { get; }

    public int Rows { get; private set; }

    public int VocabularySize { get; private set; }

    public TeacherDistribution Teacher { get; private set; }

    public StudentDistribution Student { get; private set; }

    public TokenLabels Labels { get; private set; }

    public SequenceLayout? Layout { get; private set; }

    /// <summary>Validates and wraps the tensors of one call; the teacher and the labels are optional.</summary>
    public static TensorRows Create(TeacherTensor? teacher, StudentTensor student, torch.Tensor? labels, torch.Tensor? paddingMask, int ignoreIndex)
    {
        if (student.Values is null)
        {
            throw new ArgumentException("The student is default; use StudentTensor.FromLogits or FromLogProbabilities.", nameof(student));
        }

        torch.Tensor s = student.Values;
        CheckFloat(s, nameof(student));
        if (s.dim() == 0)
        {
            throw new ArgumentException("The student is a scalar; it must have the shape [..., V], one row of V values per token.", nameof(student));
        }

        var rows = new TensorRows(s.shape);
        try
        {
            long numel = s.numel();
            if (numel > int.MaxValue)
            {
                throw new ArgumentException(Format($"The student has {numel} elements; at most {int.MaxValue} are supported."), nameof(student));
            }

            if (rows.Shape[^1] == 0)
            {
                throw new ArgumentException(Format($"The student's last dimension (the vocabulary) is 0 in shape {ShapeText(rows.Shape)}; at least one token is needed."), nameof(student));
            }

            rows.VocabularySize = (int)rows.Shape[^1];
            rows.Rows = (int)(numel / rows.VocabularySize);
            rows.Layout = rows.CreateLayout(paddingMask);
            ReadOnlyMemory<float> studentValues = rows.View(s);
            rows.Student = student.Kind == DistributionKind.Logits
                ? StudentDistribution.FromLogits(studentValues, rows.VocabularySize, rows.Layout)
                : StudentDistribution.FromLogProbabilities(studentValues, rows.VocabularySize, rows.Layout);

            if (teacher is TeacherTensor t)
            {
                rows.Teacher = rows.CreateTeacher(t);
            }

            if (labels is not null)
            {
                rows.Labels = new TokenLabels(rows.ReadLabels(labels), ignoreIndex);
            }

            return rows;
        }
        catch
        {
            rows.Dispose();
            throw;
        }
    }

    /// <summary>A new float32 tensor of <paramref name="shape"/>, uninitialised, and a span over its storage.</summary>
    public static torch.Tensor Empty(long[] shape, out Span<float> values)
    {
        torch.Tensor tensor = torch.empty(shape, torch.ScalarType.Float32);
        values = MemoryMarshal.Cast<byte, float>(tensor.bytes);
        return tensor;
    }

    public void Dispose()
    {
        foreach (torch.Tensor tensor in _owned)
        {
            tensor.Dispose();
        }

        _owned.Clear();
    }

    private static void CheckFloat(torch.Tensor tensor, string name)
    {
        CheckUsable(tensor, name);
        if (tensor.dtype != torch.ScalarType.Float32)
        {
            throw new ArgumentException(Format($"The tensor's type is {tensor.dtype}; the losses take float32 tensors (convert with .to(torch.float32))."), name);
        }
    }

    private static void CheckUsable(torch.Tensor tensor, string name)
    {
        if (tensor.IsInvalid)
        {
            throw new ArgumentException("The tensor has been disposed.", name);
        }

        if (tensor.device_type != DeviceType.CPU)
        {
            throw new ArgumentException(Format($"The tensor is on {tensor.device}; the losses run on CPU tensors (move it with .cpu())."), name);
        }
    }

    private static string Format(FormattableString message) => message.ToString(CultureInfo.InvariantCulture);

    private static string ShapeText(long[] shape) => "[" + string.Join(", ", shape) + "]";

    /// <summary>The tensor's storage as memory, copying it to a contiguous tensor first when it is not contiguous.</summary>
    private ReadOnlyMemory<float> View(torch.Tensor tensor) => new NativeMemory<float>(Pointer<float>(Contiguous(tensor)), checked((int)tensor.numel())).Memory;

    private torch.Tensor Contiguous(torch.Tensor tensor)
    {
        if (tensor.is_contiguous())
        {
            return tensor;
        }

        using torch.Tensor detached = tensor.detach();
        torch.Tensor copy = detached.contiguous();
        _owned.Add(copy);
        return copy;
    }

    private static T* Pointer<T>(torch.Tensor contiguous)
        where T : unmanaged =>
        (T*)Unsafe.AsPointer(ref MemoryMarshal.GetReference(contiguous.bytes));

    private TeacherDistribution CreateTeacher(TeacherTensor teacher)
    {
        if (teacher.Values is null)
        {
            throw new ArgumentException("The teacher is default; use TeacherTensor.FromLogits, FromLogProbabilities or FromProbabilities.", nameof(teacher));
        }

        torch.Tensor t = teacher.Values;
        CheckFloat(t, nameof(teacher));
        if (t.requires_grad && torch.is_grad_enabled())
        {
            throw new ArgumentException(
                "The teacher requires a gradient, but the losses differentiate with respect to the student only: pass teacher.detach(), or compute the teacher under torch.no_grad().",
                nameof(teacher));
        }

        if (!t.shape.AsSpan().SequenceEqual(Shape))
        {
            throw new ArgumentException(Format($"The teacher's shape {ShapeText(t.shape)} differs from the student's {ShapeText(Shape)}."), nameof(teacher));
        }

        ReadOnlyMemory<float> values = View(t);
        int vocab = VocabularySize;
        return teacher.Kind switch
        {
            DistributionKind.Logits => TeacherDistribution.FromLogits(values, vocab, Layout),
            DistributionKind.LogProbabilities => TeacherDistribution.FromLogProbabilities(values, vocab, Layout),
            _ => TeacherDistribution.FromProbabilities(values, vocab, Layout),
        };
    }

    /// <summary>
    /// Rows grouped into sequences as the tensor's shape says: [B, T, ..., V] is B sequences of T·… rows; [N, V] and
    /// [V] are rows that are each their own sequence. The mask (bool, one entry per row) marks real tokens.
    /// </summary>
    private SequenceLayout? CreateLayout(torch.Tensor? paddingMask)
    {
        ReadOnlyMemory<bool> mask = default;
        if (paddingMask is not null)
        {
            CheckUsable(paddingMask, nameof(paddingMask));
            CheckRowShape(paddingMask, nameof(paddingMask));
            if (paddingMask.dtype != torch.ScalarType.Bool)
            {
                throw new ArgumentException(Format($"The padding mask's type is {paddingMask.dtype}; it must be a bool tensor (true = a real token)."), nameof(paddingMask));
            }

            var values = new bool[Rows];
            ReadOnlySpan<byte> bytes = Contiguous(paddingMask).bytes;
            for (int i = 0; i < values.Length; i++)
            {
                values[i] = bytes[i] != 0;
            }

            mask = values;
        }

        if (LeadingShape.Length >= 2)
        {
            int batch = (int)LeadingShape[0];
            int length = batch == 0 ? 0 : Rows / batch;
            return SequenceLayout.Rectangular(batch, length, mask);
        }

        return mask.IsEmpty && paddingMask is null ? null : SequenceLayout.Rectangular(Rows, 1, mask);
    }

    private int[] ReadLabels(torch.Tensor labels)
    {
        CheckUsable(labels, nameof(labels));
        CheckRowShape(labels, nameof(labels));
        var ids = new int[Rows];
        torch.Tensor contiguous = Contiguous(labels);
        if (labels.dtype == torch.ScalarType.Int64)
        {
            ReadOnlySpan<long> values = MemoryMarshal.Cast<byte, long>(contiguous.bytes);
            for (int i = 0; i < ids.Length; i++)
            {
                long id = values[i];
                if (id is < int.MinValue or > int.MaxValue)
                {
                    throw new ArgumentOutOfRangeException(nameof(labels), id, Format($"Label {id} of row {i} is outside the range of a token id."));
                }

                ids[i] = (int)id;
            }
        }
        else if (labels.dtype == torch.ScalarType.Int32)
        {
            MemoryMarshal.Cast<byte, int>(contiguous.bytes).CopyTo(ids);
        }
        else
        {
            throw new ArgumentException(Format($"The labels' type is {labels.dtype}; they must be int64 (as cross_entropy takes) or int32."), nameof(labels));
        }

        return ids;
    }

    /// <summary>Labels and masks hold one entry per row: the student's leading shape, or a flat [rows].</summary>
    private void CheckRowShape(torch.Tensor tensor, string name)
    {
        long[] shape = tensor.shape;
        if (!shape.AsSpan().SequenceEqual(LeadingShape) && !(shape.Length == 1 && shape[0] == Rows))
        {
            throw new ArgumentException(Format($"The shape {ShapeText(shape)} does not give one entry per row: expected {ShapeText(LeadingShape)} (or [{Rows}]) for a student of shape {ShapeText(Shape)}."), name);
        }
    }
}
