using System;
using System.Numerics.Tensors;
using Distillation.Internal;

namespace Distillation;

/// <summary>
/// Maps a teacher's vocabulary onto the student's when the two differ — padded embedding tables of different sizes
/// (152064 vs 151936) or an explicit id map — so that a teacher's rows can be distilled into the student.
/// </summary>
/// <remarks>
/// <para><b>Rules.</b> Teacher id t goes to student id <see cref="StudentId"/>(t), or to none (−1). A student id receives
/// at most one teacher id (the map is injective: merging two teacher tokens would not commute with the temperature).
/// A student id that no teacher id maps to has teacher probability 0 (an impossible token: −∞ in a dense teacher,
/// absent from a top-k one). Teacher tokens without a student id follow <see cref="Unmapped"/>: rejected unless they
/// carry no mass (<see cref="UnmappedTeacherTokens.Reject"/>, the default for padding), or dropped
/// (<see cref="UnmappedTeacherTokens.Drop"/>).</para>
/// <para><b>Padding</b> (<see cref="Padded"/>): ids below min(V_t, V_s) map to themselves. A longer teacher's extra ids
/// are padding tokens (unmapped); a longer student's extra ids are impossible for the teacher.</para>
/// <para>Instances are immutable and thread-safe.</para>
/// </remarks>
public sealed class VocabularyMapping
{
    /// <summary>The largest total probability per row that <see cref="UnmappedTeacherTokens.Reject"/> accepts on unmapped teacher tokens.</summary>
    public const double UnmappedMassTolerance = 1e-6;

    private readonly int[] _toStudent;

    private VocabularyMapping(int[] toStudent, int studentVocabularySize, UnmappedTeacherTokens unmapped)
    {
        _toStudent = toStudent;
        StudentVocabularySize = studentVocabularySize;
        Unmapped = unmapped;
    }

    /// <summary>V_t, the teacher's vocabulary size.</summary>
    public int TeacherVocabularySize => _toStudent.Length;

    /// <summary>V_s, the student's vocabulary size.</summary>
    public int StudentVocabularySize { get; }

    /// <summary>What happens to teacher tokens that have no student id.</summary>
    public UnmappedTeacherTokens Unmapped { get; }

    /// <summary>
    /// The identity on [0, min(V_t, V_s)): vocabularies that differ only by padding at the end of the embedding table.
    /// </summary>
    /// <param name="teacherVocabularySize">V_t, at least 1.</param>
    /// <param name="studentVocabularySize">V_s, at least 1.</param>
    /// <param name="unmapped">What to do with teacher ids ≥ V_s (default: reject any mass on them).</param>
    /// <returns>The mapping.</returns>
    /// <exception cref="ArgumentOutOfRangeException">A size is less than 1, or <paramref name="unmapped"/> is not a defined value.</exception>
    public static VocabularyMapping Padded(int teacherVocabularySize, int studentVocabularySize, UnmappedTeacherTokens unmapped = UnmappedTeacherTokens.Reject)
    {
        CheckSize(teacherVocabularySize, nameof(teacherVocabularySize));
        CheckSize(studentVocabularySize, nameof(studentVocabularySize));
        CheckRule(unmapped);
        var map = new int[teacherVocabularySize];
        for (int t = 0; t < map.Length; t++)
        {
            map[t] = t < studentVocabularySize ? t : -1;
        }

        return new VocabularyMapping(map, studentVocabularySize, unmapped);
    }

    /// <summary>An explicit map: teacher id t goes to student id <c>studentIdOfTeacherId[t]</c>, or nowhere when it is −1.</summary>
    /// <param name="studentIdOfTeacherId">V_t entries, each −1 or in [0, V_s), no student id twice.</param>
    /// <param name="studentVocabularySize">V_s, at least 1.</param>
    /// <param name="unmapped">What to do with teacher ids mapped to −1 (default: drop them).</param>
    /// <returns>The mapping (it keeps its own copy of the map).</returns>
    /// <exception cref="ArgumentException">The map is empty, or a student id appears twice (the message names both teacher ids).</exception>
    /// <exception cref="ArgumentOutOfRangeException">An entry is outside [−1, V_s), V_s &lt; 1, or <paramref name="unmapped"/> is not a defined value.</exception>
    public static VocabularyMapping FromTeacherToStudent(ReadOnlySpan<int> studentIdOfTeacherId, int studentVocabularySize, UnmappedTeacherTokens unmapped = UnmappedTeacherTokens.Drop)
    {
        CheckSize(studentVocabularySize, nameof(studentVocabularySize));
        CheckRule(unmapped);
        if (studentIdOfTeacherId.IsEmpty)
        {
            ThrowHelper.Argument(nameof(studentIdOfTeacherId), "The map needs one entry per teacher id.");
        }

        var owner = new int[studentVocabularySize];
        owner.AsSpan().Fill(-1);
        for (int t = 0; t < studentIdOfTeacherId.Length; t++)
        {
            int s = studentIdOfTeacherId[t];
            if (s == -1)
            {
                continue;
            }

            if ((uint)s >= (uint)studentVocabularySize)
            {
                ThrowHelper.OutOfRange(nameof(studentIdOfTeacherId), s, ThrowHelper.Format($"Teacher id {t} maps to {s}, outside [0, {studentVocabularySize}) (use −1 for no student id)."));
            }

            if (owner[s] >= 0)
            {
                ThrowHelper.Argument(nameof(studentIdOfTeacherId), ThrowHelper.Format($"Teacher ids {owner[s]} and {t} both map to student id {s}; the map must be one-to-one."));
            }

            owner[s] = t;
        }

        return new VocabularyMapping(studentIdOfTeacherId.ToArray(), studentVocabularySize, unmapped);
    }

