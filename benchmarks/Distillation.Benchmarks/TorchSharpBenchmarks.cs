using System;
using System.Collections.Generic;
using System.Linq;
using BenchmarkDotNet.Attributes;
using Distillation.TorchSharp;
using TorchSharp;
using static TorchSharp.torch;
using TorchReduction = TorchSharp.torch.nn.Reduction;

namespace Distillation.Benchmarks;

/// <summary>
/// One training step's loss, forward and backward, at 256 × 32000 and T = 2: TorchSharp-cpu (libtorch) computing
/// kl_div(log_softmax(s/T), log_softmax(t/T), log_target: true) with autograd, the same call through the adapter
/// (the fused kernel behind TorchSharp's autograd), and the core fused call on plain arrays. The thread count is
/// given to libtorch (torch.set_num_threads) and to the kernels (MaxDegreeOfParallelism) alike.
/// </summary>
/// <remarks>
/// All three compute the mean over rows of KL(p‖q) and d/ds of it (checked in the setup). The student is a leaf
/// whose gradient is reset to none after each step, as an optimizer's zero_grad(set_to_none) does; so both TorchSharp
/// paths also pay autograd's accumulation into student.grad.
/// </remarks>
[MemoryDiagnoser]
public class TorchSharpBenchmarks
{
    private const float T = 2f;

    private float[] _teacher = [];
    private float[] _student = [];
    private float[] _gradient = [];
    private TeacherDistribution _t;
    private StudentDistribution _s;
    private DistillationLoss _loss = null!;
    private Tensor _teacherTensor = null!;
    private Tensor _studentTensor = null!;

    [Params("256x32000")]
    public string Shape { get; set; } = "256x32000";

    /// <summary>1, and every core of the machine.</summary>
    [ParamsSource(nameof(ThreadCounts))]
    public int Threads { get; set; } = 1;

    public static IEnumerable<int> ThreadCounts => new[] { 1, Environment.ProcessorCount }.Distinct();

    private int Rows => Shapes.Parse(Shape).Rows;

    private int Vocab => Shapes.Parse(Shape).Vocab;

    [GlobalSetup]
    public void Setup()
    {
        int n = Rows * Vocab;
        var random = new Random(1);
        _teacher = new float[n];
        _student = new float[n];
        _gradient = new float[n];
        for (int i = 0; i < n; i++)
        {
            _teacher[i] = (float)((random.NextDouble() * 8) - 4);
            _student[i] = (float)((random.NextDouble() * 8) - 4);
        }

        torch.set_num_threads(Threads);
        _loss = new DistillationLoss(Divergence.ForwardKL, T) { MaxDegreeOfParallelism = Threads };
        _t = TeacherDistribution.FromLogits(_teacher, Vocab);
        _s = StudentDistribution.FromLogits(_student, Vocab);
        _teacherTensor = torch.tensor(_teacher, [Rows, Vocab]);
        _studentTensor = torch.tensor(_student, [Rows, Vocab]).requires_grad_(true);

        // The three compute the same value and gradient.
        double core = Core();
        Tensor torchGradient = Gradient(TorchLoss), adapterGradient = Gradient(AdapterLoss);
        double torchValue = TorchLoss().item<float>(), adapterValue = AdapterLoss().item<float>();
        double gradientError = Math.Max((torchGradient - adapterGradient).abs().max().item<float>(), (torchGradient - torch.tensor(_gradient, [Rows, Vocab])).abs().max().item<float>());
        if (Math.Abs(core - torchValue) > 1e-5 * Math.Max(1, Math.Abs(torchValue)) || Math.Abs(adapterValue - torchValue) > 1e-5 * Math.Max(1, Math.Abs(torchValue))
            || gradientError > 1e-5 * Math.Max(1, torchGradient.abs().max().item<float>()))
        {
            throw new InvalidOperationException($"The three paths disagree: core {core}, adapter {adapterValue}, TorchSharp {torchValue}, max gradient difference {gradientError}.");
        }
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _teacherTensor.Dispose();
        _studentTensor.Dispose();
    }

    [Benchmark(Baseline = true, Description = "TorchSharp kl_div(log_softmax) fwd+bwd")]
    public void TorchKlDiv()
    {
        using DisposeScope scope = torch.NewDisposeScope();
        TorchLoss().backward();
        _studentTensor.grad = null;
    }

    [Benchmark(Description = "adapter loss.Compute(tensors) fwd+bwd")]
    public void Adapter()
    {
        using DisposeScope scope = torch.NewDisposeScope();
        AdapterLoss().backward();
        _studentTensor.grad = null;
    }

    [Benchmark(Description = "core DistillationLoss.Compute (arrays)")]
    public double Core() => _loss.Compute(_t, _s, _gradient).Value;

    private Tensor TorchLoss() =>
        nn.functional.kl_div(nn.functional.log_softmax(_studentTensor / T, -1), nn.functional.log_softmax(_teacherTensor / T, -1), log_target: true, reduction: TorchReduction.Sum) / Rows;

    private Tensor AdapterLoss() => _loss.Compute(_teacherTensor, _studentTensor);

    private Tensor Gradient(Func<Tensor> loss)
    {
        _studentTensor.grad = null;
        loss().backward();
        Tensor gradient = _studentTensor.grad!.clone();
        _studentTensor.grad = null;
        return gradient;
    }
}
