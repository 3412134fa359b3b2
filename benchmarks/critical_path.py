"""What a tool adds to an epoch's wall time at a GPU's pace: its whole epoch, measured on the training
thread, with everything the tool does at its default settings.

The pace is simulated, and says so: a step is a wait that releases the interpreter's lock, as a
CUDA synchronisation does, of 2, 5 or 10 ms; an epoch is the job's 176 steps (45,000 images at batch
256). A tracked epoch makes the scripts' calls: the per-step metrics at the first step and every
50th (--log-every's default), then the epoch's end with the real model's new best checkpoint (the
study's AlexNet, 93 MB, a new file each epoch, written beforehand: the engine's cost, measured on
its own) and, for W&B and Trackio, its histograms. The tool's tracker is the scripts' own: its
adapter behind its logging thread (trackers/queued.py), so what that thread does while the next
steps run (hashing or copying the version, a client's bookkeeping holding the interpreter's lock)
slows those steps: each block is the epoch and then as many steps again with no call, timed to its
end. Each tool runs in a fresh process of its own, as a training job does, and the processes take
turns round by round. A round of a tool is two blocks in a random order, untracked and tracked; the
tool's cost is the tracked block's time minus the untracked one's, in milliseconds per epoch, with
the median's 95% interval over the rounds (from the order statistics). Also, by phase: the training
thread's time in the step calls and in the epoch's end call (the rest is what the logging thread's
work took from the steps), and the CPU the tool's own threads and processes use per epoch.
"""

import concurrent.futures
import contextlib
import gc
import multiprocessing
import os
import random
import shutil
import statistics
import time

import overhead

import alexnet
from trackers import base

PACES_MS = (2, 5, 10)
# Rounds per pace. W&B's per-round differences spread most (a standard deviation near 17 ms on 2 Xeon
# cores, from its own work, not the waits): 60 rounds hold its median's 95% interval near +-6 ms, 40 did not
# keep the upper end under 15 ms. Fewer at 10 ms, whose blocks are the longest.
ROUNDS = (60, 60, 50)
EPOCH_STEPS = 176  # 45,000 training images at batch 256
LOG_EVERY = 50  # the scripts' --log-every default
TAIL_S = 0.5  # the steps after the epoch, with no call: longer than any tool's logging thread takes for an epoch


def _epoch(tracker, pace_s, epoch, checkpoint):
    """One simulated epoch and as many steps again: (its seconds, the step calls', the epoch end call's)."""
    first = (epoch - 1) * EPOCH_STEPS
    calls_s = end_s = 0.0
    t0 = time.perf_counter()
    for i in range(1, EPOCH_STEPS + 1):
        time.sleep(pace_s)
        if tracker and (i == 1 or i % LOG_EVERY == 0):
            c = time.perf_counter()
            tracker.log_metrics({"train/batch_loss": 2.0 / i, "train/batch_acc": 0.1 + i / 1e3}, first + i)
            calls_s += time.perf_counter() - c
    if tracker:
        c = time.perf_counter()
        tracker.log_epoch(
            {"epoch": epoch, "train/loss": 1.0, "train/acc": 0.5, "val/loss": 1.1, "val/acc": 0.5, "lr": 0.01},
            first + EPOCH_STEPS,
            checkpoint,
        )
        end_s = time.perf_counter() - c
    for _ in range(round(TAIL_S / pace_s)):  # the next epoch's steps, no call: the logging thread's work lands here
        time.sleep(pace_s)
    return time.perf_counter() - t0, calls_s, end_s