    /// <summary>The student id of teacher id <paramref name="teacherId"/>, or −1 when it has none.</summary>
    /// <param name="teacherId">A teacher id in [0, V_t).</param>
    /// <returns>The student id or −1.</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="teacherId"/> is outside [0, V_t).</exception>
    public int StudentId(int teacherId)
    {
        if ((uint)teacherId >= (uint)_toStudent.Length)
        {
            ThrowHelper.OutOfRange(nameof(teacherId), teacherId, ThrowHelper.Format($"The teacher id must lie in [0, {_toStudent.Length})."));
        }

        return _toStudent[teacherId];
    }

    /// <summary>
    /// A top-k teacher over the student's vocabulary: each kept id mapped; a slot whose id has no student counterpart
    /// becomes an empty slot (id −1, log-probability −∞), so its mass joins the missing mass — after the
    /// <see cref="UnmappedTeacherTokens.Reject"/> check when that is the rule. Policy, T_gen and layout are kept.
    /// Allocates the new ids and log-probabilities (rows × k each).
    /// </summary>
    /// <param name="teacher">A top-k teacher whose ids index the teacher's vocabulary (V = V_t).</param>
    /// <returns>The mapped teacher (V = V_s).</returns>
    /// <exception cref="ArgumentException">The teacher's vocabulary is not V_t, or (Reject) a row puts more than <see cref="UnmappedMassTolerance"/> on unmapped ids.</exception>
    /// <exception cref="ArgumentOutOfRangeException">A teacher id is outside [0, V_t) and not −1.</exception>
    public TopKTeacherDistribution Map(TopKTeacherDistribution teacher)
    {
        if (teacher.VocabularySize != TeacherVocabularySize)
        {
            ThrowHelper.Argument(nameof(teacher), ThrowHelper.Format($"The teacher's ids index {teacher.VocabularySize} tokens; this mapping is from a vocabulary of {TeacherVocabularySize}."));
        }

        int k = teacher.K, rows = teacher.RowCount;
        ReadOnlySpan<int> ids = teacher.Ids.Span;
        var mappedIds = new int[ids.Length];
        float[]? floats = teacher.IsHalfPrecision ? null : teacher.LogProbabilities.ToArray();
        Half[]? halves = teacher.IsHalfPrecision ? teacher.HalfLogProbabilities.ToArray() : null;
        for (int r = 0; r < rows; r++)
        {
            double dropped = 0;
            int firstDropped = -1;
            for (int i = 0; i < k; i++)
            {
                int at = (r * k) + i, t = ids[at];
                if (t == TopKTeacherDistribution.EmptySlot)
                {
                    mappedIds[at] = t;
                    continue;
                }

                if ((uint)t >= (uint)TeacherVocabularySize)
                {
                    ThrowHelper.OutOfRange(nameof(teacher), t, ThrowHelper.Format($"The top-k teacher's id at row {r}, slot {i} is {t}: ids must lie in [0, {TeacherVocabularySize}) (or be −1 for an empty slot)."));
                }

                int s = _toStudent[t];
                mappedIds[at] = s;
                if (s >= 0)
                {
                    continue;
                }

                double logp = halves is null ? floats![at] : (float)halves[at];
                dropped += double.IsNaN(logp) ? double.PositiveInfinity : Math.Exp(logp);
                firstDropped = firstDropped < 0 ? t : firstDropped;
                if (halves is null)
                {
                    floats![at] = float.NegativeInfinity;
                }
                else
                {
                    halves[at] = Half.NegativeInfinity;
                }
            }

            CheckDropped(dropped, r, firstDropped, nameof(teacher));
        }

        return halves is null
            ? TopKTeacherDistribution.FromLogProbabilities(mappedIds, floats, k, StudentVocabularySize, teacher.Residual, teacher.Layout, teacher.GenerationTemperature)
            : TopKTeacherDistribution.FromLogProbabilities(mappedIds, halves.AsMemory(), k, StudentVocabularySize, teacher.Residual, teacher.Layout, teacher.GenerationTemperature);
    }

