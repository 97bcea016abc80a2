namespace Distillation;

/// <summary>What one call of <see cref="DistillationObjective.Compute(TeacherDistribution, StudentDistribution, TokenLabels, System.Span{float}, long, Reduction, bool)"/> (or its top-k form) returns, ready to log.</summary>
/// <param name="Total">The objective: λ·KD + (1 − λ)·LM (or LM + λ·KD), per token with the token rule; a term of weight 0 is left out.</param>
/// <param name="Distillation">The distillation term alone, reduced (× T² when configured), whatever its weight.</param>
/// <param name="LanguageModel">The hard-label term alone, reduced.</param>
/// <param name="Lambda">λ of the schedule at this step.</param>
/// <param name="MeanTokenLambda">The mean λ_r over real tokens (λ itself without a token rule).</param>
/// <param name="TokenCount">Real rows (not padding, label not ignored): both terms use this count.</param>
/// <param name="SequenceCount">Sequences with at least one real row.</param>
/// <param name="Metrics">Logging metrics, when asked for.</param>
public readonly record struct ObjectiveResult(double Total, double Distillation, double LanguageModel, double Lambda, double MeanTokenLambda, int TokenCount, int SequenceCount, ObjectiveMetrics? Metrics);

/// <summary>Per-batch metrics over the real tokens, for logging.</summary>
/// <param name="TeacherEntropy">Mean entropy of p_t at the distillation temperature, in nats.</param>
/// <param name="StudentEntropy">Mean entropy of p_s at the distillation temperature, in nats.</param>
/// <param name="TopOneAgreement">Fraction of tokens where the teacher's and the student's most likely tokens agree.</param>
/// <param name="TeacherLabelAgreement">Fraction of tokens where the teacher's most likely token is the label.</param>
public readonly record struct ObjectiveMetrics(double TeacherEntropy, double StudentEntropy, double TopOneAgreement, double TeacherLabelAgreement);
