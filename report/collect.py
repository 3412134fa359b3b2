"""Collect the report's evidence from real runs: the records it reads (not the checkpoints) and the
measurements it shows, into report/evidence/ (a few MB), from which `make report` rebuilds the PDF.

    python report/collect.py --runs runs --bench runs/benchmark.json      # replaces report/evidence

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
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import build  # noqa: E402
import records  # noqa: E402

SKIP = (".pt", ".pt.tmp")  # model versions: 93 MB each, referenced by the records, not read by the report


def tree_size(paths):
    total = files = 0
    for path in paths:
        for folder, _, names in os.walk(path) if os.path.isdir(path) else [(os.path.dirname(path), [], [os.path.basename(path)])]:
            for name in names:
                full = os.path.join(folder, name)
                if os.path.isfile(full) and not os.path.islink(full):
                    total += os.path.getsize(full)
                    files += 1
    return total, files


def copy_record(src, dst):
    """A record folder without model files and links."""
    def ignore(folder, names):
        return [n for n in names if n.endswith(SKIP) or os.path.islink(os.path.join(folder, n))]
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


def footprint(runs):
    def checkpoints(tool):
        return glob.glob(os.path.join(runs, tool, "[0-9]*", "checkpoints", "*.pt"))
    tools = {}
    for tool, sub, data, what in (
            ("W&B", "wandb", ["wandb", ".wandb-artifacts", ".wandb-cache", ".wandb-data", ".wandb-config"],
             "its .wandb log, run files and artifact manifests; model files by reference"),
            ("Neptune", "neptune", [".neptune"], "its operation log and in-memory uploads; model files by path"),
            ("MLflow", "mlflow", ["mlflow.db", "mlartifacts"], "its SQLite store and artifacts, with a copy of each "
                                                              "model version")):
        ckpt = checkpoints(sub)
        size, files = tree_size([os.path.join(runs, sub, d) for d in data if os.path.exists(os.path.join(runs, sub, d))])
        tools[tool] = {"checkpoints": len(ckpt), "checkpoint_bytes": sum(os.path.getsize(p) for p in ckpt),
                       "tool_bytes": size, "tool_files": files, "what": what}
    venv = os.path.join(ROOT, ".venv")
    return {"tools": tools, "venv_bytes": tree_size([venv])[0] if os.path.isdir(venv) else None}


def leet_screen(runs, width=150, height=44):
    """The screen of `wandb leet` on the W&B run's last segment, as text."""
    folder = os.path.dirname(records.wandb_logs(os.path.join(runs, "wandb"))[-1])
    wandb_cli = os.path.join(os.path.dirname(sys.executable), "wandb")
    session = f"leet-{os.getpid()}"
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", str(width), "-y", str(height),
                    f"{wandb_cli} leet {folder}"], check=True)
    try:
        time.sleep(8)  # it reads the whole log before it draws
        screen = subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True,
                                check=True).stdout
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
    return "\n".join(line.rstrip() for line in screen.splitlines()).strip("\n") + "\n"


TORCHRUN_ARGS = ["--mode", "offline", "--dataset", "synthetic", "--train-size", "1024", "--epochs", "2",
                 "--batch-size", "128", "--seed", "5", "--device", "cpu"]


def torchrun_launches(processes=2):
    found = {}
    for tool, script in (("W&B", "wandb_setup_script.py"), ("Neptune", "neptune_integration.py"),
                         ("MLflow", "mlflow_tracking.py")):
        with tempfile.TemporaryDirectory(prefix="torchrun-") as out:
            env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "NEPTUNE_", "MLFLOW_"))}
            result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
                                     str(processes), script, *TORCHRUN_ARGS, "--out-dir", out], cwd=ROOT, env=env,
                                    capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL)
            if result.returncode != 0:
                sys.exit(f"error: torchrun with {script} failed: {result.stderr[-1500:]}")
            if tool == "W&B":
                logs = records.wandb_logs(out)
                recs = [r for log in logs for r in records.leet_records(log)]
                runs = len(logs)
                epochs = [int(r["history"]["item"]["epoch"]) for r in recs
                          if r["type"] == "history" and "val/acc" in r["history"]["item"]]
            elif tool == "Neptune":
                runs = len(records.neptune_folders(out))
                epochs = [int(e["epoch"]) for e in records.read_neptune(out)["epochs"]]
            else:
                from mlflow import MlflowClient
                client = MlflowClient(f"sqlite:///{out}/mlflow.db")
                mruns = client.search_runs([e.experiment_id for e in client.search_experiments()])
                runs = len(mruns)
                epochs = [int(m.value) for m in client.get_metric_history(mruns[0].info.run_id, "epoch")]
            found[tool] = {"processes": processes, "runs": runs, "epochs": epochs}
    return {"processes": processes, "args": " ".join(TORCHRUN_ARGS), "tools": found}


def export_summary(runs):
    with tempfile.TemporaryDirectory(prefix="export-") as out:
        result = subprocess.run([sys.executable, os.path.join(ROOT, "neptune_export.py"), os.path.join(runs, "neptune"),
                                 "--to", "wandb", "--out-dir", out], capture_output=True, text=True, timeout=900,
                                env={**os.environ, "HOME": out})
        if result.returncode != 0:
            sys.exit(f"error: neptune_export.py failed: {result.stderr[-1500:]}")
    return "".join(line + "\n" for line in result.stdout.splitlines()
                   if line.startswith(("read ", "moved ", "skipped", "problem", "deleted")))


def main():
    p = argparse.ArgumentParser(description="Collect the report's evidence from real runs into report/evidence.")
    p.add_argument("--runs", required=True, help="holds wandb/, neptune/ and mlflow/ as `make run` writes them")
    p.add_argument("--bench", help="benchmarks/run.py --json output to include")
    p.add_argument("--evidence", default=os.path.join(HERE, "evidence"), help="default: report/evidence")
    a = p.parse_args()
    try:  # a stopped or partial benchmark is refused before the long steps, not after
        bench = build.read_benchmark(a.bench) if a.bench else None
    except build.BenchmarkError as e:
        sys.exit(f"error: {e}")
    os.makedirs(a.evidence, exist_ok=True)
    copy_records(a.runs, a.evidence)
    with open(os.path.join(a.evidence, "footprint.json"), "w") as f:
        json.dump(footprint(a.runs), f, indent=1)
    with open(os.path.join(a.evidence, "leet_screen.txt"), "w") as f:
        f.write(leet_screen(a.runs))
    with open(os.path.join(a.evidence, "export.txt"), "w") as f:
        f.write(export_summary(a.runs))
    with open(os.path.join(a.evidence, "torchrun.json"), "w") as f:
        json.dump(torchrun_launches(), f, indent=1)
    subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "mlflow_ui_screenshot.py"), "--out-dir",
                    os.path.join(a.runs, "mlflow"), os.path.join(a.evidence, "mlflow_ui.png")], check=True)
    stale = os.path.join(a.evidence, "benchmark.json")
    if bench:  # its result line only: the clients' log lines on stdout are no evidence
        with open(stale, "w") as f:
            f.write(json.dumps(bench) + "\n")
    elif os.path.exists(stale):  # a benchmark of other runs' machine and code would read as this one's
        os.remove(stale)
    size, files = tree_size([a.evidence])
    print(f"collected {files} files, {size / 1e6:.1f} MB, in {a.evidence}")


if __name__ == "__main__":
    main()
