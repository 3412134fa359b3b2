"""Each tracker's records of a run, read back from its own local data, in one shape for the report.

W&B: the offline `.wandb` logs through W&B's own reader, `wandb leet inspect --json`, plus the
table files the run wrote. Neptune: the offline operation logs (JSON lines under `.neptune/`).
A resumed run has one folder per segment; both readers take them all, oldest first.
"""
import glob
import json
import os
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from neptune_integration import operations  # noqa: E402  (the scripts' own readers of their records)
from wandb_setup_script import leet_records  # noqa: E402

EPOCH_KEYS = ("epoch", "train/loss", "train/acc", "val/loss", "val/acc", "lr", "epoch_time_s", "throughput_img_s")
SUMMARY_KEYS = ("test/loss", "test/acc", "best/val_acc", "best/epoch")


def wandb_logs(out_dir):
    return sorted(glob.glob(os.path.join(out_dir, "wandb", "offline-run-*", "*.wandb")))


def leet(*args):
    wandb_cli = os.path.join(os.path.dirname(sys.executable), "wandb")
    return subprocess.run([wandb_cli, "leet", "inspect", "--json", *args], capture_output=True, text=True,
                          check=True, timeout=300).stdout


def wandb_records(out_dir):
    """Every record of every segment's .wandb log."""
    return [r for log in wandb_logs(out_dir) for r in leet_records(log)]


def neptune_folders(out_dir):
    def created(folder):
        with open(os.path.join(folder, "metadata.json")) as f:
            return json.load(f)["createdAt"]
    return sorted(glob.glob(os.path.join(out_dir, ".neptune", "offline", "run__*")), key=created)


def neptune_ops(out_dir):
    """Every operation of every segment's offline Neptune log."""
    return [op for folder in neptune_folders(out_dir) for op in operations(folder)]


def read_wandb(out_dir):
    records = wandb_records(out_dir)
    items = [r["history"]["item"] for r in records if r["type"] == "history"]
    state = json.loads(leet("--summary", wandb_logs(out_dir)[-1]))
    artifacts = [r["artifact"] for r in records if r["type"] == "artifact"]
    run_folder = os.path.dirname(wandb_logs(out_dir)[-1])

    def table(name):
        paths = sorted(glob.glob(os.path.join(run_folder, "files", "media", "table", "test", f"{name}_*.table.json")))
        if not paths:
            return None
        with open(paths[-1]) as f:
            return json.load(f)
    confusion = table("confusion_matrix_table")
    classes = json.loads(next(a["metadata"] for a in artifacts if a["type"] == "dataset"))["classes"]
    matrix = np.zeros((len(classes), len(classes)), dtype=int)
    for actual, predicted, count in confusion["data"] if confusion else []:
        matrix[classes.index(actual), classes.index(predicted)] = count
    per_class = table("per_class_table")
    return {
        "tool": "W&B",
        "segments": len(wandb_logs(out_dir)),
        "config": next(r["run"]["config"]["update"] for r in records if r["type"] == "run"),
        "epochs": [{k: it[k] for k in EPOCH_KEYS} for it in items if "epoch" in it and "val/acc" in it],
        "steps": [(it["global_step"], it["train/batch_loss"]) for it in items if "train/batch_loss" in it],
        "summary": {k: state["summary"][k] for k in SUMMARY_KEYS if k in state["summary"]},
        "state": state["state"],
        "exit_codes": [r["exit"].get("exit_code", 0) for r in records if r["type"] == "exit"],
        "dataset_artifacts": [a for a in artifacts if a["type"] == "dataset"],
        "model_artifacts": [a for a in artifacts if a["type"] == "model"],
        "classes": classes,
        "confusion": matrix,
        "per_class_acc": {c: a for c, a in per_class["data"]} if per_class else {},
        "mistakes": len((table("most_confident_mistakes") or {"data": []})["data"]),
        "system_metric_records": sum(r["type"] == "stats" for r in records),
        "console_records": sum(r["type"] == "output_raw" for r in records),
        "histogram_logs": sum(any(k.startswith(("gradients/", "parameters/")) for k in it) for it in items),
        "files": sorted({f["path"] for r in records if r["type"] == "files" for f in r["files"]["files"]}),
    }


def read_neptune(out_dir):
    ops = neptune_ops(out_dir)

    def path(op):
        return "/".join(op["path"])

    def series(key):
        return [v for op in ops if op["type"] == "LogFloats" and path(op) == key for v in op["values"]]
    assigned = {}
    for op in ops:
        if op["type"].startswith("Assign"):
            assigned[path(op)] = op["value"]
    epoch_series = {k: series(k) for k in EPOCH_KEYS}
    classes = [c.strip(" '\"") for c in assigned.get("dataset/classes", "").strip("[]").split(",") if c.strip()]
    uploads = [(path(op), op.get("file_path") or op.get("tmp_file_name")) for op in ops if op["type"] == "UploadFile"]
    return {
        "tool": "Neptune",
        "segments": len(neptune_folders(out_dir)),
        "config": {k.split("/", 1)[1]: v for k, v in assigned.items() if k.startswith("parameters/")},
        "epochs": [{k: epoch_series[k][i]["value"] for k in EPOCH_KEYS} for i in range(len(epoch_series["epoch"]))],
        "steps": [(v["step"], v["value"]) for v in series("train/batch_loss")],
        "summary": {k: assigned[k] for k in SUMMARY_KEYS if k in assigned},
        "state": assigned.get("status"),
        "failed": assigned.get("sys/failed"),
        "dataset": {k.split("/", 1)[1]: v for k, v in assigned.items() if k.startswith("dataset/")},
        "tracked_files": [entry for op in ops if op["type"] == "TrackFilesToArtifact" for entry in op["entries"]],
        "checkpoints": [(p, f) for p, f in uploads if p.startswith("model/checkpoints/")],
        "model_best": {k.split("/")[-1]: v for k, v in assigned.items() if k.startswith("model/best/")},
        "model_final": {k.split("/")[-1]: v for k, v in assigned.items() if k.startswith("model/final/")},
        "uploads": uploads,
        "classes": classes,
        "confusion": np.array(json.loads(assigned["test/confusion_matrix_counts"]))
        if "test/confusion_matrix_counts" in assigned else np.zeros((0, 0)),
        "per_class_acc": {k.split("/")[-1]: v for k, v in assigned.items() if k.startswith("test/per_class_acc/")},
        "mistakes": sum(len(op["values"]) for op in ops if op["type"] == "LogImages"
                        and path(op) == "test/most_confident_mistakes"),
        "hardware_points": sum(len(op["values"]) for op in ops if op["type"] == "LogFloats"
                               and path(op).startswith("monitoring/") and path(op).endswith(("/cpu", "/memory"))),
        "console_lines": sum(len(op["values"]) for op in ops if op["type"] == "LogStrings"
                             and path(op).endswith(("/stdout", "/stderr"))),
        "source_files": any(op["type"] == "UploadFileSet" and path(op) == "source_code/files" for op in ops),
    }
