// Compiled by MSBuild's RoslynCodeTaskFactory from Distillation.TorchSharp.targets (netstandard2.0, no package
// references), and by the adapter's tests with DISTILLATION_ELF_ONLY defined (the ELF code alone, no MSBuild types).
// Keep it to plain C# that netstandard2.0 offers.
#nullable disable
using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Text;
#if !DISTILLATION_ELF_ONLY
using Microsoft.Build.Framework;
using Microsoft.Build.Utilities;
#endif

namespace Distillation.TorchSharp.Build
{
#if !DISTILLATION_ELF_ONLY
    /// <summary>
    /// Makes a copy of libLibTorchSharp.so loadable where the machine's libstdc++ lacks a symbol version that the
    /// file asks for but never uses (TorchSharp 0.107 asks GCC 13's GLIBCXX_3.4.32 only for
    /// <c>std::ios_base_library_init</c>, which no relocation references). For each such version the Vernaux entry's
    /// flags get VER_FLG_WEAK, so the dynamic loader no longer refuses the file. Does nothing when the machine's
    /// libstdc++ defines every version asked for, and never writes under <see cref="ProtectedDirectory"/>.
    /// </summary>
    public sealed class WeakenMissingLibStdCxxVersions : Task
    {
        /// <summary>The copies of libLibTorchSharp.so to check (in an output directory, never the package cache).</summary>
        [Required]
        public ITaskItem[] Libraries { get; set; } = new ITaskItem[0];

        /// <summary>A directory whose files must never be written (the NuGet package cache).</summary>
        public string ProtectedDirectory { get; set; } = string.Empty;

        /// <summary>The libstdc++.so.6 to compare against; found as the dynamic loader would find it when empty.</summary>
        public string LibStdCxxPath { get; set; } = string.Empty;

        /// <summary>The libraries that were patched.</summary>
        [Output]
        public ITaskItem[] Patched { get; set; } = new ITaskItem[0];

        public override bool Execute()
        {
            string libStdCxx = string.IsNullOrEmpty(LibStdCxxPath) ? SystemLibraries.FindLibStdCxx() : LibStdCxxPath;
            if (libStdCxx == null || !File.Exists(libStdCxx))
            {
                Log.LogMessage(MessageImportance.Normal, "Distillation.TorchSharp: no libstdc++.so.6 found; libLibTorchSharp.so left as it is.");
                return true;
            }

            HashSet<string> defined;
            try
            {
                defined = ElfVersions.ReadDefinitions(File.ReadAllBytes(libStdCxx));
            }
            catch (InvalidDataException e)
            {
                Log.LogWarning("Distillation.TorchSharp: cannot read the version definitions of {0} ({1}); libLibTorchSharp.so left as it is.", libStdCxx, e.Message);
                return true;
            }

            var patched = new List<ITaskItem>();
            foreach (ITaskItem item in Libraries)
            {
                string path = Path.GetFullPath(item.ItemSpec);
                if (IsUnder(path, ProtectedDirectory))
                {
                    Log.LogWarning("Distillation.TorchSharp: {0} lies in the package cache {1}; it is never patched.", path, ProtectedDirectory);
                    continue;
                }

                byte[] bytes = File.ReadAllBytes(path);
                WeakeningResult result;
                try
                {
                    result = ElfVersions.WeakenMissing(bytes, "libstdc++.so.6", defined, ElfVersions.NeverCalledSymbols);
                }
                catch (InvalidDataException e)
                {
                    Log.LogWarning("Distillation.TorchSharp: {0} is not an ELF file this task can read ({1}); left as it is.", path, e.Message);
                    continue;
                }

                foreach (string blocked in result.Blocked)
                {
                    Log.LogWarning("Distillation.TorchSharp: {0} needs {1}, which {2} does not define, and uses it; the library will not load here. Install a newer libstdc++ (GCC 13 or later).", path, blocked, libStdCxx);
                }

                if (result.Weakened.Count == 0)
                {
                    Log.LogMessage(MessageImportance.Low, "Distillation.TorchSharp: {0} needs nothing from libstdc++ that {1} lacks (or is already patched).", path, libStdCxx);
                    continue;
                }

                // A new file replaces the copy (never writing through a hard link or a symbolic link into the cache).
                string temporary = path + ".distillation-tmp";
                File.WriteAllBytes(temporary, bytes);
                File.Delete(path);
                File.Move(temporary, path);
                patched.Add(item);
                Log.LogMessage(MessageImportance.High, "Distillation.TorchSharp: {0} does not define {1}; marked that requirement weak in {2} (only {3} is bound to it, never called).", libStdCxx, string.Join(", ", result.Weakened), path, string.Join(", ", result.WeakenedSymbols));
            }

            Patched = patched.ToArray();
            return !Log.HasLoggedErrors;
        }

