using System.IO;
using System.Reflection;
using Distillation.TorchSharp.Build;

namespace Distillation.TorchSharp.Tests;

/// <summary>
/// The build step that makes libLibTorchSharp.so load on a libstdc++ older than GCC 13's: what it did to the output
/// directory's copy on this machine, that the package cache is untouched, and the ELF patch itself on a copy.
/// </summary>
public class LibStdCxxFixTests
{
    private const string Version32 = "GLIBCXX_3.4.32";

    private static bool OnLinuxX64 => OperatingSystem.IsLinux() && System.Runtime.InteropServices.RuntimeInformation.ProcessArchitecture == System.Runtime.InteropServices.Architecture.X64;

    private static string OutputCopy => Path.Combine(AppContext.BaseDirectory, "runtimes", "linux-x64", "native", "libLibTorchSharp.so");

    private static string PackageCopy
    {
        get
        {
            string root = typeof(LibStdCxxFixTests).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>().Single(a => a.Key == "NuGetPackageRoot").Value!;
            Version version = typeof(torch).Assembly.GetName().Version!;
            return Path.Combine(root, "torchsharp", $"{version.Major}.{version.Minor}.{version.Build}", "runtimes", "linux-x64", "native", "libLibTorchSharp.so");
        }
    }

    [Fact]
    public void TorchSharpLoadsAndRuns()
    {
        ones(3).sum().item<float>().Should().Be(3f);
    }

    [Fact]
    public void TheOutputCopy_IsPatchedExactlyWhereTheSystemLibStdCxxLacksAVersion()
    {
        if (!OnLinuxX64)
        {
            return;
        }

        byte[] package = File.ReadAllBytes(PackageCopy), output = File.ReadAllBytes(OutputCopy);
        HashSet<string> defined = ElfVersions.ReadDefinitions(File.ReadAllBytes(SystemLibraries.FindLibStdCxx()!));
        List<VersionRequirement> missing = ElfVersions.ReadRequirements(package).Where(r => r.File == "libstdc++.so.6" && !defined.Contains(r.Version)).ToList();

        output.Length.Should().Be(package.Length);
        int[] changed = Enumerable.Range(0, package.Length).Where(i => package[i] != output[i]).ToArray();
        if (missing.Count == 0)
        {
            changed.Should().BeEmpty("this machine's libstdc++ defines every version the library asks for, so the copy is left alone");
            return;
        }

        missing.Select(r => r.Version).Should().Equal(Version32);
        VersionRequirement patched = ElfVersions.ReadRequirements(output).Single(r => r.Version == Version32);
        patched.IsWeak.Should().BeTrue();
        changed.Should().OnlyContain(i => i == patched.FlagsOffset || i == patched.FlagsOffset + 1, "only the flags of the missing version's entry change");
        ElfVersions.ReadRequirements(output).Where(r => r.Version != Version32).Should().OnlyContain(r => !r.IsWeak);
    }

    [Fact]
    public void ThePackageCacheCopy_IsNeverPatched()
    {
        if (!OnLinuxX64)
        {
            return;
        }

        ElfVersions.ReadRequirements(File.ReadAllBytes(PackageCopy)).Should().OnlyContain(r => !r.IsWeak);
    }

    [Fact]
    public void Weakening_TouchesOnlyTheUnusedVersion_AndIsIdempotent()
    {
        if (!OnLinuxX64)
        {
            return;
        }

        byte[] library = File.ReadAllBytes(PackageCopy);
        HashSet<string> upTo30 = ElfVersions.ReadRequirements(library).Select(r => r.Version).Where(v => v != Version32).ToHashSet();

        WeakeningResult first = ElfVersions.WeakenMissing(library, "libstdc++.so.6", upTo30, ElfVersions.NeverCalledSymbols);
        first.Weakened.Should().Equal(Version32);
        first.WeakenedSymbols.Should().Equal("_ZSt21ios_base_library_initv");
        first.Blocked.Should().BeEmpty();
        ElfVersions.ReadRequirements(library).Single(r => r.Version == Version32).IsWeak.Should().BeTrue();

        byte[] once = (byte[])library.Clone();
        WeakeningResult second = ElfVersions.WeakenMissing(library, "libstdc++.so.6", upTo30, ElfVersions.NeverCalledSymbols);
        second.Weakened.Should().BeEmpty();
        library.Should().Equal(once);
    }

    [Fact]
    public void Weakening_DoesNothingWhereTheVersionIsDefined()
    {
        if (!OnLinuxX64)
        {
            return;
        }

        // A newer distribution: its libstdc++ defines GLIBCXX_3.4.32, so the file must stay byte for byte the same.
        byte[] library = File.ReadAllBytes(PackageCopy), before = (byte[])library.Clone();
        HashSet<string> all = ElfVersions.ReadRequirements(library).Select(r => r.Version).ToHashSet();

        WeakeningResult result = ElfVersions.WeakenMissing(library, "libstdc++.so.6", all, ElfVersions.NeverCalledSymbols);

        result.Weakened.Should().BeEmpty();
        result.Blocked.Should().BeEmpty();
        library.Should().Equal(before);
    }

    [Fact]
    public void Weakening_RefusesAVersionWhoseSymbolsAreUsed()
    {
        if (!OnLinuxX64)
        {
            return;
        }

        // Pretend the system also lacked GLIBCXX_3.4.30: std::condition_variable::wait is called through it, so that
        // requirement must stay fatal (a weak one would only move the failure to the first call).
        byte[] library = File.ReadAllBytes(PackageCopy);
        HashSet<string> upTo29 = ElfVersions.ReadRequirements(library).Select(r => r.Version).Where(v => v is not (Version32 or "GLIBCXX_3.4.30")).ToHashSet();

        WeakeningResult result = ElfVersions.WeakenMissing(library, "libstdc++.so.6", upTo29, ElfVersions.NeverCalledSymbols);

        result.Weakened.Should().Equal(Version32);
        result.Blocked.Should().ContainSingle().Which.Should().StartWith("GLIBCXX_3.4.30 (").And.Contain("condition_variable");
        ElfVersions.ReadRequirements(library).Single(r => r.Version == "GLIBCXX_3.4.30").IsWeak.Should().BeFalse();
        ElfVersions.SymbolsBoundTo(library, ElfVersions.ReadRequirements(library).Single(r => r.Version == Version32).Index)
            .Should().ContainSingle().Which.IsRelocated.Should().BeFalse();
    }

    [Fact]
    public void FilesThatAreNotElf_AreRefused()
    {
        ((Action)(() => ElfVersions.ReadRequirements(new byte[100]))).Should().Throw<InvalidDataException>();
        byte[] truncated = new byte[64];
        truncated[0] = 0x7f;
        truncated[1] = (byte)'E';
        truncated[2] = (byte)'L';
        truncated[3] = (byte)'F';
        truncated[4] = 2;
        truncated[5] = 1;
        truncated[0x28] = 0xff; // a section table past the end
        truncated[0x3a] = 64;
        truncated[0x3c] = 3;
        ((Action)(() => ElfVersions.ReadRequirements(truncated))).Should().Throw<InvalidDataException>();
    }
}
