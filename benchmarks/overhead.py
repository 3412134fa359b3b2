"""What a tracker adds to training, measured for a noisy shared machine; and the load it takes.

Overhead: one process, one model, one engine. A phase opens an offline run of each tool (the
script's own tracker class) and trains rounds of blocks of `steps` steps; each block's logging goes
to one variant: no tracker, one tool's run, or no tracker once more (the A/A control). Each round
runs every variant once in a random order; a tracked block's time is divided by the mean of its
round's two untracked blocks, the A/A block's by the other untracked block's, and the mean ratio
over rounds gets a Student's t 95% interval. One process rather than one per run: a process start
(imports, allocator, thread pools, page cache) varies more than the trackers cost, and every block
trains the same warm model. Runs open and close outside the timed steps; their start, an epoch's
end and their finish are timed on their own.

Own work, counted directly: the CPU of a tool's calls on the training thread, of its threads and of
its child processes (W&B's `wandb-core`); a thread or process belongs to the tool whose run was
being opened, logged to or closed when it first appeared (the training thread and PyTorch's exist
before any tool starts). Memory: its child processes' peak resident set; this process's growth.

Load: a tool's tracker logs `keys` values per call at `rate` calls per second (the rest of each
interval is slept, as a GPU step would leave the CPU free) for a few seconds, each point in a fresh
process of its own; the record is read back with the tool's own reader to count what arrived.
"""

import concurrent.futures
import contextlib
import cProfile
import io
import math
import multiprocessing
import os
import pstats
import random
import statistics
import threading
import time

import psutil
import torch

import alexnet
import cli
import data
import lifecycle
import trackers
from trackers import base
from trackers.queued import Queued

TOOLS = tuple(tool.key for tool in trackers.TOOLS)
TICK = os.sysconf("SC_CLK_TCK")
T975 = {
    1: 12.706,
    2: 4.303,
    3: 3.182,
    4: 2.776,
    5: 2.571,
    6: 2.447,
    7: 2.365,
    8: 2.306,
    9: 2.262,
    10: 2.228,
    11: 2.201,
    12: 2.179,
    13: 2.160,
    14: 2.145,
    15: 2.131,
    16: 2.120,
    17: 2.110,
    18: 2.101,
    19: 2.093,
    20: 2.086,
    24: 2.064,
    29: 2.045,
    39: 2.023,
}  # Student's t, 0.975 quantile, by degrees of freedom


def t975(df):
    if df >= 40:
        return 1.96 + 2.4 / df
    return T975.get(df) or T975[max(k for k in T975 if k <= df)]


def interval(ratios):
    """Mean and 95% t interval of per-round ratios."""
    mean = statistics.fmean(ratios)
    half = t975(len(ratios) - 1) * statistics.stdev(ratios) / math.sqrt(len(ratios))
    return mean, [mean - half, mean + half]


def thread_cpu():
    """CPU seconds of each thread of this process, by native id."""
    out = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                fields = f.read().rpartition(")")[2].split()
        except OSError:  # the thread ended
            continue
        out[int(tid)] = (int(fields[11]) + int(fields[12])) / TICK
    return out