        private static bool IsUnder(string path, string directory)
        {
            if (string.IsNullOrEmpty(directory))
            {
                return false;
            }

            string root = Path.GetFullPath(directory).TrimEnd(Path.DirectorySeparatorChar) + Path.DirectorySeparatorChar;
            return path.StartsWith(root, StringComparison.Ordinal);
        }
    }
#endif

    /// <summary>What <see cref="ElfVersions.WeakenMissing"/> did.</summary>
    internal sealed class WeakeningResult
    {
        /// <summary>Versions whose requirement was marked weak.</summary>
        public List<string> Weakened { get; } = new List<string>();

        /// <summary>The symbols bound to the weakened versions.</summary>
        public List<string> WeakenedSymbols { get; } = new List<string>();

        /// <summary>Missing versions that could not be weakened, with the symbols that use them.</summary>
        public List<string> Blocked { get; } = new List<string>();
    }

    /// <summary>One Vernaux entry: a symbol version a file needs from one of its dependencies.</summary>
    internal sealed class VersionRequirement
    {
        public string File { get; set; } = string.Empty;

        public string Version { get; set; } = string.Empty;

        /// <summary>The version index symbols use to refer to it (vna_other).</summary>
        public int Index { get; set; }

        /// <summary>The file offset of vna_flags.</summary>
        public long FlagsOffset { get; set; }

        public int Flags { get; set; }

        public bool IsWeak => (Flags & ElfVersions.VerFlagWeak) != 0;
    }

    /// <summary>A dynamic symbol bound to a version index.</summary>
    internal sealed class VersionedSymbol
    {
        public string Name { get; set; } = string.Empty;

        public bool IsDefined { get; set; }

        /// <summary>Whether a relocation refers to it (only then does the loader ever look it up).</summary>
        public bool IsRelocated { get; set; }
    }

    /// <summary>
    /// Reads and patches the symbol-versioning sections of a little-endian ELF64 shared library (.gnu.version_d,
    /// .gnu.version_r, .gnu.version, .dynsym and the relocation sections that refer to it).
    /// </summary>
    internal static class ElfVersions
    {
        /// <summary>VER_FLG_WEAK: a missing version is then not fatal to the dynamic loader.</summary>
        public const int VerFlagWeak = 0x2;

        /// <summary>
        /// Symbols that only carry a version dependency and are never called: GCC 13's &lt;iostream&gt; emits a bare
        /// reference to std::ios_base_library_init() (no relocation) so that the binary requires GLIBCXX_3.4.32.
        /// </summary>
        public static readonly string[] NeverCalledSymbols = { "_ZSt21ios_base_library_initv" };

        private const uint ShtRela = 4;
        private const uint ShtDynsym = 11;
        private const uint ShtRel = 9;
        private const uint ShtGnuVerdef = 0x6ffffffd;
        private const uint ShtGnuVerneed = 0x6ffffffe;
        private const uint ShtGnuVersym = 0x6fffffff;

        /// <summary>The version names a library defines (its .gnu.version_d).</summary>
        public static HashSet<string> ReadDefinitions(byte[] elf)
        {
            var names = new HashSet<string>(StringComparer.Ordinal);
            foreach (Section section in Sections(elf).Where(s => s.Type == ShtGnuVerdef))
            {
                Section strings = SectionAt(elf, section.Link);
                long entry = section.Offset;
                for (uint i = 0; i < section.Info; i++)
                {
                    int count = U16(elf, entry + 6);
                    long aux = entry + U32(elf, entry + 12);
                    if (count > 0)
                    {
                        names.Add(String(elf, strings, U32(elf, aux)));
                    }

                    uint next = U32(elf, entry + 16);
                    if (next == 0)
                    {
                        break;
                    }

                    entry += next;
                }
            }

            return names;
        }

        /// <summary>The versions a library requires from its dependencies (its .gnu.version_r).</summary>
        public static List<VersionRequirement> ReadRequirements(byte[] elf)
        {
            var requirements = new List<VersionRequirement>();
            foreach (Section section in Sections(elf).Where(s => s.Type == ShtGnuVerneed))
            {
                Section strings = SectionAt(elf, section.Link);
                long entry = section.Offset;
                for (uint i = 0; i < section.Info; i++)
                {
                    int count = U16(elf, entry + 2);
                    string file = String(elf, strings, U32(elf, entry + 4));
                    long aux = entry + U32(elf, entry + 8);
                    for (int k = 0; k < count; k++)
                    {
                        requirements.Add(new VersionRequirement
                        {
                            File = file,
                            Version = String(elf, strings, U32(elf, aux + 8)),
                            Index = U16(elf, aux + 6) & 0x7fff,
                            FlagsOffset = aux + 4,
                            Flags = U16(elf, aux + 4),
                        });
                        uint nextAux = U32(elf, aux + 12);
                        if (nextAux == 0)
                        {
                            break;
                        }

                        aux += nextAux;
                    }

                    uint next = U32(elf, entry + 12);
                    if (next == 0)
                    {
                        break;
                    }

                    entry += next;
                }
            }

            return requirements;
        }