class Job:
    """One tool's simulated training job, in a process of its own (started from the user's
    `environment`, on the benchmark's `threads`): the real model, the scripts' tracker, a new best
    checkpoint each round."""

    def __init__(self, tool, out_dir, environment, threads):
        import ctypes

        import torch

        overhead.as_a_job(environment, threads)
        # Less noise in every block alike: the waits end within microseconds of their time (Linux's timer
        # slack, 50 us by default, added 0.15 ms to each 2 ms wait here), and the collector leaves the
        # millions of objects the clients' imports made alone (a full collection here took tens of ms).
        ctypes.CDLL(None).prctl(29, 1, 0, 0, 0)  # PR_SET_TIMERSLACK: 1 ns, this thread
        self.tool, self.out_dir = tool, out_dir
        self.own = overhead.OwnWork()
        self.model = alexnet.AlexNet()  # the study's width: its checkpoints are the real 93 MB
        self.model(torch.zeros(2, 3, 32, 32)).sum().backward()  # gradients, for the histograms
        self.cfg = dict(
            alexnet.RECIPES["default"], log_every=LOG_EVERY, dataset_version="synthetic", model_params=23_272_266
        )
        gc.collect()
        gc.freeze()
        self.rng = random.Random(tool)
        self.versions = 0
        self.tracker = overhead.open_tracker(tool, os.path.join(out_dir, f"epoch-{tool}"), self.cfg, self.model)[0]
        self.own.claim(tool)
        self.checkpoints = os.path.join(out_dir, f"checkpoints-{tool}")

    def round(self, pace_ms, r):
        """The round's two blocks, untracked and tracked in a random order; the checkpoint write's seconds."""
        import torch

        # A new best version each epoch: a new file of new weights (the engine's work), written before
        # the round's two blocks, either of which may come first.
        self.versions += 1
        with torch.no_grad():
            self.model.classifier[-1].bias.add_(1e-3)
        written = base.Checkpoint(os.path.join(self.checkpoints, f"epoch_{self.versions}.pt"), self.versions, 0.5)
        t = time.perf_counter()
        alexnet.save_checkpoint(written.path, self.model, epoch=self.versions, val_acc=0.5, config=self.cfg)
        write_s = time.perf_counter() - t
        time.sleep(0.2)
        blocks = []
        for variant in self.rng.sample(["none", self.tool], 2):
            checkpoint = written if variant == self.tool else None
            before = self.own.sample()
            tracker = self.tracker if checkpoint else None
            seconds, calls_s, end_s = _epoch(tracker, pace_ms / 1e3, self.versions, checkpoint)
            backlog = False
            if checkpoint:
                t = time.perf_counter()
                self.tracker.wait()  # what its logging thread still had to do: not the next block's
                backlog = time.perf_counter() - t > 0.001
                self.own.claim(self.tool)
            after = self.own.sample()
            blocks.append(
                {
                    "tool": self.tool,
                    "variant": variant,
                    "pace_ms": pace_ms,
                    "round": r,
                    "s": seconds,
                    "calls_s": calls_s,
                    "epoch_end_s": end_s,
                    "backlog": backlog,
                    "background_cpu_s": overhead.cpu_between(before, after, self.tool) if checkpoint else 0.0,
                }
            )
        return blocks, write_s

    def end_pace(self):
        shutil.rmtree(self.checkpoints, ignore_errors=True)  # the tools keep their own

    def close(self):
        self.tracker.finish("completed", 0)
        shutil.rmtree(os.path.join(self.out_dir, f"epoch-{self.tool}"), ignore_errors=True)


_job = None  # in a tool's process: its Job


def _start(*args):
    global _job
    _job = Job(*args)


def _in_job(method, *args):
    return getattr(_job, method)(*args)


