namespace Distillation.Kernels;

/// <summary>What a row kernel found. Anything but <see cref="Ok"/> is turned into an argument exception by the driver.</summary>
internal enum RowStatus
{
    Ok = 0,

    /// <summary>A teacher value is NaN or +∞ (or, for probabilities, negative).</summary>
    TeacherInvalidValue,

    /// <summary>Every teacher value is −∞ (or every probability 0): the row has no mass.</summary>
    TeacherNoMass,

    /// <summary>Teacher probabilities do not sum to 1 within the tolerance.</summary>
    TeacherBadSum,

    /// <summary>A student value is NaN or +∞.</summary>
    StudentInvalidValue,

    /// <summary>Every student value is −∞.</summary>
    StudentNoMass,
}

/// <summary>Which implementation computes a row: the double-precision reference or a vector width.</summary>
internal enum KernelPath
{
    /// <summary>The readable double-precision scalar reference.</summary>
    Scalar = 0,

    /// <summary>Vector256 fused kernels (rows shorter than 8 use the reference).</summary>
    Vector256 = 1,

    /// <summary>Vector512 fused kernels (rows shorter than 16 use Vector256 or the reference).</summary>
    Vector512 = 2,
}

/// <summary>Chooses the kernel path the hardware supports.</summary>
internal static class KernelPaths
{
    /// <summary>The widest accelerated path on this machine.</summary>
    public static KernelPath Best { get; } =
        System.Runtime.Intrinsics.Vector512.IsHardwareAccelerated ? KernelPath.Vector512
        : System.Runtime.Intrinsics.Vector256.IsHardwareAccelerated ? KernelPath.Vector256
        : KernelPath.Scalar;

    /// <summary>The path to use for a row of length <paramref name="n"/>, never wider than the row.</summary>
    public static KernelPath ForRow(KernelPath requested, int n) =>
        requested == KernelPath.Vector512 && n >= 16 ? KernelPath.Vector512
        : requested >= KernelPath.Vector256 && n >= 8 ? KernelPath.Vector256
        : KernelPath.Scalar;
}
