using System;
using System.Runtime.ExceptionServices;
using System.Threading;

namespace Distillation.Kernels;

/// <summary>One call's work, split into parts that run on different threads.</summary>
internal interface IRangeJob
{
    /// <summary>Runs part <paramref name="part"/> of the job.</summary>
    void Run(int part);
}

/// <summary>
/// A small pool of background threads, one fewer than the processors, that runs the parts of one job at a time.
/// Unlike <c>Parallel.For</c> it allocates nothing per call. A caller that finds the pool busy (another call is
/// running) does its work on its own thread instead: the result is the same, since rows never depend on the split.
/// </summary>
internal static class RowWorkers
{
    private static int _busy;
    private static readonly Worker[] Workers = CreateWorkers();
    private static IRangeJob? _job;
    private static int _pending;
    private static Exception? _failure;
    private static readonly ManualResetEventSlim Done = new(false);

    /// <summary>The most parts a job can run in parallel (the caller's thread included).</summary>
    public static int MaxParts => Workers.Length + 1;

    /// <summary>Runs parts 0 … <paramref name="parts"/> − 1 of <paramref name="job"/>, part 0 on the calling thread.</summary>
    /// <returns><see langword="false"/> (having run nothing) when the pool is busy with another call.</returns>
    public static bool TryRun(IRangeJob job, int parts)
    {
        // Not a Monitor: a lock is reentrant, and a nested call on the same thread (a message pump during the wait)
        // must not take over the job in flight. Busy means: run on the calling thread.
        if (parts > MaxParts || Interlocked.CompareExchange(ref _busy, 1, 0) != 0)
        {
            return false;
        }

        try
        {
            _job = job;
            _failure = null;
            Done.Reset();
            Volatile.Write(ref _pending, parts - 1);
            for (int k = 1; k < parts; k++)
            {
                Workers[k - 1].Start(k);
            }

            try
            {
                job.Run(0);
            }
            finally
            {
                if (parts > 1)
                {
                    Done.Wait();
                }

                _job = null;
            }

            if (_failure is { } failure)
            {
                ExceptionDispatchInfo.Capture(failure).Throw();
            }

            return true;
        }
        finally
        {
            Volatile.Write(ref _busy, 0);
        }
    }

    private static Worker[] CreateWorkers()
    {
        var workers = new Worker[Math.Max(Environment.ProcessorCount - 1, 0)];
        for (int i = 0; i < workers.Length; i++)
        {
            workers[i] = new Worker(i);
        }

        return workers;
    }

    private static void Finished(Exception? failure)
    {
        if (failure is not null)
        {
            Interlocked.CompareExchange(ref _failure, failure, null);
        }

        if (Interlocked.Decrement(ref _pending) == 0)
        {
            Done.Set();
        }
    }

    [System.Diagnostics.CodeAnalysis.SuppressMessage("Reliability", "CA1001", Justification = "Workers live as long as the process; their semaphores are never disposed.")]
    private sealed class Worker
    {
        private readonly SemaphoreSlim _start = new(0);
        private int _part;

        public Worker(int index)
        {
            var thread = new Thread(Loop) { IsBackground = true, Name = $"Distillation row worker {index + 1}" };
            thread.Start();
        }

        public void Start(int part)
        {
            _part = part;
            _start.Release();
        }

        private void Loop()
        {
            while (true)
            {
                _start.Wait();
                Exception? failure = null;
                try
                {
                    _job!.Run(_part);
                }
                catch (Exception e)
                {
                    failure = e;
                }

                Finished(failure);
            }
        }
    }
}
