using System;
using System.Linq;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Running;
using Distillation.Benchmarks;

// `dotnet run -c Release --project benchmarks/Distillation.Benchmarks` runs the full matrix;
// `-- --smoke` runs every benchmark once (no timing), as CI does so the benchmark code never rots.
if (args.Length > 0 && args[0] == "--probe")
{
    Probe.Run(args.Length > 1 ? int.Parse(args[1], System.Globalization.CultureInfo.InvariantCulture) : 256, args.Length > 2 ? int.Parse(args[2], System.Globalization.CultureInfo.InvariantCulture) : 32000);
    return;
}

bool smoke = args.Contains("--smoke");
string[] rest = args.Where(a => a != "--smoke").ToArray();
IConfig config = smoke
    ? DefaultConfig.Instance.AddJob(Job.Dry.WithId("smoke")).WithOptions(ConfigOptions.DisableOptimizationsValidator)
    : DefaultConfig.Instance;
if (smoke)
{
    Shapes.Smoke = true;
    if (!BaselineCheck.Run())
    {
        Environment.Exit(1);
    }
}

BenchmarkSwitcher.FromAssembly(typeof(LossBenchmarks).Assembly).Run(rest.Length == 0 ? ["--filter", "*"] : rest, config);