    /// <summary>
    /// A dense teacher over the student's vocabulary, written into <paramref name="destination"/> (rows × V_s): each
    /// student column takes its teacher token's value, student ids no teacher id maps to get −∞ (probability 0), and
    /// unmapped teacher tokens are dropped (after the <see cref="UnmappedTeacherTokens.Reject"/> check, at T = 1) —
    /// the softmax renormalises logits and log-probabilities over what remains; probabilities are renormalised here.
    /// The kind and layout are kept; Half values are widened exactly.
    /// </summary>
    /// <param name="teacher">A dense teacher over V_t.</param>
    /// <param name="destination">Rows × V_s floats, overwritten; must not overlap the teacher's buffer.</param>
    /// <returns>A teacher over <paramref name="destination"/>.</returns>
    /// <exception cref="ArgumentException">The teacher's vocabulary is not V_t, <paramref name="destination"/> has the wrong length or overlaps the teacher, or (Reject) a row puts more than <see cref="UnmappedMassTolerance"/> on unmapped tokens.</exception>
    public TeacherDistribution Map(TeacherDistribution teacher, Memory<float> destination)
    {
        int vt = TeacherVocabularySize, vs = StudentVocabularySize;
        if (teacher.VocabularySize != vt)
        {
            ThrowHelper.Argument(nameof(teacher), ThrowHelper.Format($"The teacher has {teacher.VocabularySize} columns; this mapping is from a vocabulary of {vt}."));
        }

        int rows = teacher.RowCount;
        if (destination.Length != (long)rows * vs)
        {
            ThrowHelper.Argument(nameof(destination), ThrowHelper.Format($"The destination has {destination.Length} entries; it must have rows × V_s = {(long)rows * vs}."));
        }

        Span<float> output = destination.Span;
        if (output.Overlaps(teacher.Values.Span) || System.Runtime.InteropServices.MemoryMarshal.AsBytes(output).Overlaps(System.Runtime.InteropServices.MemoryMarshal.AsBytes(teacher.HalfValues.Span)))
        {
            ThrowHelper.Argument(nameof(destination), "The destination overlaps the teacher's buffer.");
        }

        bool probabilities = teacher.Kind == DistributionKind.Probabilities;
        float[] widened = new float[teacher.IsHalfPrecision ? vt : 0];
        for (int r = 0; r < rows; r++)
        {
            ReadOnlySpan<float> row = teacher.Row(r, widened);
            Span<float> target = output.Slice(r * vs, vs);
            target.Fill(probabilities ? 0f : float.NegativeInfinity);
            double kept = 0, dropped = 0;
            int firstDropped = -1;
            double lse = Unmapped == UnmappedTeacherTokens.Reject && !probabilities ? LogSumExp(row) : 0;
            for (int t = 0; t < vt; t++)
            {
                int s = _toStudent[t];
                if (s >= 0)
                {
                    target[s] = row[t];
                    kept += probabilities ? row[t] : 0;
                }
                else if (Unmapped == UnmappedTeacherTokens.Reject)
                {
                    double p = probabilities ? row[t] : Math.Exp(row[t] - lse);
                    dropped += double.IsNaN(p) ? double.PositiveInfinity : p;
                    firstDropped = firstDropped < 0 && p > 0 ? t : firstDropped;
                }
            }

            CheckDropped(dropped, r, firstDropped, nameof(teacher));
            if (probabilities && kept > 0 && kept != 1)
            {
                TensorPrimitives.Multiply(target, (float)(1 / kept), target);
            }
        }

        return teacher.Kind switch
        {
            DistributionKind.Probabilities => TeacherDistribution.FromProbabilities(destination, vs, teacher.Layout),
            DistributionKind.LogProbabilities => TeacherDistribution.FromLogProbabilities(destination, vs, teacher.Layout),
            _ => TeacherDistribution.FromLogits(destination, vs, teacher.Layout),
        };
    }

    private void CheckDropped(double dropped, int row, int firstDropped, string paramName)
    {
        if (Unmapped == UnmappedTeacherTokens.Reject && !(dropped <= UnmappedMassTolerance))
        {
            ThrowHelper.Argument(paramName, ThrowHelper.Format($"Row {row} puts probability {dropped:G6} on teacher tokens with no student id (the first is {firstDropped}); UnmappedTeacherTokens.Reject allows at most {UnmappedMassTolerance}. Use UnmappedTeacherTokens.Drop to drop them."));
        }
    }

    private static double LogSumExp(ReadOnlySpan<float> row)
    {
        double max = double.NegativeInfinity, sum = 0;
        foreach (float v in row)
        {
            max = Math.Max(max, v);
        }

        if (!double.IsFinite(max))
        {
            return max;
        }

        foreach (float v in row)
        {
            sum += Math.Exp(v - max);
        }

        return max + Math.Log(sum);
    }

    private static void CheckSize(int size, string paramName)
    {
        if (size < 1)
        {
            ThrowHelper.OutOfRange(paramName, size, "A vocabulary size must be at least 1.");
        }
    }

    private static void CheckRule(UnmappedTeacherTokens unmapped)
    {
        if (unmapped is not (UnmappedTeacherTokens.Reject or UnmappedTeacherTokens.Drop))
        {
            ThrowHelper.OutOfRange(nameof(unmapped), unmapped, "Unknown rule for unmapped teacher tokens.");
        }
    }
}