def peak_rss(pid):
    with open(f"/proc/{pid}/status") as f:
        return next((int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM")), 0)  # 0: a zombie


def thread_name(tid):
    """A Python thread's name, else the system's (a thread started by a library's C code)."""
    python = {t.native_id: t.name for t in threading.enumerate()}
    if tid in python:
        return python[tid]
    try:
        with open(f"/proc/self/task/{tid}/comm") as f:
            return f.read().strip()
    except OSError:
        return "?"


class OwnWork:
    """CPU and memory of each tool's own threads and child processes: a thread or child process
    belongs to the tool whose run was being opened, logged to or closed when it first appeared
    (the training thread and PyTorch's exist before any tool starts; what appears between a tool's
    calls is "unattributed"). A thread or process that ended keeps the CPU it was last seen with."""

    def __init__(self):
        self.owner = {("thread", tid): "training" for tid in thread_cpu()}
        self.names = {}
        self.seen = {}  # (kind, id) -> CPU seconds when last sampled
        self.me = psutil.Process()

    def claim(self, tool):
        """Give `tool` every thread and child process not seen before (named once, when first seen)."""
        for tid in thread_cpu():
            if ("thread", tid) not in self.owner:
                self.owner["thread", tid] = tool
                self.names.setdefault(tool, set()).add(thread_name(tid))
        for c in self.me.children(recursive=True):
            if ("child", c.pid) not in self.owner:
                self.owner["child", c.pid] = tool
                self.names.setdefault(tool, set()).add(f"process {c.name()}")

    def sample(self):
        """CPU seconds and the children's peak resident set, by owner; this process's resident set."""
        peak = {}
        for tid, s in thread_cpu().items():
            self.seen[("thread", tid)] = s
        for c in self.me.children(recursive=True):
            owner = self.owner.get(("child", c.pid), "unattributed")
            try:
                t = c.cpu_times()
                self.seen[("child", c.pid)] = t.user + t.system + t.children_user + t.children_system
                peak[owner] = max(peak.get(owner, 0), peak_rss(c.pid))
            except (psutil.Error, OSError):  # it ended: its last sample stands
                pass
        cpu = {}
        for key, s in self.seen.items():
            owner = self.owner.get(key, "unattributed")
            cpu[owner] = cpu.get(owner, 0.0) + s
        return {"cpu": cpu, "children_peak_rss": peak, "rss": self.me.memory_info().rss}


def cpu_between(before, after, owner):
    return after["cpu"].get(owner, 0.0) - before["cpu"].get(owner, 0.0)


class Calls:
    """A tracker whose per-step logging calls are timed (wall and training-thread CPU)."""

    def __init__(self, tracker):
        self.tracker, self.n, self.wall_s, self.cpu_s, self.latencies = tracker, 0, 0.0, 0.0, []

    def __getattr__(self, name):
        return getattr(self.tracker, name)

    def log_metrics(self, metrics, step):
        w, c = time.perf_counter(), time.thread_time()
        self.tracker.log_metrics(metrics, step)
        c, w = time.thread_time() - c, time.perf_counter() - w
        self.n, self.wall_s, self.cpu_s = self.n + 1, self.wall_s + w, self.cpu_s + c
        self.latencies.append(w)


def tracker_class(kind):
    if kind == "wandb_watch":
        return wandb_watch_tracker()
    if kind == "none":
        return base.Disabled
    return trackers.get(kind).tracker


def wandb_watch_tracker():
    """The W&B tracker with wandb.watch(log="all") at W&B's default interval instead of the
    script's epoch-end histograms: what the script avoids, measured beside it."""

    class WatchTracker(trackers.get("wandb").tracker):
        def start(self, config, model):
            super().start(config, model)
            self.run.watch(model, log="all", log_freq=1000)

        def log_epoch(self, metrics, step, checkpoint=None):
            if checkpoint:
                self.log_model(checkpoint)
            self.run.log(metrics, step=step, commit=True)

        def finish(self, status, exit_code):
            self.run.unwatch(self.model)  # its hooks would outlive the run on the shared model
            super().finish(status, exit_code)

    return WatchTracker


def open_tracker(kind, out_dir, cfg, model):
    """A fresh offline run of the tool's tracker, started; (tracker, seconds). A tool's tracker is the
    script's own: its adapter behind the logging thread (trackers/queued.py), as lifecycle.py opens it."""
    cls = tracker_class(kind)
    args = cli.build_parser(cls).parse_args(
        ["--mode", "offline" if kind != "none" else "disabled", "--out-dir", out_dir]
    )
    args.out_dir = os.path.abspath(out_dir)
    cfg = dict(cfg, run_id=f"bench-{kind}-{time.time_ns()}")
    run_dir = os.path.join(out_dir, cfg["run_id"])
    os.makedirs(run_dir, exist_ok=True)
    tracker = Queued(cls(args, run_dir)) if kind in (*TOOLS, "wandb_watch") else cls(args, run_dir)
    t0 = time.perf_counter()
    tracker.start(cfg, model)
    return tracker, time.perf_counter() - t0


class Bench:
    """One engine trained in blocks of `steps` steps; each block's logging goes to one tool's run
    (open through the whole phase) or to none. Each variant keeps its own step count, so a tool's
    logging calls fall every `log_every` of its own steps, as in a run of its own."""

    def __init__(self, device, batch, steps, out_dir):
        self.out_dir, self.device = out_dir, device
        args = cli.build_parser(base.Disabled).parse_args(["--mode", "disabled"])
        self.cfg = lifecycle.make_config(args)
        self.cfg.update(
            alexnet.RECIPES["default"],
            batch_size=batch,
            epochs=10**6,
            seed=0,
            log_every=50,
            dataset_version="synthetic",
        )
        size = next(
            n for n in range(batch * steps + 1, batch * steps * 2) if n - max(1, round(n * 0.1)) == batch * steps
        )
        ds = data.load("synthetic", None, train_size=size, val_fraction=0.1)  # exactly `steps` batches to train
        self.engine = alexnet.Engine(self.cfg, ds, base.Disabled(None, "unused"), device, out_dir)
        self.cfg = (
            self.engine.cfg
        )  # the engine's own (with model_params): what the trackers record, what it trains with
        self.engine.train_one_epoch(1)  # warm-up: allocator, thread pools, caches
        self.own = OwnWork()
        self.epoch = 1
        self.checkpoint = None  # a model version for the epoch ends, saved when first needed

    def phase(self, tools, rounds, log_every, rng, say, label, profile=None, lifecycle=False):
        """Open a run of each tool, train `rounds` rounds of blocks (every tool's and two untracked
        ones, in a random order), close the runs; with `lifecycle`, time three more runs of each."""
        self.cfg["log_every"] = log_every
        trackers, out = {}, {"blocks": [], "tools": {}}
        for tool in tools:
            tracker, start_s = open_tracker(
                tool, os.path.join(self.out_dir, f"{tool}{label}"), self.cfg, self.engine.model
            )
            self.own.claim(tool)
            trackers[tool] = Calls(tracker)
            out["tools"][tool] = {"start_s": start_s}
        variants = ["none", "none_aa", *tools]
        steps = {v: 0 for v in variants}
        first, t_first = self.own.sample(), time.perf_counter()
        for r in range(rounds):
            order = rng.sample(variants, len(variants))
            for v in order:
                out["blocks"].append(self.block(v, trackers.get(v), steps, r, profile if v in trackers else None))
            say(
                f"  {label or 'default'} round {r + 1}/{rounds}: "
                + ", ".join(f"{b['variant']} {b['train_s']:.2f}s" for b in out["blocks"][-len(variants) :])
            )
        last, wall_s = self.own.sample(), time.perf_counter() - t_first
        for tool, calls in trackers.items():  # every run closed before any lifecycle is timed
            t = out["tools"][tool]
            t["first_start_s"] = t.pop("start_s")
            before = self.own.sample()
            t0 = time.perf_counter()
            calls.finish("completed", 0)
            t["first_finish_s"] = time.perf_counter() - t0
            after = self.own.sample()
            self.own.claim(tool)
            t["calls"], t["calls_cpu_s"], t["call_ms"] = calls.n, calls.cpu_s, 1e3 * calls.wall_s / max(1, calls.n)
            t["background_cpu_s"] = cpu_between(first, last, tool)  # threads and child processes, all blocks
            t["open_s"] = wall_s  # the rounds' wall time, through which the run was open
            t["finish_cpu_s"] = cpu_between(before, after, tool)
            t["children_peak_rss_bytes"] = after["children_peak_rss"].get(tool, 0)
            t["threads_and_processes"] = sorted(self.own.names.get(tool, ()))
            t["steps"] = steps[tool]
        for tool in trackers if lifecycle else ():
            out["tools"][tool].update(self.lifecycle(tool, f"{tool}{label}"))
        out["all_steps"] = sum(steps.values())
        return out

    def lifecycle(self, tool, folder, n=3):
        """Medians of n more runs in the phase's folder: open, one epoch's end as the engine makes it
        (metrics and a model version; W&B: histograms too), close."""
        if self.checkpoint is None:
            self.checkpoint = base.Checkpoint(os.path.join(self.out_dir, "model.pt"), 1, 0.1)
            alexnet.save_checkpoint(self.checkpoint.path, self.engine.model, epoch=1, val_acc=0.1)
        times = {"start_s": [], "epoch_end_s": [], "finish_s": []}
        for _ in range(n):
            tracker, start_s = open_tracker(tool, os.path.join(self.out_dir, folder), self.cfg, self.engine.model)
            t0 = time.perf_counter()
            tracker.log_epoch({"epoch": 1, "train/loss": 1.0, "val/acc": 0.1}, 1, self.checkpoint)
            epoch_end_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            tracker.finish("completed", 0)
            for key, value in zip(times, (start_s, epoch_end_s, time.perf_counter() - t0), strict=True):
                times[key].append(value)
        self.own.claim(tool)
        return {k: statistics.median(v) for k, v in times.items()}

    def block(self, variant, calls, steps, r, profile=None):
        """Train one block with the variant's tracker (or none); its time and what its calls took."""
        e = self.engine
        e.tracker = calls or base.Disabled(None, "unused")
        e.step = steps[variant]
        n0, w0, c0 = (calls.n, calls.wall_s, calls.cpu_s) if calls else (0, 0.0, 0.0)
        rss = self.own.me.memory_info().rss
        self.epoch += 1
        # No progress bar: drawn on a terminal it would pass through Neptune's console capture.
        with contextlib.redirect_stderr(io.StringIO()):
            if profile:
                profile.enable()
            train_s = e.train_one_epoch(self.epoch)[2]
            if profile:
                profile.disable()
        steps[variant] = e.step
        self.own.claim(variant if calls else "unattributed")  # threads its calls started
        return {
            "variant": variant,
            "round": r,
            "train_s": train_s,
            "steps": e.steps_per_epoch,
            "calls": (calls.n - n0) if calls else 0,
            "calls_wall_s": (calls.wall_s - w0) if calls else 0.0,
            "calls_cpu_s": (calls.cpu_s - c0) if calls else 0.0,
            "rss_growth": self.own.me.memory_info().rss - rss,
        }


def ratios(blocks, kind):
    """Per round: the variant's training time over the mean of the round's untracked blocks (the A/A
    control: over the other untracked block)."""
    out = []
    for r in sorted({b["round"] for b in blocks}):
        times = {b["variant"]: b["train_s"] for b in blocks if b["round"] == r}
        if kind == "aa_control":
            out.append(times["none_aa"] / times["none"])
        else:
            out.append(times[kind] / statistics.fmean([times["none"], times["none_aa"]]))
    return out


def summary(blocks, kind):
    rs = ratios(blocks, kind)
    mean, ci = interval(rs)
    return {"ratio": mean, "ci95": ci, "per_round": rs, "rounds": len(rs)}


def own_work(tool_phase, blocks, tool, steps_per_epoch, step_s):
    """The tool's own CPU per epoch of the real recipe (steps_per_epoch steps of step_s seconds): its
    calls on the training thread (per call) and its threads' and child processes' work (per second its
    run is open: most of it is time-driven, a system monitor, a heartbeat); the memory its calls added."""
    t = tool_phase
    per_step = t["calls_cpu_s"] / t["steps"]
    rate = t["background_cpu_s"] / t["open_s"]
    mine = [b for b in blocks if b["variant"] == tool]
    return {
        "calls_cpu_s_per_step": per_step,
        "background_cpu_share": rate,
        "epoch_s": step_s * steps_per_epoch,
        "cpu_s_per_epoch": per_step * steps_per_epoch + rate * step_s * steps_per_epoch,
        "rss_growth_bytes": sum(b["rss_growth"] for b in mine),
    }


def profile_block(bench, kind, rounds=30, top=12):
    """cProfile of the training thread through every-step blocks of the tool: the client's and its
    tracker script's entries with the most own time, and the calls' share of the blocks."""
    prof = cProfile.Profile()
    phase = bench.phase([kind], rounds, 1, random.Random(1), lambda *a: None, "_profile", profile=prof)
    stats = pstats.Stats(prof, stream=io.StringIO())
    script = tracker_class(kind).__module__.rpartition(".")[2] + ".py"
    rows = []
    for (path, line, func), (_, nc, tt, ct, _callers) in stats.stats.items():
        where = path.split("site-packages/")[-1] if "site-packages/" in path else os.path.basename(path)
        rows.append(
            {
                "function": f"{where}:{line}({func})",
                "calls": nc,
                "own_s": tt,
                "cumulative_s": ct,
                "tool": where.startswith(kind + "/") or where == script,
            }
        )
    blocks = [b for b in phase["blocks"] if b["variant"] == kind]
    return {
        "train_s": sum(b["train_s"] for b in blocks),
        "steps": sum(b["steps"] for b in blocks),
        "calls_wall_s": sum(b["calls_wall_s"] for b in blocks),
        "calls": sum(b["calls"] for b in blocks),
        "top_tool": sorted((r for r in rows if r["tool"]), key=lambda r: -r["own_s"])[:top],
        "top_cumulative": sorted(rows, key=lambda r: -r["cumulative_s"])[:top],
    }


def local_bytes(out_dir):
    return sum(
        os.path.getsize(os.path.join(d, n))
        for d, _, ns in os.walk(out_dir)
        for n in ns
        if not os.path.islink(os.path.join(d, n))
    )


def values_recorded(tracker, out_dir):
    """How many of the load's values the tool's record holds, read with the tool's own reader."""
    return trackers.get(tracker.name).reader.values_logged(out_dir, tracker.run_id, "load/")


def load_point(kind, keys, rate, seconds, out_dir, model, cfg, own):
    """One point of the sweep; see the module's docstring."""
    tracker, start_s = open_tracker(kind, out_dir, cfg, model)
    names = [f"load/k{j:04d}" for j in range(keys)]
    calls = Calls(tracker)
    own.claim(kind)
    before = own.sample()
    t_start = time.perf_counter()
    n = 0
    while time.perf_counter() - t_start < seconds:
        n += 1
        calls.log_metrics({k: n * 1e-3 + j for j, k in enumerate(names)}, n)
        wait = t_start + n / rate - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
    wall = time.perf_counter() - t_start
    own.claim(kind)
    during = own.sample()
    t0 = time.perf_counter()
    tracker.finish("completed", 0)
    finish_s = time.perf_counter() - t0
    own.claim(kind)
    after = own.sample()
    lat = sorted(calls.latencies)
    return {
        "tool": kind,
        "keys": keys,
        "rate": rate,
        "calls": n,
        "achieved_rate": n / wall,
        "call_ms_median": 1e3 * lat[len(lat) // 2],
        "call_ms_p99": 1e3 * lat[min(len(lat) - 1, int(len(lat) * 0.99))],
        "background_cpu_s_per_s": cpu_between(before, during, kind) / wall,
        "caller_cpu_s_per_s": calls.cpu_s / wall,
        "finish_s": finish_s,
        "finish_cpu_s": cpu_between(during, after, kind),
        "rss_growth_bytes": during["rss"] - before["rss"],
        "children_peak_rss_bytes": after["children_peak_rss"].get(kind, 0),
        "cpu_s_per_1000_values": 1e3 * (calls.cpu_s + cpu_between(before, after, kind)) / (n * keys),
        "start_s": start_s,
        "local_bytes": local_bytes(out_dir),
        "values_logged": n * keys,
        "values_recorded": values_recorded(tracker, out_dir),
    }


def load_config(model):
    args = cli.build_parser(base.Disabled).parse_args(["--mode", "disabled"])
    return dict(
        lifecycle.make_config(args),
        **alexnet.RECIPES["default"],
        log_every=1,
        dataset_version="synthetic",
        model_params=alexnet.count_params(model),
    )


def apart(function, *args):
    """`function(*args)` in a fresh process (spawned: no thread, child or imported setting of this one)."""
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as process:
        return process.submit(function, *args).result()


def as_a_job(environment, threads):
    """This process set up as a job starts: the user's `environment`, the benchmark's `threads`."""
    torch.set_num_threads(threads)
    os.environ.clear()
    os.environ.update(environment)
    base.USER_ENVIRONMENT = dict(environment)


def load_point_apart(kind, keys, rate, seconds, out_dir, environment, threads):
    """load_point in a process of its own, set up as a job (`as_a_job`): a tool that reads its settings
    when imported (Trackio its TRACKIO_DIR) then writes where this point says."""
    as_a_job(environment, threads)
    model = alexnet.AlexNet()
    return load_point(kind, keys, rate, seconds, out_dir, model, load_config(model), OwnWork())


def sweep(tools, keys_list, rates, seconds, out_dir, say):
    """Every (tool, keys, rate) point, in a random order (seeded), each with its own folder and process."""
    points = [(t, k, r) for t in tools for k in keys_list for r in rates]
    random.Random(0).shuffle(points)
    out = []
    for i, (tool, keys, rate) in enumerate(points):
        folder = os.path.abspath(os.path.join(out_dir, f"load-{i}-{tool}-{keys}-{rate}"))
        p = apart(load_point_apart, tool, keys, rate, seconds, folder, base.USER_ENVIRONMENT, torch.get_num_threads())
        out.append(p)
        say(
            f"  load {i + 1}/{len(points)}: {tool} {keys} keys at {rate}/s: {p['achieved_rate']:.0f}/s, call "
            f"{p['call_ms_median']:.2f} ms (p99 {p['call_ms_p99']:.2f}), background {p['background_cpu_s_per_s']:.2f} "
            f"CPU s/s, finish {p['finish_s']:.2f} s, {p['values_recorded']}/{p['values_logged']} values recorded"
        )
    return sorted(out, key=lambda p: (TOOLS.index(p["tool"]), p["keys"], p["rate"]))
