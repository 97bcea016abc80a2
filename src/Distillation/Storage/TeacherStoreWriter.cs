using System;
using System.Buffers;
using System.Buffers.Binary;
using System.IO;
using System.IO.Hashing;
using Distillation.Internal;
using Distillation.Kernels;
using Distillation.Sparse;
using Distillation.Storage;

namespace Distillation;

/// <summary>
/// Writes a teacher store: the top-k outputs of a teacher over a corpus (int32 ids, binary16 log-probabilities), in
/// blocks of rows appended one after another, each with a CRC32, so that a teacher run and the student's training can
/// be separated in time. The format is specified in docs/TEACHER_STORE.md.
/// </summary>
/// <remarks>
/// <para>Rows are stored in the order written; block i starts at row <see cref="RowCount"/> as it was before the call.
/// Every row is checked as a top-k teacher's row is (ids in [0, V) or −1, distinct, log-probabilities ≤ 0 and not
/// NaN, Σ p ≤ 1 + <see cref="TopKTeacherDistribution.MassTolerance"/>, −∞ in empty slots) before anything of the block
/// is written. A row costs 6·k bytes plus 24 bytes per block and 52 bytes per store.</para>
/// <para>Call <see cref="Complete"/> when every row is written: it appends the end marker (total rows and blocks).
/// <see cref="Dispose"/> alone does not, on purpose: a writer abandoned by an exception leaves a store that every
/// reader rejects as truncated. Not thread-safe.</para>
/// </remarks>
public sealed class TeacherStoreWriter : IDisposable
{
    private readonly Stream _stream;
    private readonly bool _leaveOpen;
    private bool _completed;
    private bool _disposed;

    /// <summary>Starts a store on <paramref name="stream"/> and writes its header.</summary>
    /// <param name="stream">A writable stream, positioned where the store begins (it need not be seekable).</param>
    /// <param name="vocabularySize">V, the vocabulary the ids index, at least 1.</param>
    /// <param name="k">Slots per row, in [1, V].</param>
    /// <param name="generationTemperature">T_gen in [1e-6, 1e6], the temperature the log-probabilities are produced at (default 1).</param>
    /// <param name="leaveOpen">Whether <see cref="Dispose"/> leaves <paramref name="stream"/> open.</param>
    /// <exception cref="ArgumentNullException"><paramref name="stream"/> is null.</exception>
    /// <exception cref="ArgumentException"><paramref name="stream"/> is not writable.</exception>
    /// <exception cref="ArgumentOutOfRangeException">V &lt; 1, k outside [1, V], or T_gen out of range.</exception>
    /// <exception cref="IOException">The stream fails.</exception>
    public TeacherStoreWriter(Stream stream, int vocabularySize, int k, float generationTemperature = 1f, bool leaveOpen = false)
    {
        ArgumentNullException.ThrowIfNull(stream);
        if (!stream.CanWrite)
        {
            ThrowHelper.Argument(nameof(stream), "The stream is not writable.");
        }

        if (vocabularySize < 1)
        {
            ThrowHelper.OutOfRange(nameof(vocabularySize), vocabularySize, "The vocabulary size must be at least 1.");
        }

        if (k < 1 || k > vocabularySize)
        {
            ThrowHelper.OutOfRange(nameof(k), k, ThrowHelper.Format($"k must lie in [1, V] = [1, {vocabularySize}]."));
        }

        ThrowHelper.CheckTemperature(generationTemperature, nameof(generationTemperature));
        _stream = stream;
        _leaveOpen = leaveOpen;
        VocabularySize = vocabularySize;
        K = k;
        GenerationTemperature = generationTemperature;

        Span<byte> header = stackalloc byte[TeacherStoreFormat.HeaderBytes];
        TeacherStoreFormat.Magic.CopyTo(header);
        BinaryPrimitives.WriteUInt16LittleEndian(header[8..], TeacherStoreFormat.Version);
        BinaryPrimitives.WriteUInt16LittleEndian(header[10..], 0);
        BinaryPrimitives.WriteInt32LittleEndian(header[12..], vocabularySize);
        BinaryPrimitives.WriteInt32LittleEndian(header[16..], k);
        BinaryPrimitives.WriteSingleLittleEndian(header[20..], generationTemperature);
        BinaryPrimitives.WriteUInt32LittleEndian(header[24..], Crc32.HashToUInt32(header[..24]));
        _stream.Write(header);
        BytesWritten = TeacherStoreFormat.HeaderBytes;
    }

    /// <summary>The vocabulary size V recorded in the header.</summary>
    public int VocabularySize { get; }

    /// <summary>The slots per row k recorded in the header.</summary>
    public int K { get; }

