"""Collect the report's evidence from real runs: the records it reads (not the checkpoints) and the
measurements it shows, into report/evidence/ (a few MB), from which `make report` rebuilds the PDF.

    python report/collect.py --runs runs --bench runs/benchmark.json      # replaces report/evidence
    python report/collect.py --bench runs/benchmark.json                  # replaces only benchmark.json
    python report/collect.py --runs runs --tool trackio                   # replaces only Trackio's run
    python report/collect.py --search runs/search                         # replaces only the searches

--runs holds the job as `make run` writes it (a folder per tool, named by its key). Besides copying
the records (each tool's reader knows what of its record it reads) this measures the runs' disk use,
captures each tool's own viewer on its run where it has one (`wandb leet` in tmux, the MLflow UI in
headless Chromium), launches each script once under torchrun with 2 processes on synthetic data, and
exports the Neptune run with neptune_export.py.
"""

import argparse
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import build  # noqa: E402
import records  # noqa: E402, F401  (puts the repository's folder on the path)

import durable  # noqa: E402
import trackers  # noqa: E402


def tree_size(paths):
    total = files = 0
    for path in paths:
        for folder, _, names in (
            os.walk(path) if os.path.isdir(path) else [(os.path.dirname(path), [], [os.path.basename(path)])]
        ):
            for name in names:
                full = os.path.join(folder, name)
                if os.path.isfile(full) and not os.path.islink(full):
                    total += os.path.getsize(full)
                    files += 1
    return total, files


def copy_records(runs, evidence, tools):
    for tool in tools:
        shutil.rmtree(os.path.join(evidence, tool.key), ignore_errors=True)
        tool.reader.copy_record(os.path.join(runs, tool.key), os.path.join(evidence, tool.key))


def copy_searches(searches, evidence, made, tools=None):
    """Each tool's record of its search and the default recipe's run with the same flags, under
    evidence/search/ (with what each reader left out of its copy, counted, and the commit that made
    each search). With `tools`, only their records are replaced: the others and the default recipe's
    run stay."""
    dst = os.path.join(evidence, "search")
    if tools is None:
        shutil.rmtree(dst, ignore_errors=True)
        default = max(glob.glob(os.path.join(searches, "default", "*", "history.json")), key=os.path.getmtime)
        with open(default) as f:
            history = json.load(f)
        kept = {
            "config": history["config"],
            "val_acc": [e["val/acc"] for e in history["epochs"]],
            "epoch_time_s": [e["epoch_time_s"] for e in history["epochs"]],
            "summary": history["summary"],
        }
    else:
        with open(os.path.join(dst, "default.json")) as f:
            kept = json.load(f)
    left_out = {"made": dict(kept.get("made", {}))}
    for tool in tools or trackers.TOOLS:
        left_out["made"][tool.name] = made
        shutil.rmtree(os.path.join(dst, tool.key), ignore_errors=True)
        left_out.update(
            tool.reader.copy_record(os.path.join(searches, tool.key), os.path.join(dst, tool.key), search=True)
        )
    with open(os.path.join(dst, "default.json"), "w") as f:
        json.dump({**kept, **left_out}, f, indent=1)


def footprint(runs, tools_):
    tools = {}
    for tool in tools_:
        out = os.path.join(runs, tool.key)
        checkpoints = glob.glob(os.path.join(out, "[0-9]*", "checkpoints", "*.pt"))
        size, files = tree_size(
            [os.path.join(out, p) for p in tool.reader.RECORD_PATHS if os.path.exists(os.path.join(out, p))]
        )
        tools[tool.name] = {
            "checkpoints": len(checkpoints),
            "checkpoint_bytes": sum(os.path.getsize(p) for p in checkpoints),
            "tool_bytes": size,
            "tool_files": files,
            "what": tool.reader.FOOTPRINT,
        }
    venv = os.path.join(ROOT, ".venv")
    return {"tools": tools, "venv_bytes": tree_size([venv])[0] if os.path.isdir(venv) else None}


TORCHRUN_ARGS = [
    "--mode",
    "offline",
    "--dataset",
    "synthetic",
    "--train-size",
    "1024",
    "--epochs",
    "2",
    "--batch-size",
    "128",
    "--seed",
    "5",
    "--device",
    "cpu",
]


def worker(launchers, rank):
    """The pid of the worker of `rank` among the torchrun launchers' children, or None."""
    pids = {launcher.pid for launcher in launchers}
    for pid in os.listdir("/proc"):
        try:
            with open(f"/proc/{pid}/stat") as f:
                parent = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{pid}/environ", "rb") as f:
                env = f.read().split(b"\0")
        except (OSError, ValueError, IndexError):
            continue
        if parent in pids and f"RANK={rank}".encode() in env:
            return int(pid)
    return None