        /// <summary>The dynamic symbols bound to version index <paramref name="index"/>, and whether a relocation refers to each.</summary>
        public static List<VersionedSymbol> SymbolsBoundTo(byte[] elf, int index)
        {
            List<Section> sections = Sections(elf);
            int dynsymIndex = sections.FindIndex(s => s.Type == ShtDynsym);
            Section versym = sections.FirstOrDefault(s => s.Type == ShtGnuVersym);
            if (dynsymIndex < 0 || versym == null)
            {
                throw new InvalidDataException("no .dynsym or .gnu.version section");
            }

            Section dynsym = sections[dynsymIndex];
            Section names = SectionAt(elf, dynsym.Link);
            long count = dynsym.Size / 24;
            var bound = new Dictionary<long, VersionedSymbol>();
            for (long i = 1; i < count; i++)
            {
                if ((U16(elf, versym.Offset + (2 * i)) & 0x7fff) != index)
                {
                    continue;
                }

                long symbol = dynsym.Offset + (24 * i);
                bound[i] = new VersionedSymbol { Name = String(elf, names, U32(elf, symbol)), IsDefined = U16(elf, symbol + 6) != 0 };
            }

            foreach (Section relocations in sections.Where(s => (s.Type == ShtRela || s.Type == ShtRel) && s.Link == dynsymIndex))
            {
                long size = relocations.Type == ShtRela ? 24 : 16;
                for (long at = relocations.Offset; at + size <= relocations.Offset + relocations.Size; at += size)
                {
                    long symbolIndex = (long)(U64(elf, at + 8) >> 32);
                    VersionedSymbol symbol;
                    if (bound.TryGetValue(symbolIndex, out symbol))
                    {
                        symbol.IsRelocated = true;
                    }
                }
            }

            return bound.Values.ToList();
        }

        /// <summary>
        /// Marks weak every requirement on <paramref name="dependency"/> that <paramref name="defined"/> lacks, provided
        /// the only symbols bound to it are undefined, listed in <paramref name="neverCalled"/> and referred to by no
        /// relocation. Patches <paramref name="elf"/> in place (two bytes per weakened version).
        /// </summary>
        public static WeakeningResult WeakenMissing(byte[] elf, string dependency, ICollection<string> defined, IEnumerable<string> neverCalled)
        {
            var allowed = new HashSet<string>(neverCalled, StringComparer.Ordinal);
            var result = new WeakeningResult();
            foreach (VersionRequirement requirement in ReadRequirements(elf))
            {
                if (requirement.File != dependency || requirement.IsWeak || defined.Contains(requirement.Version))
                {
                    continue;
                }

                List<VersionedSymbol> symbols = SymbolsBoundTo(elf, requirement.Index);
                List<VersionedSymbol> used = symbols.Where(s => s.IsDefined || s.IsRelocated || !allowed.Contains(s.Name)).ToList();
                if (used.Count > 0)
                {
                    result.Blocked.Add(requirement.Version + " (" + string.Join(", ", used.Select(s => s.Name)) + ")");
                    continue;
                }

                int flags = requirement.Flags | VerFlagWeak;
                elf[requirement.FlagsOffset] = (byte)flags;
                elf[requirement.FlagsOffset + 1] = (byte)(flags >> 8);
                result.Weakened.Add(requirement.Version);
                result.WeakenedSymbols.AddRange(symbols.Select(s => s.Name));
            }

            return result;
        }

        private sealed class Section
        {
            public uint Type { get; set; }

            public long Offset { get; set; }

            public long Size { get; set; }

            public uint Link { get; set; }

            public uint Info { get; set; }
        }

        private static List<Section> Sections(byte[] elf)
        {
            if (elf.Length < 64 || elf[0] != 0x7f || elf[1] != (byte)'E' || elf[2] != (byte)'L' || elf[3] != (byte)'F')
            {
                throw new InvalidDataException("not an ELF file");
            }

            if (elf[4] != 2 || elf[5] != 1)
            {
                throw new InvalidDataException("not a little-endian 64-bit ELF file");
            }

            long tableOffset = (long)U64(elf, 0x28);
            int entrySize = U16(elf, 0x3a);
            long count = U16(elf, 0x3c);
            if (tableOffset == 0 || entrySize < 64)
            {
                throw new InvalidDataException("no section header table");
            }

            if (count == 0)
            {
                count = (long)U64(elf, tableOffset + 32); // extended numbering: the count is section 0's sh_size
            }

            var sections = new List<Section>();
            for (long i = 0; i < count; i++)
            {
                long header = tableOffset + (i * entrySize);
                var section = new Section
                {
                    Type = U32(elf, header + 4),
                    Offset = (long)U64(elf, header + 24),
                    Size = (long)U64(elf, header + 32),
                    Link = U32(elf, header + 40),
                    Info = U32(elf, header + 44),
                };
                if (section.Type != 8 /* SHT_NOBITS */ && (section.Offset < 0 || section.Size < 0 || section.Offset + section.Size > elf.Length))
                {
                    throw new InvalidDataException("a section lies outside the file");
                }

                sections.Add(section);
            }

            return sections;
        }

