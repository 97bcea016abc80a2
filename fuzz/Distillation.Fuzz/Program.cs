using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;

namespace Distillation.Fuzz;

/// <summary>
/// The fuzzing harness. Modes:
/// <list type="bullet">
/// <item>no arguments: the SharpFuzz/AFL++ target (run by afl-fuzz with an instrumented Distillation.dll; see fuzz/run.sh).
/// The other modes must run on an uninstrumented copy: instrumented code writes coverage to afl-fuzz's shared memory;</item>
/// <item><c>--replay PATH…</c>: run each file (or every file of each folder) once; exit 1 if any breaks the contract;</item>
/// <item><c>--random SECONDS [SEED] [FINDINGS]</c>: an in-process random and mutational fuzzer, for machines without AFL++;</item>
/// <item><c>--seeds FOLDER</c>: write the seed corpus (one small valid call per operation and edge case).</item>
/// </list>
/// </summary>
public static class Program
{
    public static int Main(string[] args)
    {
        if (args.Length == 0)
        {
            // Out of process: a crash that kills the runtime (an access violation, an out-of-memory kill) restarts the
            // child instead of taking afl-fuzz's fork server down with it.
            SharpFuzz.Fuzzer.OutOfProcess.Run(stream =>
            {
                using var buffer = new MemoryStream();
                stream.CopyTo(buffer);
                Harness.Execute(buffer.ToArray());
            });
            return 0;
        }

        return args[0] switch
        {
            "--replay" => Replay(args.Skip(1)),
            "--random" => RandomFuzz(int.Parse(args[1], System.Globalization.CultureInfo.InvariantCulture), args.Length > 2 ? int.Parse(args[2], System.Globalization.CultureInfo.InvariantCulture) : Environment.TickCount, args.Length > 3 ? args[3] : null, keepGoing: args.Contains("--keep-going")),
            "--seeds" => WriteSeeds(args[1]),
            _ => Usage(),
        };
    }

    private static int Usage()
    {
        Console.Error.WriteLine("usage: Distillation.Fuzz [--replay PATH… | --random SECONDS [SEED] [FINDINGS] | --seeds FOLDER]");
        return 2;
    }

    private static int Replay(IEnumerable<string> paths)
    {
        var files = paths.SelectMany(p => Directory.Exists(p) ? Directory.EnumerateFiles(p).Where(f => Path.GetFileName(f) is var n && !n.StartsWith("README", StringComparison.Ordinal) && !n.StartsWith('.')) : [p]).Order(StringComparer.Ordinal).ToList();
        int failed = 0;
        var signatures = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (string file in files)
        {
            try
            {
                Harness.Execute(File.ReadAllBytes(file));
            }
            catch (Exception e)
            {
                failed++;
                string signature = Signature(e);
                signatures[signature] = signatures.GetValueOrDefault(signature) + 1;
                Console.WriteLine($"CRASH {file}\n  {e.GetType().Name}: {e.Message.Replace("\n", "\n  ", StringComparison.Ordinal)}");
            }
        }

        Console.WriteLine($"replayed {files.Count} inputs: {failed} broke the contract");
        foreach ((string signature, int count) in signatures.OrderByDescending(p => p.Value))
        {
            Console.WriteLine($"  {count,5} × {signature}");
        }
        return failed == 0 ? 0 : 1;
    }

    /// <summary>Random inputs and mutations of the seeds and of inputs that reached a new operation/outcome, for a fixed time.</summary>
    private static int RandomFuzz(int seconds, int seed, string? findings, bool keepGoing)
    {
        var signatures = new Dictionary<string, int>(StringComparer.Ordinal);
        var random = new Random(seed);
        List<byte[]> pool = Seeds().Select(s => s.Bytes).ToList();
        var clock = Stopwatch.StartNew();
        long executions = 0;
        while (clock.Elapsed.TotalSeconds < seconds)
        {
            byte[] data = random.Next(3) == 0 ? RandomBytes(random) : Mutate(pool[random.Next(pool.Count)], random);
            executions++;
            if (Environment.GetEnvironmentVariable("DISTILLATION_FUZZ_TRACE") is { Length: > 0 } trace)
            {
                File.WriteAllBytes(trace, data); // the input being executed, for post-mortems of a killed process
            }

            long started = clock.ElapsedTicks;
            try
            {
                Harness.Execute(data);
                double ms = (clock.ElapsedTicks - started) * 1000.0 / Stopwatch.Frequency;
                if (ms > 250)
                {
                    Console.WriteLine($"slow input: operation {(data.Length > 0 ? data[0] % Harness.Operations : 0)}, {data.Length} bytes, {ms:F0} ms: {Convert.ToHexString(data)}");
                }
            }
            catch (Exception e)
            {
                string signature = Signature(e);
                signatures[signature] = signatures.GetValueOrDefault(signature) + 1;
                if (signatures[signature] > 1)
                {
                    continue; // --keep-going: a crash of a kind already seen
                }

                Console.WriteLine($"CRASH after {executions} executions ({clock.Elapsed.TotalSeconds:F1} s, seed {seed}): {e.GetType().Name}: {e.Message}");
                if (findings is not null)
                {
                    Directory.CreateDirectory(findings);
                    string path = Path.Combine(findings, $"random-{seed}-{executions}.bin");
                    File.WriteAllBytes(path, data);
                    Console.WriteLine($"  input saved to {path}");
                }

                if (!keepGoing)
                {
                    return 1;
                }
            }

            if (executions % 64 == 0 && pool.Count < 4096)
            {
                pool.Add(data);
            }
        }

        int crashes = signatures.Values.Sum();
        Console.WriteLine($"random fuzzing: {executions} executions in {clock.Elapsed.TotalSeconds:F1} s (seed {seed}), {crashes} contract violations of {signatures.Count} kinds");
        foreach ((string signature, int count) in signatures.OrderByDescending(p => p.Value))
        {
            Console.WriteLine($"  {count,7} × {signature}");
        }

        return crashes == 0 ? 0 : 1;
    }