    /// <summary>The generation temperature T_gen recorded in the header.</summary>
    public float GenerationTemperature { get; }

    /// <summary>The rows written so far.</summary>
    public long RowCount { get; private set; }

    /// <summary>The blocks written so far.</summary>
    public long BlockCount { get; private set; }

    /// <summary>The bytes written so far (header, blocks and, once completed, the end marker).</summary>
    public long BytesWritten { get; private set; }

    /// <summary>The bytes one row occupies in a store: 6·k (an int32 id and a binary16 log-probability per slot).</summary>
    public int BytesPerToken => TeacherStoreFormat.BytesPerSlot * K;

    /// <summary>
    /// Creates the file <paramref name="path"/> (replacing it) and starts a store in it.
    /// </summary>
    /// <param name="path">The file to create.</param>
    /// <param name="vocabularySize">V, at least 1.</param>
    /// <param name="k">Slots per row, in [1, V].</param>
    /// <param name="generationTemperature">T_gen in [1e-6, 1e6] (default 1).</param>
    /// <returns>The writer; dispose it to close the file.</returns>
    /// <exception cref="ArgumentOutOfRangeException">V &lt; 1, k outside [1, V], or T_gen out of range.</exception>
    /// <exception cref="IOException">The file cannot be created.</exception>
    public static TeacherStoreWriter Create(string path, int vocabularySize, int k, float generationTemperature = 1f)
    {
        var file = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 16);
        try
        {
            return new TeacherStoreWriter(file, vocabularySize, k, generationTemperature);
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    /// <summary>Appends one block of rows with binary16 log-probabilities (stored as they are). An empty call writes nothing.</summary>
    /// <param name="ids">Rows × k ids, row-major.</param>
    /// <param name="logProbabilities">Rows × k log-probabilities at <see cref="GenerationTemperature"/>.</param>
    /// <exception cref="ArgumentException">The lengths differ or are not a multiple of k; the block exceeds 256 MiB; or a row repeats an id, holds a NaN or positive log-probability, has Σ p above 1 + tolerance, or an empty slot that is not −∞ (the message gives the store's row number and the slot).</exception>
    /// <exception cref="ArgumentOutOfRangeException">An id is outside [0, V) and not −1.</exception>
    /// <exception cref="InvalidOperationException">The store was completed.</exception>
    /// <exception cref="ObjectDisposedException">The writer was disposed.</exception>
    /// <exception cref="IOException">The stream fails.</exception>
    public void WriteBlock(ReadOnlySpan<int> ids, ReadOnlySpan<Half> logProbabilities) => WriteCore(ids, logProbabilities, nameof(ids), nameof(logProbabilities));

    /// <summary>
    /// Appends one block of rows with float log-probabilities, rounded to binary16 as they are stored (to nearest;
    /// below −65504 they become −∞; the relative precision of a stored log p is 2⁻¹¹). An empty call writes nothing.
    /// </summary>
    /// <param name="ids">Rows × k ids, row-major.</param>
    /// <param name="logProbabilities">Rows × k log-probabilities at <see cref="GenerationTemperature"/>.</param>
    /// <exception cref="ArgumentException">As for the binary16 form (the rounded values are checked).</exception>
    /// <exception cref="ArgumentOutOfRangeException">An id is outside [0, V) and not −1.</exception>
    /// <exception cref="InvalidOperationException">The store was completed.</exception>
    /// <exception cref="ObjectDisposedException">The writer was disposed.</exception>
    /// <exception cref="IOException">The stream fails.</exception>
    public void WriteBlock(ReadOnlySpan<int> ids, ReadOnlySpan<float> logProbabilities)
    {
        Half[] halves = ArrayPool<Half>.Shared.Rent(Math.Max(logProbabilities.Length, 1));
        try
        {
            System.Numerics.Tensors.TensorPrimitives.ConvertToHalf(logProbabilities, halves.AsSpan(0, logProbabilities.Length));
            WriteCore(ids, halves.AsSpan(0, logProbabilities.Length), nameof(ids), nameof(logProbabilities));
        }
        finally
        {
            ArrayPool<Half>.Shared.Return(halves);
        }
    }

    /// <summary>Appends every row of <paramref name="teacher"/> as one block (its layout is not stored; float values are rounded to binary16).</summary>
    /// <param name="teacher">A top-k teacher with this store's V, k and T_gen.</param>
    /// <exception cref="ArgumentException">V, k or T_gen differ from the store's, or as for the other forms.</exception>
    /// <exception cref="ArgumentOutOfRangeException">An id is outside [0, V) and not −1.</exception>
    /// <exception cref="InvalidOperationException">The store was completed.</exception>
    /// <exception cref="ObjectDisposedException">The writer was disposed.</exception>
    /// <exception cref="IOException">The stream fails.</exception>
    public void WriteBlock(TopKTeacherDistribution teacher)
    {
        if (teacher.VocabularySize != VocabularySize || teacher.K != K || teacher.GenerationTemperature != GenerationTemperature)
        {
            ThrowHelper.Argument(nameof(teacher), ThrowHelper.Format($"The teacher has V = {teacher.VocabularySize}, k = {teacher.K}, T_gen = {teacher.GenerationTemperature}; this store holds V = {VocabularySize}, k = {K}, T_gen = {GenerationTemperature}."));
        }

        if (teacher.IsHalfPrecision)
        {
            WriteCore(teacher.Ids.Span, teacher.HalfLogProbabilities.Span, nameof(teacher), nameof(teacher));
        }
        else
        {
            WriteBlock(teacher.Ids.Span, teacher.LogProbabilities.Span);
        }
    }

    /// <summary>Appends the end marker (total rows and blocks) and flushes. Further writes throw; calling it twice does nothing.</summary>
    /// <exception cref="ObjectDisposedException">The writer was disposed.</exception>
    /// <exception cref="IOException">The stream fails.</exception>
    public void Complete()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_completed)
        {
            return;
        }

