using System;

namespace Distillation;

/// <summary>
/// Ground-truth token ids, one per row, with an ignore index (PyTorch's convention: −100 by default).
/// </summary>
/// <remarks>
/// A row whose label equals <see cref="IgnoreIndex"/> is excluded from every loss it is given to — the
/// hard-label loss and, when passed to a distillation loss, the divergence too (as TRL does). When a layout's
/// padding mask is also given, a row counts only if the mask keeps it <em>and</em> its label is not ignored:
/// exclusion wins. Every other label must lie in [0, V) — padded rows' labels included — and the ignore index must
/// lie outside [0, V) (checked by the loss). The struct is a cheap view and allocates nothing.
/// </remarks>
public readonly struct TokenLabels
{
    /// <summary>PyTorch's default ignore index.</summary>
    public const int DefaultIgnoreIndex = -100;

    /// <summary>Labels over <paramref name="ids"/>.</summary>
    /// <param name="ids">One token id per row.</param>
    /// <param name="ignoreIndex">The id that marks a row to ignore; it must lie outside [0, V) of the vocabularies it is used with.</param>
    public TokenLabels(ReadOnlyMemory<int> ids, int ignoreIndex = DefaultIgnoreIndex)
    {
        Ids = ids;
        IgnoreIndex = ignoreIndex;
    }

    /// <summary>The token id of each row.</summary>
    public ReadOnlyMemory<int> Ids { get; }

    /// <summary>The id that marks a row as ignored.</summary>
    public int IgnoreIndex { get; }

    /// <summary>The number of rows labelled.</summary>
    public int Length => Ids.Length;
}
