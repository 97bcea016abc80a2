namespace Distillation;

/// <summary>How the distillation term and the hard-label term are combined.</summary>
public enum ObjectiveForm
{
    /// <summary>L = λ·L_KD + (1 − λ)·L_LM (Hinton; torchdistill; Megatron's (1−α)·LM + α·KD). λ = 1 is pure distillation, λ = 0 pure LM.</summary>
    Interpolated = 0,

    /// <summary>L = L_LM + λ·L_KD: the hard loss always at full weight, distillation added on top.</summary>
    Additive = 1,
}

/// <summary>
/// An adaptive rule that turns the step's λ into a per-token λ_r from the batch itself (λ_r ≤ λ, so every λ_r
/// stays in [0, 1]). With <see cref="ObjectiveForm.Interpolated"/> the hard-label weight is 1 − λ_r.
/// </summary>
public enum TokenWeighting
{
    /// <summary>λ_r = λ for every token.</summary>
    None = 0,

    /// <summary>λ_r = λ · max_j p_t(j): trust the teacher in proportion to its confidence (p_t at T = 1).</summary>
    TeacherConfidence = 1,

    /// <summary>
    /// λ_r = λ where the teacher's top-1 token is the label, λ · <see cref="DistillationObjectiveOptions.MismatchWeight"/>
    /// where it is not: do not distil the teacher's mistakes (with MismatchWeight = 0 those tokens learn from the label alone).
    /// </summary>
    TeacherCorrectness = 2,
}
