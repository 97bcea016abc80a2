using System;
using System.Buffers.Binary;
using System.Runtime.InteropServices;

namespace Distillation.Storage;

/// <summary>
/// The constants and little-endian codecs of the teacher store's binary format (see docs/TEACHER_STORE.md): a 28-byte
/// header, blocks of rows each with a CRC32, and a 24-byte end marker.
/// </summary>
internal static class TeacherStoreFormat
{
    /// <summary>"DSTLTOPK": the first 8 bytes of every store.</summary>
    public static ReadOnlySpan<byte> Magic => "DSTLTOPK"u8;

    /// <summary>"TKBL": the first 4 bytes of a block.</summary>
    public static ReadOnlySpan<byte> BlockMagic => "TKBL"u8;

    /// <summary>"TKND": the first 4 bytes of the end marker.</summary>
    public static ReadOnlySpan<byte> EndMagic => "TKND"u8;

    /// <summary>The format version this library writes and reads.</summary>
    public const ushort Version = 1;

    /// <summary>Header: magic (8), version (2), flags (2), V (4), k (4), T_gen (4), CRC32 of the 24 bytes before it (4).</summary>
    public const int HeaderBytes = 28;

    /// <summary>Block head: magic (4), row count (4), index of the first row (8).</summary>
    public const int BlockHeadBytes = 16;

    /// <summary>End marker: magic (4), total rows (8), block count (8), CRC32 of the 16 bytes of counts (4).</summary>
    public const int EndBytes = 24;

    /// <summary>Bytes per stored slot: an int32 id and a binary16 log-probability.</summary>
    public const int BytesPerSlot = 6;

    /// <summary>The largest block body a reader accepts (and a writer writes): 256 MiB.</summary>
    public const int MaxBlockBodyBytes = 1 << 28;

    public static void WriteIds(ReadOnlySpan<int> ids, Span<byte> destination)
    {
        if (BitConverter.IsLittleEndian)
        {
            MemoryMarshal.AsBytes(ids).CopyTo(destination);
            return;
        }

        for (int i = 0; i < ids.Length; i++)
        {
            BinaryPrimitives.WriteInt32LittleEndian(destination[(4 * i)..], ids[i]);
        }
    }

    public static void WriteHalves(ReadOnlySpan<Half> values, Span<byte> destination)
    {
        if (BitConverter.IsLittleEndian)
        {
            MemoryMarshal.AsBytes(values).CopyTo(destination);
            return;
        }

        for (int i = 0; i < values.Length; i++)
        {
            BinaryPrimitives.WriteHalfLittleEndian(destination[(2 * i)..], values[i]);
        }
    }

    public static void ReadIds(ReadOnlySpan<byte> source, Span<int> ids)
    {
        if (BitConverter.IsLittleEndian)
        {
            source[..(4 * ids.Length)].CopyTo(MemoryMarshal.AsBytes(ids));
            return;
        }

        for (int i = 0; i < ids.Length; i++)
        {
            ids[i] = BinaryPrimitives.ReadInt32LittleEndian(source[(4 * i)..]);
        }
    }

    public static void ReadHalves(ReadOnlySpan<byte> source, Span<Half> values)
    {
        if (BitConverter.IsLittleEndian)
        {
            source[..(2 * values.Length)].CopyTo(MemoryMarshal.AsBytes(values));
            return;
        }

        for (int i = 0; i < values.Length; i++)
        {
            values[i] = BinaryPrimitives.ReadHalfLittleEndian(source[(2 * i)..]);
        }
    }
}
