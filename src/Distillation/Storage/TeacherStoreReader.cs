using System;
using System.Buffers;
using System.Buffers.Binary;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.IO.Hashing;
using Distillation.Internal;
using Distillation.Storage;

namespace Distillation;

/// <summary>
/// Reads a teacher store written by <see cref="TeacherStoreWriter"/> block by block, without loading the file: the
/// header is read and checked when the reader is created, each block when it is read.
/// </summary>
/// <remarks>
/// <para>Every failure is an <see cref="InvalidDataException"/> that says what failed and where (byte offset, block
/// number, row): a wrong magic or version, a header, block or end marker whose CRC32 does not match, a block that does
/// not start at the next row, counts that disagree with the end marker, data after the end marker, and truncation
/// anywhere — including a file cut exactly between two blocks, which lacks the end marker. A block is handed out only
/// after its CRC32 matched. At most one block's bytes are held at a time (≤ 256 MiB by format). Not thread-safe.</para>
/// </remarks>
public sealed class TeacherStoreReader : IDisposable
{
    private readonly Stream _stream;
    private readonly bool _leaveOpen;
    private byte[] _buffer = [];
    private long _offset;
    private bool _disposed;

    /// <summary>Opens a store on <paramref name="stream"/> and reads and checks its header.</summary>
    /// <param name="stream">A readable stream positioned at the store's first byte (it need not be seekable).</param>
    /// <param name="leaveOpen">Whether <see cref="Dispose"/> leaves <paramref name="stream"/> open.</param>
    /// <exception cref="ArgumentNullException"><paramref name="stream"/> is null.</exception>
    /// <exception cref="ArgumentException"><paramref name="stream"/> is not readable.</exception>
    /// <exception cref="InvalidDataException">The header is truncated, has the wrong magic or version, fails its CRC32, or holds an invalid V, k or T_gen.</exception>
    /// <exception cref="IOException">The stream fails.</exception>
    public TeacherStoreReader(Stream stream, bool leaveOpen = false)
    {
        ArgumentNullException.ThrowIfNull(stream);
        if (!stream.CanRead)
        {
            ThrowHelper.Argument(nameof(stream), "The stream is not readable.");
        }

        _stream = stream;
        _leaveOpen = leaveOpen;
        Span<byte> header = stackalloc byte[TeacherStoreFormat.HeaderBytes];
        int read = _stream.ReadAtLeast(header, header.Length, throwOnEndOfStream: false);
        if (read >= 8 && !header[..8].SequenceEqual(TeacherStoreFormat.Magic))
        {
            throw Invalid(0, $"Not a teacher store: the file starts with {Hex(header[..8])}, not the magic \"DSTLTOPK\".");
        }

        if (read < header.Length)
        {
            throw Invalid(read, $"Truncated teacher store: the file ends at byte offset {read}, inside the header ({read} of {TeacherStoreFormat.HeaderBytes} bytes).");
        }

        Version = BinaryPrimitives.ReadUInt16LittleEndian(header[8..]);
        if (Version != TeacherStoreFormat.Version)
        {
            throw Invalid(8, $"Unsupported teacher-store version {Version}: this library reads version {TeacherStoreFormat.Version}.");
        }

        uint stored = BinaryPrimitives.ReadUInt32LittleEndian(header[24..]), computed = Crc32.HashToUInt32(header[..24]);
        if (stored != computed)
        {
            throw Invalid(24, $"Corrupted teacher store: the header's CRC32 is 0x{computed:X8} but 0x{stored:X8} is stored.");
        }

        VocabularySize = BinaryPrimitives.ReadInt32LittleEndian(header[12..]);
        K = BinaryPrimitives.ReadInt32LittleEndian(header[16..]);
        GenerationTemperature = BinaryPrimitives.ReadSingleLittleEndian(header[20..]);
        if (VocabularySize < 1 || K < 1 || K > VocabularySize || !(GenerationTemperature >= ThrowHelper.MinTemperature && GenerationTemperature <= ThrowHelper.MaxTemperature))
        {
            throw Invalid(12, $"Invalid teacher-store header: V = {VocabularySize}, k = {K}, T_gen = {GenerationTemperature} (need V ≥ 1, 1 ≤ k ≤ V, T_gen in [1e-6, 1e6]).");
        }

        _offset = TeacherStoreFormat.HeaderBytes;
    }