        Span<byte> end = stackalloc byte[TeacherStoreFormat.EndBytes];
        TeacherStoreFormat.EndMagic.CopyTo(end);
        BinaryPrimitives.WriteInt64LittleEndian(end[4..], RowCount);
        BinaryPrimitives.WriteInt64LittleEndian(end[12..], BlockCount);
        BinaryPrimitives.WriteUInt32LittleEndian(end[20..], Crc32.HashToUInt32(end[4..20]));
        _stream.Write(end);
        _stream.Flush();
        BytesWritten += TeacherStoreFormat.EndBytes;
        _completed = true;
    }

    /// <summary>Closes the stream (unless the writer was created with leaveOpen). Does not complete the store.</summary>
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

    private void WriteCore(ReadOnlySpan<int> ids, ReadOnlySpan<Half> logProbabilities, string idsName, string valuesName)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_completed)
        {
            throw new InvalidOperationException("The store was completed; no rows can be added after its end marker.");
        }

        if (ids.Length != logProbabilities.Length)
        {
            ThrowHelper.Argument(valuesName, ThrowHelper.Format($"There are {ids.Length} ids and {logProbabilities.Length} log-probabilities; they must be the same (rows × k)."));
        }

        if (ids.Length % K != 0)
        {
            ThrowHelper.Argument(idsName, ThrowHelper.Format($"The block holds {ids.Length} entries, which is not a multiple of k = {K}."));
        }

        if (ids.IsEmpty)
        {
            return;
        }

        long body = (long)ids.Length * TeacherStoreFormat.BytesPerSlot;
        if (body > TeacherStoreFormat.MaxBlockBodyBytes)
        {
            ThrowHelper.Argument(idsName, ThrowHelper.Format($"The block would take {body} bytes; split it into blocks of at most {TeacherStoreFormat.MaxBlockBodyBytes} bytes ({TeacherStoreFormat.MaxBlockBodyBytes / (TeacherStoreFormat.BytesPerSlot * K)} rows)."));
        }

        int rows = ids.Length / K;
        var everyRow = new RowSelection(rows, default, default, 0, null);
        TopKChecks.Values(ids, default, logProbabilities, K, VocabularySize, rows, ResidualMassPolicy.MissingAsZero, everyRow, idsName, valuesName, RowCount);

        int size = TeacherStoreFormat.BlockHeadBytes + (int)body + 4;
        byte[] buffer = ArrayPool<byte>.Shared.Rent(size);
        try
        {
            Span<byte> block = buffer.AsSpan(0, size);
            TeacherStoreFormat.BlockMagic.CopyTo(block);
            BinaryPrimitives.WriteInt32LittleEndian(block[4..], rows);
            BinaryPrimitives.WriteInt64LittleEndian(block[8..], RowCount);
            TeacherStoreFormat.WriteIds(ids, block[TeacherStoreFormat.BlockHeadBytes..]);
            TeacherStoreFormat.WriteHalves(logProbabilities, block[(TeacherStoreFormat.BlockHeadBytes + (4 * ids.Length))..]);
            BinaryPrimitives.WriteUInt32LittleEndian(block[^4..], Crc32.HashToUInt32(block[4..^4]));
            _stream.Write(block);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }

        RowCount += rows;
        BlockCount++;
        BytesWritten += size;
    }
}