def kill_in_epoch_2(out, launchers, rank=1):
    """Once the run's first resume state is written, wait a second into epoch 2 and kill -9 the
    worker of `rank` (a lost machine, a preempted GPU) under whichever launcher runs it."""
    deadline = time.monotonic() + 300
    while not glob.glob(os.path.join(out, "*", "resume.pt")):
        if time.monotonic() > deadline or any(p.poll() is not None for p in launchers):
            raise RuntimeError("the launch wrote no resume state")
        time.sleep(0.05)
    time.sleep(1)
    pid = worker(launchers, rank)
    if pid is None:
        raise RuntimeError(f"no worker of rank {rank}")
    os.kill(pid, signal.SIGKILL)


def tracked(tool, out):
    """Tracker runs, segments, epochs and model versions in one launch's record, read by the tool's reader."""
    run = tool.reader.read_run(out)
    return {
        "runs": run["runs"],
        "segments": len(run["segments"]),
        "epochs": [int(e["epoch"]) for e in run["epochs"]],
        "model_versions": len(run["models"]),
    }


def torchrun_launches(tools, processes=2):
    """Each script under torchrun: a launch left alone, and one whose rank-1 worker is killed in
    epoch 2 (--max-restarts 1 --resume auto), as each tool recorded them."""
    found, restarted = {}, {}
    env = {k: v for k, v in os.environ.items() if not k.startswith(tuple(f"{t.key.upper()}_" for t in trackers.TOOLS))}
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes)]
    for tool in tools:
        script = tool.script
        with tempfile.TemporaryDirectory(prefix="torchrun-") as out:
            result = subprocess.run(
                [*launcher, script, *TORCHRUN_ARGS, "--out-dir", out],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=900,
                stdin=subprocess.DEVNULL,
            )
            if result.returncode != 0:
                sys.exit(f"error: torchrun with {script} failed: {result.stderr[-1500:]}")
            found[tool.name] = {"processes": processes, **tracked(tool, out)}
        with tempfile.TemporaryDirectory(prefix="torchrun-restart-") as out:
            launch = subprocess.Popen(
                [*launcher, "--max-restarts", "1", script, *TORCHRUN_ARGS, "--resume", "auto", "--out-dir", out],
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            kill_in_epoch_2(out, [launch])
            stdout, stderr = launch.communicate(timeout=900)
            if launch.returncode != 0:
                sys.exit(f"error: the restarted torchrun launch of {script} failed: {stderr[-1500:]}")
            restarted[tool.name] = {
                "processes": processes,
                "exit_code": launch.returncode,
                "lost_peer_lines": stderr.count("lost a peer; torchrun will restart"),
                "tracebacks": (stdout + stderr).count("Traceback"),
                **tracked(tool, out),
            }
    return {
        "processes": processes,
        "args": " ".join(TORCHRUN_ARGS),
        "tools": found,
        "restarted": {
            "killed": "the rank-1 worker, kill -9, a second into epoch 2",
            "launch": "--max-restarts 1, the script with --resume auto",
            "tools": restarted,
        },
    }


def export_summary(runs):
    with tempfile.TemporaryDirectory(prefix="export-") as out:
        result = subprocess.run(
            [
                sys.executable,
                os.path.join(ROOT, "neptune_export.py"),
                os.path.join(runs, "neptune"),
                "--to",
                "wandb",
                "--out-dir",
                out,
            ],
            capture_output=True,
            text=True,
            timeout=900,
            env={**os.environ, "HOME": out},
        )
        if result.returncode != 0:
            sys.exit(f"error: neptune_export.py failed: {result.stderr[-1500:]}")
    return "".join(
        line + "\n"
        for line in result.stdout.splitlines()
        if line.startswith(("read ", "moved ", "skipped", "problem", "deleted"))
    )


def write_benchmark(bench, evidence):
    """Its result line only (the clients' log lines on stdout are no evidence), indented to be read."""

    def write(tmp):
        with open(tmp, "w") as f:
            json.dump(bench, f, indent=1)
            f.write("\n")

    durable.write_atomically(os.path.join(evidence, "benchmark.json"), write)


def provenance(checkout):
    """The commit of `checkout` (the clone that made the runs), and whether its files differ from it."""
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=checkout, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"], cwd=checkout, capture_output=True, text=True
    )
    return {"commit": head or None, "changed_files": bool(dirty.stdout.strip()), "collected": time.strftime("%Y-%m-%d")}