def measure(tools, out_dir, rounds_by_pace, say):
    """`critical_path` of benchmark.json: per tool, its added milliseconds per epoch and their interval
    (at the slowest pace, the default 2 ms being the tightest), by phase and pace, its ratio at each pace,
    its background CPU; and the engine's own epoch end (a checkpoint's write).

    Each tool runs in a fresh process of its own, as a training job does: no thread, child process or
    store of another tool's run (or of the benchmark's other phases) is in its process. The processes
    take turns: each round runs every tool's two blocks, the tools in a random order. The machine's
    slow stretches (here, minutes in which blocks differ by 50 to 150 ms either way) then fall on
    every tool alike, where measuring one tool after another put a whole stretch on one tool."""
    import torch

    spawn = multiprocessing.get_context("spawn")
    blocks, write_s = [], []
    with contextlib.ExitStack() as stack:
        jobs = {}
        for tool in tools:
            jobs[tool] = stack.enter_context(concurrent.futures.ProcessPoolExecutor(1, mp_context=spawn))
            jobs[tool].submit(_start, tool, out_dir, base.USER_ENVIRONMENT, torch.get_num_threads()).result()
        rng = random.Random(0)
        for pace_ms, rounds in zip(PACES_MS, rounds_by_pace, strict=True):
            for r in range(rounds):
                for tool in rng.sample(list(tools), len(tools)):
                    mine, write = jobs[tool].submit(_in_job, "round", pace_ms, r).result()
                    blocks += mine
                    write_s.append(write)
            for job in jobs.values():
                job.submit(_in_job, "end_pace").result()
            say(f"  what each tool adds to an epoch at {pace_ms} ms a step: {rounds} rounds of every tool")
        for job in jobs.values():
            job.submit(_in_job, "close").result()
    shutil.rmtree(out_dir, ignore_errors=True)
    return {
        "method": {
            "pace": "simulated: a step is a wait that releases the interpreter's lock, as a CUDA synchronisation does",
            "step_ms": list(PACES_MS),
            "epoch_steps": EPOCH_STEPS,
            "log_every": LOG_EVERY,
            "rounds": dict(zip(map(str, PACES_MS), rounds_by_pace, strict=True)),
            "block": f"one epoch of calls, then {TAIL_S:g} s of steps with none, timed to its end; each tool in a "
            "fresh process of its own, the tools taking turns round by round, its blocks and untracked ones in a "
            "random order each round",
            "interval": "the median's 95% interval from the order statistics, over the per-round differences from "
            "the untracked block",
            "model": "the study's AlexNet (23,272,266 parameters): a new 93 MB checkpoint each epoch",
        },
        "engine": {"checkpoint_write_ms": 1e3 * statistics.median(write_s)},
        **{tool: summary(blocks, tool) for tool in tools},
    }


def median_interval(values):
    """The median and its 95% interval from the order statistics (the binomial's, distribution-free)."""
    from math import comb

    x, n = sorted(values), len(values)
    k = 0  # the most order statistics that may be cut from each end, keeping 95%
    while sum(comb(n, i) for i in range(k + 2)) / 2**n <= 0.025:
        k += 1
    return statistics.median(x), [x[k], x[n - 1 - k]]


def summary(blocks, tool):
    by_pace, ratio, phases, background, backlog = {}, {}, {}, [], 0
    for pace in PACES_MS:
        rounds = sorted({b["round"] for b in blocks if b["tool"] == tool and b["pace_ms"] == pace})
        mine = {b["round"]: b for b in blocks if b["tool"] == tool and b["variant"] == tool and b["pace_ms"] == pace}
        none = {b["round"]: b for b in blocks if b["tool"] == tool and b["variant"] == "none" and b["pace_ms"] == pace}
        added = [1e3 * (mine[r]["s"] - none[r]["s"]) for r in rounds]
        median, ci = median_interval(added)
        by_pace[str(pace)] = {"ms_per_epoch": median, "ci95": ci, "per_round": added}
        ratio[str(pace)] = 1 + median / (pace * EPOCH_STEPS)  # an epoch's wall time, with it over without
        calls = statistics.fmean(1e3 * mine[r]["calls_s"] for r in rounds)
        end = statistics.fmean(1e3 * mine[r]["epoch_end_s"] for r in rounds)
        phases[str(pace)] = {"step_calls_ms": calls, "epoch_end_ms": end, "logging_thread_ms": median - calls - end}
        background += [1e3 * mine[r]["background_cpu_s"] for r in rounds]
        backlog += sum(mine[r]["backlog"] for r in rounds)
    worst = max(by_pace, key=lambda p: by_pace[p]["ci95"][1])  # the pace where it costs most, said as its figure
    return {
        "ms_per_epoch": by_pace[worst]["ms_per_epoch"],
        "ci95": by_pace[worst]["ci95"],
        "at_step_ms": int(worst),
        "by_step_ms": by_pace,
        "by_phase": phases,
        "ratio_at_step_ms": ratio,
        "background_cpu_ms_per_epoch": statistics.median(background),
        "epochs_with_work_left_after_the_next": backlog,
    }
