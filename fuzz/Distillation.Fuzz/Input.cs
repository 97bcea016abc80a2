using System;
using System.Buffers.Binary;

namespace Distillation.Fuzz;

/// <summary>
/// Reads the fuzzer's bytes as a sequence of small decisions. Past the end every read is 0, and 0 always decodes to a
/// valid, ordinary choice, so short inputs are valid calls and the fuzzer reaches the numerical code quickly.
/// </summary>
internal sealed class Input(byte[] data)
{
    private int _position;

    public byte Byte() => _position < data.Length ? data[_position++] : (byte)0;

    /// <summary>An integer in [0, count).</summary>
    public int Below(int count) => count <= 1 ? 0 : Byte() % count;

    public bool Flag() => (Byte() & 1) != 0;

    /// <summary>True with probability about 1/<paramref name="odds"/> (never for the zero byte).</summary>
    public bool Rarely(int odds = 16) => Byte() is var b && b != 0 && b % odds == 0;

    public float RawFloat()
    {
        Span<byte> b = [Byte(), Byte(), Byte(), Byte()];
        return BinaryPrimitives.ReadSingleLittleEndian(b);
    }

    public double RawDouble()
    {
        Span<byte> b = [Byte(), Byte(), Byte(), Byte(), Byte(), Byte(), Byte(), Byte()];
        return BinaryPrimitives.ReadDoubleLittleEndian(b);
    }

    public int RawInt()
    {
        Span<byte> b = [Byte(), Byte(), Byte(), Byte()];
        return BinaryPrimitives.ReadInt32LittleEndian(b);
    }

    /// <summary>Picks from <paramref name="values"/>; a byte past their count reads a raw value instead.</summary>
    public float Pick(float[] values)
    {
        int b = Byte();
        return b < values.Length ? values[b] : b >= 250 ? RawFloat() : values[b % values.Length];
    }

    public double Pick(double[] values)
    {
        int b = Byte();
        return b < values.Length ? values[b] : b >= 250 ? RawDouble() : values[b % values.Length];
    }

    public int Pick(int[] values)
    {
        int b = Byte();
        return b < values.Length ? values[b] : b >= 250 ? RawInt() : values[b % values.Length];
    }
}