def main():
    p = argparse.ArgumentParser(description="Collect the report's evidence from real runs into report/evidence.")
    p.add_argument("--runs", help="holds a folder per tool (wandb/, neptune/, ...) as `make run` writes them")
    p.add_argument("--bench", help="benchmarks/run.py --json output to include")
    p.add_argument("--search", help="holds a folder per tool and default/ as `make search` writes them")
    p.add_argument("--evidence", default=os.path.join(HERE, "evidence"), help="default: report/evidence")
    p.add_argument(
        "--made-in",
        default=ROOT,
        metavar="CHECKOUT",
        help="the clone whose code made the runs, for the commit the report names (default: this one)",
    )
    p.add_argument(
        "--tool",
        choices=[t.key for t in trackers.TOOLS],
        help="replace only this tool's evidence (the others stay): with --runs its record, footprint, viewer "
        "capture and torchrun launches; with --search its search",
    )
    p.add_argument(
        "--torchrun-only",
        action="store_true",
        help="replace only torchrun.json (the torchrun launches need no real run; --runs is not read)",
    )
    a = p.parse_args()
    if a.tool and not (a.runs or a.search):
        p.error("--tool needs --runs or --search")
    only = [trackers.get(a.tool)] if a.tool else None  # the tools whose evidence is replaced (None: all)
    if a.torchrun_only:
        found = torchrun_launches(trackers.TOOLS)  # before the file is opened: a stopped collection leaves it whole
        with open(os.path.join(a.evidence, "torchrun.json"), "w") as f:
            json.dump(found, f, indent=1)
        return
    if a.search and not a.runs and not a.bench:  # the searches alone: the other evidence stays
        copy_searches(a.search, a.evidence, provenance(a.made_in), only)
        return
    if not a.runs and not a.bench:
        p.error("--runs is required (or --torchrun-only, or --search or --bench alone)")
    if a.bench and not os.path.isfile(a.bench):
        sys.exit(f"error: {a.bench} not found: run `make benchmark` first")
    try:  # a stopped or partial benchmark is refused before the long steps, not after
        bench = build.read_benchmark(a.bench) if a.bench else None
    except build.BenchmarkError as e:
        sys.exit(f"error: {e}")
    if not a.runs:  # the benchmark alone (with the searches, if given): the other evidence stays
        if a.search:
            copy_searches(a.search, a.evidence, provenance(a.made_in), only)
        write_benchmark(bench, a.evidence)
        return
    os.makedirs(a.evidence, exist_ok=True)
    tools = [trackers.get(a.tool)] if a.tool else trackers.TOOLS
    copy_records(a.runs, a.evidence, tools)
    made = provenance(a.made_in)
    commits = (build.optional(a.evidence, "commit.json", json.load) or {}) if a.tool else {}
    commits = {**commits.get("tools", {}), **{t.name: made for t in tools}}
    with open(os.path.join(a.evidence, "commit.json"), "w") as f:
        json.dump({"tools": commits}, f, indent=1)
    if a.search:
        copy_searches(a.search, a.evidence, provenance(a.made_in), only)
    found = footprint(a.runs, tools)
    if a.tool:
        kept = build.optional(a.evidence, "footprint.json", json.load) or {"tools": {}}
        found["tools"] = {**kept["tools"], **found["tools"]}
    with open(os.path.join(a.evidence, "footprint.json"), "w") as f:
        json.dump(found, f, indent=1)
    for tool in tools:  # each tool's own viewer on its run, where it has one
        tool.show(os.path.join(a.runs, tool.key), a.evidence)
    if any(t.key == "neptune" for t in tools):
        with open(os.path.join(a.evidence, "export.txt"), "w") as f:
            f.write(export_summary(a.runs))
    launched = torchrun_launches(tools)
    if a.tool:
        kept = build.optional(a.evidence, "torchrun.json", json.load)
        launched["tools"] = {**kept["tools"], **launched["tools"]}
        launched["restarted"]["tools"] = {**kept["restarted"]["tools"], **launched["restarted"]["tools"]}
    with open(os.path.join(a.evidence, "torchrun.json"), "w") as f:
        json.dump(launched, f, indent=1)
    if bench:
        write_benchmark(bench, a.evidence)
    elif os.path.exists(
        os.path.join(a.evidence, "benchmark.json")
    ):  # another machine's and code's would read as this one's
        os.remove(os.path.join(a.evidence, "benchmark.json"))
    size, files = tree_size([a.evidence])
    print(f"collected {files} files, {size / 1e6:.1f} MB, in {a.evidence}")


if __name__ == "__main__":
    main()
