using System;

namespace Distillation;

/// <summary>One block of rows read from a teacher store: its own copy of the ids and binary16 log-probabilities.</summary>
public sealed class TeacherStoreBlock
{
    internal TeacherStoreBlock(long firstRow, int rowCount, int k, int vocabularySize, float generationTemperature, int[] ids, Half[] logProbabilities)
    {
        FirstRow = firstRow;
        RowCount = rowCount;
        K = k;
        VocabularySize = vocabularySize;
        GenerationTemperature = generationTemperature;
        Ids = ids;
        LogProbabilities = logProbabilities;
    }

    /// <summary>The store's index of the block's first row (the rows written before it).</summary>
    public long FirstRow { get; }

    /// <summary>The rows in the block (at least 1).</summary>
    public int RowCount { get; }

    /// <summary>Slots per row.</summary>
    public int K { get; }

    /// <summary>The vocabulary size the ids index.</summary>
    public int VocabularySize { get; }

    /// <summary>The generation temperature T_gen the log-probabilities were produced at.</summary>
    public float GenerationTemperature { get; }

    /// <summary>RowCount × k ids, row-major.</summary>
    public ReadOnlyMemory<int> Ids { get; }

    /// <summary>RowCount × k binary16 log-probabilities, aligned with <see cref="Ids"/>.</summary>
    public ReadOnlyMemory<Half> LogProbabilities { get; }

    /// <summary>The block as a top-k teacher (no copy), with the store's V, k and T_gen.</summary>
    /// <param name="residual">What the missing mass means for the loss.</param>
    /// <param name="layout">Optional sequence layout and padding mask of the block's rows; its row count must be <see cref="RowCount"/>.</param>
    /// <returns>A view over the block's buffers.</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="residual"/> is not a defined value.</exception>
    /// <exception cref="ArgumentException">The layout's row count differs.</exception>
    public TopKTeacherDistribution ToTeacher(ResidualMassPolicy residual, SequenceLayout? layout = null) =>
        TopKTeacherDistribution.FromLogProbabilities(Ids, LogProbabilities, K, VocabularySize, residual, layout, GenerationTemperature);
}