    /// <summary>The format version of the store.</summary>
    public int Version { get; }

    /// <summary>The vocabulary size V the ids index.</summary>
    public int VocabularySize { get; }

    /// <summary>Slots per row, k.</summary>
    public int K { get; }

    /// <summary>The generation temperature T_gen the log-probabilities were produced at.</summary>
    public float GenerationTemperature { get; }

    /// <summary>The rows read so far.</summary>
    public long RowsRead { get; private set; }

    /// <summary>The blocks read so far.</summary>
    public long BlocksRead { get; private set; }

    /// <summary>Whether the end marker was read and checked (every row has then been read).</summary>
    public bool IsComplete { get; private set; }

    /// <summary>Opens the file <paramref name="path"/> and reads its header.</summary>
    /// <param name="path">The store's file.</param>
    /// <returns>The reader; dispose it to close the file.</returns>
    /// <exception cref="InvalidDataException">The header is invalid (see the constructor).</exception>
    /// <exception cref="IOException">The file cannot be opened.</exception>
    public static TeacherStoreReader Open(string path)
    {
        var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
        try
        {
            return new TeacherStoreReader(file);
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    /// <summary>Reads the next block, or returns <see langword="null"/> once the end marker has been read and checked.</summary>
    /// <returns>The block (its own arrays), or null at the end of the store.</returns>
    /// <exception cref="InvalidDataException">The store is truncated or corrupted at this point (the message says what and where).</exception>
    /// <exception cref="ObjectDisposedException">The reader was disposed.</exception>
    /// <exception cref="IOException">The stream fails.</exception>
    public TeacherStoreBlock? ReadBlock()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (IsComplete)
        {
            return null;
        }

        long at = _offset;
        Span<byte> head = stackalloc byte[TeacherStoreFormat.BlockHeadBytes];
        int read = _stream.ReadAtLeast(head[..4], 4, throwOnEndOfStream: false);
        if (read < 4)
        {
            throw Invalid(at + read, $"Truncated teacher store: the file ends at byte offset {at + read}, after block {BlocksRead} ({RowsRead} rows), without its end marker.");
        }

        if (head[..4].SequenceEqual(TeacherStoreFormat.EndMagic))
        {
            ReadEnd(at);
            return null;
        }

        if (!head[..4].SequenceEqual(TeacherStoreFormat.BlockMagic))
        {
            throw Invalid(at, $"Corrupted teacher store: at byte offset {at} (after block {BlocksRead}, row {RowsRead}) the bytes {Hex(head[..4])} are neither a block (\"TKBL\") nor the end marker (\"TKND\").");
        }

        Fill(head[4..], at + 4, $"block {BlocksRead}'s head");
        int rows = BinaryPrimitives.ReadInt32LittleEndian(head[4..]);
        long firstRow = BinaryPrimitives.ReadInt64LittleEndian(head[8..]);
        long body = (long)rows * K * TeacherStoreFormat.BytesPerSlot;
        if (rows < 1 || body > TeacherStoreFormat.MaxBlockBodyBytes)
        {
            throw Invalid(at + 4, $"Corrupted teacher store: block {BlocksRead} at byte offset {at} claims {rows} rows ({body} bytes; a block holds 1 row to {TeacherStoreFormat.MaxBlockBodyBytes} bytes).");
        }

        int size = (int)body + 4;
        if (_buffer.Length < TeacherStoreFormat.BlockHeadBytes + size)
        {
            _buffer = new byte[TeacherStoreFormat.BlockHeadBytes + size];
        }

        Span<byte> block = _buffer.AsSpan(0, TeacherStoreFormat.BlockHeadBytes + size);
        head.CopyTo(block);
        Fill(block[TeacherStoreFormat.BlockHeadBytes..], at + TeacherStoreFormat.BlockHeadBytes, $"block {BlocksRead} (rows {RowsRead} to {RowsRead + rows - 1})");
        uint stored = BinaryPrimitives.ReadUInt32LittleEndian(block[^4..]), computed = Crc32.HashToUInt32(block[4..^4]);
        if (stored != computed)
        {
            throw Invalid(at, $"Corrupted teacher store: block {BlocksRead} at byte offset {at} (rows {RowsRead} to {RowsRead + rows - 1}) fails its CRC32 (computed 0x{computed:X8}, stored 0x{stored:X8}).");
        }

        if (firstRow != RowsRead)
        {
            throw Invalid(at + 8, $"Corrupted teacher store: block {BlocksRead} at byte offset {at} says it starts at row {firstRow}, but {RowsRead} rows precede it (a block is missing, repeated or out of order).");
        }

        int slots = rows * K;
        var ids = new int[slots];
        var values = new Half[slots];
        TeacherStoreFormat.ReadIds(block[TeacherStoreFormat.BlockHeadBytes..], ids);
        TeacherStoreFormat.ReadHalves(block[(TeacherStoreFormat.BlockHeadBytes + (4 * slots))..], values);
        _offset = at + block.Length;
        RowsRead += rows;
        BlocksRead++;
        return new TeacherStoreBlock(firstRow, rows, K, VocabularySize, GenerationTemperature, ids, values);
    }

    /// <summary>Every remaining block, in order, read lazily one at a time; the enumeration ends after the end marker was checked.</summary>
    /// <returns>The blocks.</returns>
    /// <exception cref="InvalidDataException">Thrown while enumerating, at the first truncated or corrupted place.</exception>
    public IEnumerable<TeacherStoreBlock> ReadBlocks()
    {
        while (ReadBlock() is { } block)
        {
            yield return block;
        }
    }

    /// <summary>Closes the stream (unless the reader was created with leaveOpen).</summary>
    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        if (!_leaveOpen)
        {
            _stream.Dispose();
        }
    }

