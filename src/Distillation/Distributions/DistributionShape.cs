using System;
using Distillation.Internal;

namespace Distillation;

/// <summary>Validation shared by the teacher and student factories.</summary>
internal static class DistributionShape
{
    public static int Rows(int length, int vocabularySize, SequenceLayout? layout, string valuesName)
    {
        if (vocabularySize <= 0)
        {
            ThrowHelper.OutOfRange(nameof(vocabularySize), vocabularySize, "The vocabulary size must be at least 1.");
        }

        if (length % vocabularySize != 0)
        {
            ThrowHelper.Argument(valuesName, ThrowHelper.Format($"The buffer has {length} values, which is not a multiple of the vocabulary size {vocabularySize}."));
        }

        int rows = length / vocabularySize;
        if (layout is not null && layout.RowCount != rows)
        {
            ThrowHelper.Argument(nameof(layout), ThrowHelper.Format($"The layout has {layout.RowCount} rows but the buffer holds {rows} rows of {vocabularySize}."));
        }

        return rows;
    }

    public static void CheckInitialized(int vocabularySize, string paramName)
    {
        if (vocabularySize <= 0)
        {
            ThrowHelper.Argument(paramName, "The distribution is uninitialised (default); create it with one of its factory methods.");
        }
    }
}
