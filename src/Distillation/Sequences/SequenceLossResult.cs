namespace Distillation;

/// <summary>The sequence-level losses for one set of candidates.</summary>
/// <param name="CrossEntropy">−Σ_k w_k b_k: the sequence-level cross-entropy (or its estimate). +∞ when a weighted candidate is impossible for the student.</param>
/// <param name="KL">The sequence-level KL(P_t ‖ P_s) (or its estimate): see <see cref="SequenceEstimator"/> for each form.</param>
/// <param name="TeacherEntropy">The teacher's sequence entropy (or its estimate) in nats: CE = KL + H for the exact form.</param>
/// <param name="CandidateCount">K, the number of candidates.</param>
/// <param name="TeacherMass">Σ_k e^{a_k}: the teacher's probability of the candidate set (1 when it is the whole space).</param>
public readonly record struct SequenceLossResult(double CrossEntropy, double KL, double TeacherEntropy, int CandidateCount, double TeacherMass);