    private void ReadEnd(long at)
    {
        Span<byte> end = stackalloc byte[TeacherStoreFormat.EndBytes];
        Fill(end[4..], at + 4, "the end marker");
        long rows = BinaryPrimitives.ReadInt64LittleEndian(end[4..]), blocks = BinaryPrimitives.ReadInt64LittleEndian(end[12..]);
        uint stored = BinaryPrimitives.ReadUInt32LittleEndian(end[20..]), computed = Crc32.HashToUInt32(end[4..20]);
        if (stored != computed)
        {
            throw Invalid(at, $"Corrupted teacher store: the end marker at byte offset {at} fails its CRC32 (computed 0x{computed:X8}, stored 0x{stored:X8}).");
        }

        if (rows != RowsRead || blocks != BlocksRead)
        {
            throw Invalid(at, $"Corrupted teacher store: the end marker at byte offset {at} records {rows} rows in {blocks} blocks, but {RowsRead} rows in {BlocksRead} blocks were read.");
        }

        _offset = at + TeacherStoreFormat.EndBytes;
        Span<byte> probe = stackalloc byte[1];
        if (_stream.ReadAtLeast(probe, 1, throwOnEndOfStream: false) != 0)
        {
            throw Invalid(_offset, $"Corrupted teacher store: there is data after the end marker, at byte offset {_offset}.");
        }

        IsComplete = true;
    }

    /// <summary>Reads exactly destination.Length bytes or reports the truncation.</summary>
    private void Fill(Span<byte> destination, long at, string what)
    {
        int read = _stream.ReadAtLeast(destination, destination.Length, throwOnEndOfStream: false);
        if (read < destination.Length)
        {
            throw Invalid(at + read, $"Truncated teacher store: the file ends at byte offset {at + read}, inside {what} ({read} of {destination.Length} bytes).");
        }
    }

    private static InvalidDataException Invalid(long offset, FormattableString message)
    {
        var e = new InvalidDataException(message.ToString(CultureInfo.InvariantCulture));
        e.Data["Offset"] = offset;
        return e;
    }

    private static string Hex(ReadOnlySpan<byte> bytes) => Convert.ToHexString(bytes);
}
