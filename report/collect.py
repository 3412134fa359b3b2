"""Collect the report's evidence from real runs: the records it reads (not the checkpoints) and the
measurements it shows, into report/evidence/ (a few MB), from which `make report` rebuilds the PDF.

    python report/collect.py --runs runs --bench runs/benchmark.json      # replaces report/evidence
    python report/collect.py --bench runs/benchmark.json                  # replaces only benchmark.json

--runs holds the job as `make run` writes it (wandb/, neptune/, mlflow/). Besides copying the
records this measures the runs' disk use, captures `wandb leet` on the W&B run (tmux), launches
each script once under torchrun with 2 processes on synthetic data, exports the Neptune run with
neptune_export.py, and takes the MLflow UI's screenshot (benchmarks/mlflow_ui_screenshot.py).
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
import records  # noqa: E402

import durable  # noqa: E402  (records.py puts the scripts' folder on the path)
import neptune_export  # noqa: E402  (records.py puts the scripts' folder on the path)

SKIP = (".pt", ".pt.tmp")  # model versions: 93 MB each, referenced by the records, not read by the report


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


def copy_record(src, dst, skip=()):
    """A record folder without model files and links (and files ending in `skip`)."""

    def ignore(folder, names):
        return [n for n in names if n.endswith(SKIP + tuple(skip)) or os.path.islink(os.path.join(folder, n))]

    shutil.copytree(src, dst, ignore=ignore, dirs_exist_ok=True)


def copy_records(runs, evidence):
    for tool in ("wandb", "neptune", "mlflow"):
        shutil.rmtree(os.path.join(evidence, tool), ignore_errors=True)
    for log in records.wandb_logs(os.path.join(runs, "wandb")):
        folder = os.path.dirname(log)
        copy_record(folder, os.path.join(evidence, "wandb", "wandb", os.path.basename(folder)))
        for r in records.leet_records(log):  # the tables' files, staged under --out-dir until `wandb sync`
            if r["type"] == "artifact" and r["artifact"]["type"] == "run_table":
                for entry in r["artifact"]["manifest"]["contents"]:
                    target = records.staged(os.path.join(evidence, "wandb"), entry["local_path"])
                    os.makedirs(os.path.dirname(target), exist_ok=True)
                    shutil.copy(records.staged(os.path.join(runs, "wandb"), entry["local_path"]), target)
    for folder in records.neptune_folders(os.path.join(runs, "neptune")):
        copy_record(folder, os.path.join(evidence, "neptune", ".neptune", "offline", os.path.basename(folder)))
    os.makedirs(os.path.join(evidence, "mlflow"), exist_ok=True)
    shutil.copy(os.path.join(runs, "mlflow", "mlflow.db"), os.path.join(evidence, "mlflow", "mlflow.db"))
    copy_record(os.path.join(runs, "mlflow", "mlartifacts"), os.path.join(evidence, "mlflow", "mlartifacts"))


def copy_searches(searches, evidence):
    """Each tool's record of its search (the .wandb logs, Neptune queues, the MLflow store without its
    artifacts) and the default recipe's run with the same flags, under evidence/search/."""
    dst = os.path.join(evidence, "search")
    shutil.rmtree(dst, ignore_errors=True)
    for log in records.wandb_logs(os.path.join(searches, "wandb")):
        folder = os.path.dirname(log)
        # each trial's copy of the scripts is the repository's own code: the search readers read the logs
        copy_record(folder, os.path.join(dst, "wandb", "wandb", os.path.basename(folder)))
        shutil.rmtree(
            os.path.join(dst, "wandb", "wandb", os.path.basename(folder), "files", "source"), ignore_errors=True
        )  # the study run has none
    plots = []
    for folder in records.neptune_folders(os.path.join(searches, "neptune")):
        # neptune-optuna's plots: plotly HTML pages with plotly.js inside, about 5 MB each; counted, not copied
        plots += glob.glob(os.path.join(folder, "upload_path", "visualizations_*.html"))
        copy_record(
            folder, os.path.join(dst, "neptune", ".neptune", "offline", os.path.basename(folder)), skip=(".html",)
        )
    os.makedirs(os.path.join(dst, "mlflow"))
    shutil.copy(os.path.join(searches, "mlflow", "mlflow.db"), os.path.join(dst, "mlflow", "mlflow.db"))
    default = max(glob.glob(os.path.join(searches, "default", "*", "history.json")), key=os.path.getmtime)
    with open(default) as f:
        history = json.load(f)
    with open(os.path.join(dst, "default.json"), "w") as f:
        json.dump(
            {
                "neptune_plots": {"files": len(plots), "bytes": sum(map(os.path.getsize, plots))},
                "config": history["config"],
                "val_acc": [e["val/acc"] for e in history["epochs"]],
                "epoch_time_s": [e["epoch_time_s"] for e in history["epochs"]],
                "summary": history["summary"],
            },
            f,
            indent=1,
        )


def footprint(runs):
    def checkpoints(tool):
        return glob.glob(os.path.join(runs, tool, "[0-9]*", "checkpoints", "*.pt"))

    tools = {}
    for tool, sub, data, what in (
        (
            "W&B",
            "wandb",
            ["wandb", ".wandb-artifacts", ".wandb-cache", ".wandb-data", ".wandb-config"],
            "its .wandb log, run files and artifact manifests; model files by reference",
        ),
        ("Neptune", "neptune", [".neptune"], "its operation log and in-memory uploads; model files by path"),
        (
            "MLflow",
            "mlflow",
            ["mlflow.db", "mlartifacts"],
            "its SQLite store and artifacts, with a copy of each model version",
        ),
    ):
        ckpt = checkpoints(sub)
        size, files = tree_size(
            [os.path.join(runs, sub, d) for d in data if os.path.exists(os.path.join(runs, sub, d))]
        )
        tools[tool] = {
            "checkpoints": len(ckpt),
            "checkpoint_bytes": sum(os.path.getsize(p) for p in ckpt),
            "tool_bytes": size,
            "tool_files": files,
            "what": what,
        }
    venv = os.path.join(ROOT, ".venv")
    return {"tools": tools, "venv_bytes": tree_size([venv])[0] if os.path.isdir(venv) else None}


