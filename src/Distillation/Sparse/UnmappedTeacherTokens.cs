namespace Distillation;

/// <summary>What a <see cref="VocabularyMapping"/> does with teacher tokens that have no student counterpart.</summary>
public enum UnmappedTeacherTokens
{
    /// <summary>
    /// They must carry no mass: per row, their total probability (at the stored temperature) must not exceed
    /// <see cref="VocabularyMapping.UnmappedMassTolerance"/>, otherwise mapping throws <see cref="System.ArgumentException"/>
    /// naming the row and the token. Within the tolerance they are dropped as with <see cref="Drop"/>.
    /// </summary>
    Reject = 1,

    /// <summary>
    /// They are dropped. A top-k slot holding one becomes an empty slot, so its mass joins the missing mass and the
    /// teacher's <see cref="ResidualMassPolicy"/> decides what it means; a dense row is renormalised over the mapped tokens.
    /// </summary>
    Drop = 2,
}