        private static Section SectionAt(byte[] elf, uint index)
        {
            List<Section> sections = Sections(elf);
            if (index >= sections.Count)
            {
                throw new InvalidDataException("a section link is out of range");
            }

            return sections[(int)index];
        }

        private static string String(byte[] elf, Section strings, uint offset)
        {
            long start = strings.Offset + offset;
            long end = start;
            while (end < strings.Offset + strings.Size && elf[end] != 0)
            {
                end++;
            }

            if (end >= strings.Offset + strings.Size)
            {
                throw new InvalidDataException("a string runs past its table");
            }

            return Encoding.UTF8.GetString(elf, (int)start, (int)(end - start));
        }

        private static int U16(byte[] elf, long at)
        {
            Check(elf, at, 2);
            return elf[at] | (elf[at + 1] << 8);
        }

        private static uint U32(byte[] elf, long at)
        {
            Check(elf, at, 4);
            return (uint)(elf[at] | (elf[at + 1] << 8) | (elf[at + 2] << 16) | (elf[at + 3] << 24));
        }

        private static ulong U64(byte[] elf, long at) => U32(elf, at) | ((ulong)U32(elf, at + 4) << 32);

        private static void Check(byte[] elf, long at, int length)
        {
            if (at < 0 || at + length > elf.Length)
            {
                throw new InvalidDataException("a read runs past the end of the file");
            }
        }
    }

    /// <summary>Finds a shared library the way the dynamic loader would for a process of this machine.</summary>
    internal static class SystemLibraries
    {
        /// <summary>libstdc++.so.6 from LD_LIBRARY_PATH, then the loader's cache (ldconfig -p), then the usual directories; null if none.</summary>
        public static string FindLibStdCxx()
        {
            const string name = "libstdc++.so.6";
            string searchPath = Environment.GetEnvironmentVariable("LD_LIBRARY_PATH") ?? string.Empty;
            foreach (string directory in searchPath.Split(new[] { ':' }, StringSplitOptions.RemoveEmptyEntries))
            {
                string candidate = Path.Combine(directory, name);
                if (File.Exists(candidate))
                {
                    return candidate;
                }
            }

            string cached = FromLoaderCache(name);
            if (cached != null)
            {
                return cached;
            }

            string[] directories = { "/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib/aarch64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/lib64", "/usr/lib64", "/usr/lib", "/lib" };
            return directories.Select(d => Path.Combine(d, name)).FirstOrDefault(File.Exists);
        }

        private static string FromLoaderCache(string name)
        {
            string architecture = System.Runtime.InteropServices.RuntimeInformation.ProcessArchitecture == System.Runtime.InteropServices.Architecture.Arm64 ? "AArch64" : "x86-64";
            foreach (string ldconfig in new[] { "/sbin/ldconfig", "/usr/sbin/ldconfig", "/usr/bin/ldconfig" })
            {
                if (!File.Exists(ldconfig))
                {
                    continue;
                }

                try
                {
                    var start = new ProcessStartInfo(ldconfig, "-p") { RedirectStandardOutput = true, UseShellExecute = false, CreateNoWindow = true };
                    using (Process process = Process.Start(start))
                    {
                        string output = process.StandardOutput.ReadToEnd();
                        process.WaitForExit();
                        foreach (string line in output.Split('\n'))
                        {
                            // "\tlibstdc++.so.6 (libc6,x86-64) => /usr/lib/x86_64-linux-gnu/libstdc++.so.6"
                            string trimmed = line.Trim();
                            int arrow = trimmed.IndexOf(" => ", StringComparison.Ordinal);
                            if (arrow > 0 && trimmed.StartsWith(name + " ", StringComparison.Ordinal) && trimmed.Substring(0, arrow).Contains(architecture))
                            {
                                string path = trimmed.Substring(arrow + 4).Trim();
                                if (File.Exists(path))
                                {
                                    return path;
                                }
                            }
                        }
                    }
                }
                catch (System.ComponentModel.Win32Exception)
                {
                }
                catch (InvalidOperationException)
                {
                }

                break;
            }

            return null;
        }
    }
}
