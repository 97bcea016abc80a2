using System;
using System.Buffers;

namespace Distillation.TorchSharp.Internal;

/// <summary>A <see cref="Memory{T}"/> over native memory that does not move (a CPU tensor's storage): no copy.</summary>
internal sealed unsafe class NativeMemory<T> : MemoryManager<T>
    where T : unmanaged
{
    private readonly T* _pointer;
    private readonly int _length;

    public NativeMemory(T* pointer, int length)
    {
        _pointer = pointer;
        _length = length;
    }

    public override Span<T> GetSpan() => new(_pointer, _length);

    public override MemoryHandle Pin(int elementIndex = 0) => new(_pointer + elementIndex);

    public override void Unpin()
    {
    }

    protected override void Dispose(bool disposing)
    {
    }
}
