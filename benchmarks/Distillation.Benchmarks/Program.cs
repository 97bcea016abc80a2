using System;
using System.Linq;
using System.Reflection;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Running;
using Distillation.Benchmarks;

// `dotnet run -c Release --project benchmarks/Distillation.Benchmarks` runs the full matrix;
// `-- --smoke` runs every benchmark once (no timing), as CI does so the benchmark code never rots;
// `-- --probe [rows] [vocab] [filter]` is a quick kernel probe, `-- --throughput` measures the instructions' issue rates
// and `-- --bandwidth` what one core's memory traffic costs per element.
if (args.Length > 0 && args[0] == "--probe")
{
    Probe.Run(args.Length > 1 ? int.Parse(args[1], System.Globalization.CultureInfo.InvariantCulture) : 256, args.Length > 2 ? int.Parse(args[2], System.Globalization.CultureInfo.InvariantCulture) : 32000, args.Length > 3 ? args[3] : null);
    return;
}

if (args.Length > 0 && args[0] == "--throughput")
{
    Throughput.Run();
    return;
}

if (args.Length > 0 && args[0] == "--bandwidth")
{
    Bandwidth.Run();
    return;
}

bool smoke = args.Contains("--smoke");

// BenchmarkDotNet builds each job as a generated project that imports no Directory.Build files and none of this
// project's imports, so the step that makes libLibTorchSharp.so load on an older libstdc++ (see
// src/Distillation.TorchSharp/README.md) reaches it through MSBuild's CustomAfterMicrosoftCommonTargets hook: the
// builds BenchmarkDotNet starts inherit this process's environment, and MSBuild reads environment variables as
// properties. Command-line jobs (--job short) are left as they are.
if (string.IsNullOrEmpty(Environment.GetEnvironmentVariable("CustomAfterMicrosoftCommonTargets")))
{
    string targets = typeof(LossBenchmarks).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>().Single(a => a.Key == "DistillationTorchSharpTargets").Value!;
    Environment.SetEnvironmentVariable("CustomAfterMicrosoftCommonTargets", targets);
}

string[] rest = args.Where(a => a != "--smoke").ToArray();
// The full matrix: 3 warm-ups and 7 measured iterations in one process per benchmark, about 15–20 minutes in all on
// the 2-core machine; ratios are read within one run (each benchmark class has its baseline), on the medians (the
// issue's targets are medians; the Ratio column is BenchmarkDotNet's, on the means).
IConfig config = smoke
    ? DefaultConfig.Instance.AddJob(Job.Dry.WithId("smoke")).WithOptions(ConfigOptions.DisableOptimizationsValidator)
    : args.Contains("--job")
        ? DefaultConfig.Instance
        : DefaultConfig.Instance.AddJob(Job.Default.WithWarmupCount(3).WithIterationCount(7).WithLaunchCount(1).WithId("matrix"))
            .AddColumn(BenchmarkDotNet.Columns.StatisticColumn.Median);
if (smoke)
{
    Shapes.Smoke = true;
    if (!BaselineCheck.Run())
    {
        Environment.Exit(1);
    }
}

BenchmarkSwitcher.FromAssembly(typeof(LossBenchmarks).Assembly).Run(rest.Length == 0 ? ["--filter", "*"] : rest, config);
