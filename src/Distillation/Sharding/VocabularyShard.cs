using System;
using Distillation.Internal;

namespace Distillation;

/// <summary>A contiguous slice [<see cref="Start"/>, <see cref="Start"/> + <see cref="Length"/>) of the vocabulary, as one tensor-parallel worker holds it.</summary>
public readonly struct VocabularyShard : IEquatable<VocabularyShard>
{
    /// <summary>The slice [start, start + length).</summary>
    /// <param name="start">The first token id of the slice, 0 or more.</param>
    /// <param name="length">The number of token ids, at least 1.</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="start"/> is negative, <paramref name="length"/> is less than 1, or the end overflows.</exception>
    public VocabularyShard(int start, int length)
    {
        if (start < 0)
        {
            ThrowHelper.OutOfRange(nameof(start), start, "A shard starts at token id 0 or later.");
        }

        if (length < 1 || (long)start + length > int.MaxValue)
        {
            ThrowHelper.OutOfRange(nameof(length), length, "A shard holds at least one token id and ends before int.MaxValue.");
        }

        Start = start;
        Length = length;
    }

    /// <summary>The first token id of the slice.</summary>
    public int Start { get; }

    /// <summary>The number of token ids in the slice.</summary>
    public int Length { get; }

    /// <summary>One past the last token id of the slice.</summary>
    public int End => Start + Length;

    /// <summary>
    /// Splits [0, <paramref name="vocabularySize"/>) into <paramref name="count"/> contiguous shards whose lengths differ by at most
    /// one (the first <c>V mod count</c> shards are one longer), as Megatron's vocabulary-parallel layers do.
    /// </summary>
    /// <param name="vocabularySize">V, at least <paramref name="count"/>.</param>
    /// <param name="count">The number of shards, at least 1.</param>
    /// <returns>The shards, in order.</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="count"/> is less than 1 or greater than V.</exception>
    public static VocabularyShard[] Split(int vocabularySize, int count)
    {
        if (count < 1 || count > vocabularySize)
        {
            ThrowHelper.OutOfRange(nameof(count), count, ThrowHelper.Format($"The shard count must lie in [1, V] = [1, {vocabularySize}]."));
        }

        var shards = new VocabularyShard[count];
        int start = 0;
        for (int i = 0; i < count; i++)
        {
            int length = (vocabularySize / count) + (i < vocabularySize % count ? 1 : 0);
            shards[i] = new VocabularyShard(start, length);
            start += length;
        }

        return shards;
    }

    /// <inheritdoc />
    public bool Equals(VocabularyShard other) => Start == other.Start && Length == other.Length;

    /// <inheritdoc />
    public override bool Equals(object? obj) => obj is VocabularyShard other && Equals(other);

    /// <inheritdoc />
    public override int GetHashCode() => HashCode.Combine(Start, Length);

    /// <inheritdoc />
    public override string ToString() => ThrowHelper.Format($"[{Start}, {End})");

    /// <summary>Whether two shards are the same slice.</summary>
    /// <param name="left">The first shard.</param>
    /// <param name="right">The second shard.</param>
    /// <returns><see langword="true"/> when start and length agree.</returns>
    public static bool operator ==(VocabularyShard left, VocabularyShard right) => left.Equals(right);

    /// <summary>Whether two shards differ.</summary>
    /// <param name="left">The first shard.</param>
    /// <param name="right">The second shard.</param>
    /// <returns><see langword="true"/> when start or length differ.</returns>
    public static bool operator !=(VocabularyShard left, VocabularyShard right) => !left.Equals(right);
}