def leet_screen(runs, width=150, height=44):
    """The screen of `wandb leet` on the W&B run's last segment, as text."""
    folder = os.path.dirname(records.wandb_logs(os.path.join(runs, "wandb"))[-1])
    wandb_cli = os.path.join(os.path.dirname(sys.executable), "wandb")
    session = f"leet-{os.getpid()}"
    subprocess.run(
        ["tmux", "new-session", "-d", "-s", session, "-x", str(width), "-y", str(height), f"{wandb_cli} leet {folder}"],
        check=True,
    )
    try:
        time.sleep(8)  # it reads the whole log before it draws
        screen = subprocess.run(
            ["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True, check=True
        ).stdout
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
    return "\n".join(line.rstrip() for line in screen.splitlines()).strip("\n") + "\n"


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
    """Tracker runs, segments, epochs and model versions in one launch's records, read by each tool's reader."""
    if tool == "W&B":
        logs = records.wandb_logs(out)
        recs = [r for log in logs for r in records.leet_records(log)]
        runs, segments = len({r["run"]["run_id"] for r in recs if r["type"] == "run"}), len(logs)
        epochs = [
            int(r["history"]["item"]["epoch"])
            for r in recs
            if r["type"] == "history" and "val/acc" in r["history"]["item"]
        ]
        versions = sum(r["type"] == "artifact" and r["artifact"]["type"] == "model" for r in recs)
    elif tool == "Neptune":
        folders = records.neptune_folders(out)
        run = records.read_neptune(out)
        runs, segments = (
            len({neptune_export.assigned(neptune_export.operations(f), "run_id") for f in folders}),
            len(folders),
        )
        epochs = [int(e["epoch"]) for e in run["epochs"]]
        versions = sum(
            op["type"] == "UploadFile" and op["path"][:2] == ["model", "checkpoints"]
            for f in folders
            for op in neptune_export.operations(f)
        )
    else:
        from mlflow import MlflowClient

        client = MlflowClient(f"sqlite:///{out}/mlflow.db")
        mruns = client.search_runs([e.experiment_id for e in client.search_experiments()])
        runs, segments = len(mruns), len(mruns)
        epochs = [int(m.value) for m in client.get_metric_history(mruns[0].info.run_id, "epoch")]
        versions = len(client.search_model_versions())
    return {"runs": runs, "segments": segments, "epochs": epochs, "model_versions": versions}


def torchrun_launches(processes=2):
    """Each script under torchrun: a launch left alone, and one whose rank-1 worker is killed in
    epoch 2 (--max-restarts 1 --resume auto), as each tool recorded them."""
    found, restarted = {}, {}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "NEPTUNE_", "MLFLOW_"))}
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes)]
    for tool, script in (
        ("W&B", "wandb_setup_script.py"),
        ("Neptune", "neptune_integration.py"),
        ("MLflow", "mlflow_tracking.py"),
    ):
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
            found[tool] = {"processes": processes, **tracked(tool, out)}
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
            restarted[tool] = {
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


def main():
    p = argparse.ArgumentParser(description="Collect the report's evidence from real runs into report/evidence.")
    p.add_argument("--runs", help="holds wandb/, neptune/ and mlflow/ as `make run` writes them")
    p.add_argument("--bench", help="benchmarks/run.py --json output to include")
    p.add_argument("--search", help="holds wandb/, neptune/, mlflow/ and default/ as `make search` writes them")
    p.add_argument("--evidence", default=os.path.join(HERE, "evidence"), help="default: report/evidence")
    p.add_argument(
        "--torchrun-only",
        action="store_true",
        help="replace only torchrun.json (the torchrun launches need no real run; --runs is not read)",
    )
    a = p.parse_args()
    if a.torchrun_only:
        found = torchrun_launches()  # before the file is opened: a stopped collection leaves it whole
        with open(os.path.join(a.evidence, "torchrun.json"), "w") as f:
            json.dump(found, f, indent=1)
        return
    if a.search and not a.runs and not a.bench:  # the searches alone: the other evidence stays
        copy_searches(a.search, a.evidence)
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
            copy_searches(a.search, a.evidence)
        write_benchmark(bench, a.evidence)
        return
    os.makedirs(a.evidence, exist_ok=True)
    copy_records(a.runs, a.evidence)
    if a.search:
        copy_searches(a.search, a.evidence)
    with open(os.path.join(a.evidence, "footprint.json"), "w") as f:
        json.dump(footprint(a.runs), f, indent=1)
    with open(os.path.join(a.evidence, "leet_screen.txt"), "w") as f:
        f.write(leet_screen(a.runs))
    with open(os.path.join(a.evidence, "export.txt"), "w") as f:
        f.write(export_summary(a.runs))
    with open(os.path.join(a.evidence, "torchrun.json"), "w") as f:
        json.dump(torchrun_launches(), f, indent=1)
    subprocess.run(
        [
            sys.executable,
            os.path.join(ROOT, "benchmarks", "mlflow_ui_screenshot.py"),
            "--out-dir",
            os.path.join(a.runs, "mlflow"),
            os.path.join(a.evidence, "mlflow_ui.png"),
        ],
        check=True,
    )
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