    /// <summary>A crash's kind: its exception type and message with the numbers and value lists left out.</summary>
    internal static string Signature(Exception e)
    {
        string m = System.Text.RegularExpressions.Regex.Replace(e.Message, @"\[[^\]]*\]|\{[^}]*\}", "[…]");
        m = System.Text.RegularExpressions.Regex.Replace(m, @"-?\d+(\.\d+)?(E[+-]?\d+)?|NaN|-?Infinity|−?∞", "#");
        int cut = m.IndexOf(':', StringComparison.Ordinal);
        string head = cut > 0 ? m[..cut] : m;
        string tail = cut > 0 ? m[(cut + 1)..] : string.Empty;
        head = System.Text.RegularExpressions.Regex.Replace(head, @" V=#.*$", string.Empty);
        return $"{e.GetType().Name}: {head.Trim()}:{tail.Trim()}";
    }

    private static byte[] RandomBytes(Random random)
    {
        var b = new byte[1 + random.Next(256)];
        random.NextBytes(b);
        return b;
    }

    private static byte[] Mutate(byte[] source, Random random)
    {
        var b = new List<byte>(source);
        int edits = 1 + random.Next(8);
        for (int i = 0; i < edits; i++)
        {
            int at = b.Count == 0 ? 0 : random.Next(b.Count);
            switch (random.Next(4))
            {
                case 0 when b.Count > 0:
                    b[at] = (byte)random.Next(256);
                    break;
                case 1:
                    b.Insert(at, (byte)random.Next(256));
                    break;
                case 2 when b.Count > 1:
                    b.RemoveAt(at);
                    break;
                default:
                    if (b.Count > 0)
                    {
                        b[at] = (byte)(b[at] + random.Next(-3, 4));
                    }

                    break;
            }
        }

        return [.. b];
    }

    private static int WriteSeeds(string folder)
    {
        Directory.CreateDirectory(folder);
        foreach ((string name, byte[] bytes) in Seeds())
        {
            File.WriteAllBytes(Path.Combine(folder, name), bytes);
        }

        return 0;
    }

    /// <summary>One short input per operation (all-zero bytes decode to an ordinary valid call), and a few edge cases.</summary>
    private static IEnumerable<(string Name, byte[] Bytes)> Seeds()
    {
        for (int op = 0; op < Harness.Operations; op++)
        {
            yield return ($"op{op}-zeros", [(byte)op, .. new byte[64]]);
            var ramp = new byte[96];
            for (int i = 0; i < ramp.Length; i++)
            {
                ramp[i] = (byte)((i * 37) + op);
            }

            ramp[0] = (byte)op;
            yield return ($"op{op}-ramp", ramp);
        }

        // Shard statistics as bytes (op 8 with "DSTS" after the operation byte): both rounds.
        var loss = new VocabularyShardedLoss(Divergence.GeneralizedJsd(0.5));
        float[] t = [0.5f, -1f, 2f, 0f, 1f, -3f], st = [1f, 0f, -1f, 2f, 0.5f, 0f];
        var shard = new VocabularyShard(0, 3);
        ShardStatistics first = loss.ComputeStatistics(shard, t, st);
        yield return ("op8-shard-statistics", [8, .. first.ToBytes()]);
        yield return ("op8-shard-term-sums", [8, .. loss.ComputeTermSums(shard, t, st, ShardStatistics.Merge([first, loss.ComputeStatistics(new VocabularyShard(3, 3), t, st)])).ToBytes()]);
        yield return ("op8-json", [8, .. System.Text.Encoding.UTF8.GetBytes("{\"Divergence\":{\"kind\":\"GeneralizedJsd\",\"parameter\":0.5},\"Temperature\":2,\"Lambda\":{\"type\":\"linear\",\"From\":0,\"To\":1,\"Steps\":10}}")]);
    }
}
