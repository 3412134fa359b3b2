"""The one reader of MLflow's record: the local SQLite store (`mlflow.db`) and its artifact folder
(`mlartifacts/`) under --out-dir, read with MLflow's own client, `MlflowClient`. Its contract is
trackers/reading.py's.

It also holds the adapter's one use of a private part of the client: whether MLflow's background
queue has stored a batch (`stored`), read from RunOperations._operation_futures (mlflow 3.17.2).
"""

import glob
import itertools
import json
import os
import re
import shutil

import numpy as np

import durable
from trackers.base import Recorded
from trackers.reading import EPOCH_KEYS, SEARCH_PARAMS, SUMMARY_KEYS, copy_tree, first_bytes, new_trial, plain_text

RECORD_PATHS = ("mlflow.db", "mlartifacts")
STATUS = {"completed": "FINISHED", "failed": "FAILED", "interrupted": "KILLED"}  # ours -> MLflow's


def store_uri(out_dir):
    return f"sqlite:///{os.path.join(os.path.abspath(out_dir), 'mlflow.db')}"


def client(out_dir):
    """MLflow's client on the local store in --out-dir (tracking and registry alike)."""
    from mlflow import MlflowClient

    uri = store_uri(out_dir)
    return MlflowClient(uri, uri)


def stored(operation):
    """Whether MLflow's background queue has stored the batch of `operation` (its RunOperations has
    only a wait that blocks; each of its futures ends when the batch is written or has failed)."""
    return all(f.done() and f.exception() is None for f in operation._operation_futures)


def versions_of(mlflow_client, run_id):
    """The model versions the MLflow run `run_id` registered (into one model, with other runs'), oldest first."""
    return sorted(mlflow_client.search_model_versions(f"run_id = '{run_id}'"), key=lambda v: int(v.version))


def held(mlflow_client, run_id):
    """What a reopened run holds: its steps, epochs, model versions and whether its results are there
    (the tag "results", set last)."""
    versions = [v.tags for v in versions_of(mlflow_client, run_id)]
    return Recorded(
        steps={m.step for m in mlflow_client.get_metric_history(run_id, "train/batch_loss")},
        epochs={int(m.value) for m in mlflow_client.get_metric_history(run_id, "epoch")},
        versions={int(tags["epoch"]) for tags in versions if "test_acc" not in tags},
        final=any("test_acc" in tags for tags in versions),
        results=mlflow_client.get_run(run_id).data.tags.get("results") == "recorded",
    )


def _number(text):
    """An MLflow tag (always a string) as the number it holds, else the text."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _tracked_runs(c):
    return [r for r in c.search_runs([e.experiment_id for e in c.search_experiments()]) if "run_id" in r.data.tags]


def read_run(out_dir):
    c = client(out_dir)
    runs = _tracked_runs(c)
    run = runs[-1]
    rid = run.info.run_id

    def local(artifact_path):  # the store's artifact folder as it lies now, wherever it was written
        uri = run.info.artifact_uri
        return os.path.join(out_dir, "mlartifacts", uri.split("/mlartifacts/", 1)[1], artifact_path)

    def history(key):
        return [(m.step, m.value, m.timestamp) for m in c.get_metric_history(rid, key)]

    epoch_series = {k: history(k) for k in EPOCH_KEYS}
    metrics = run.data.metrics
    info = {}
    if os.path.isfile(local("dataset.json")):
        with open(local("dataset.json")) as f:
            info = json.load(f)
    classes = info.get("classes", [])
    counts_path = local("test/confusion_matrix.json")
    counts = json.load(open(counts_path))["counts"] if os.path.isfile(counts_path) else []
    mistakes = []
    for path in sorted(glob.glob(local("test/most_confident_mistakes/*.png"))):
        m = re.match(r"\d+_image(\d+)_true-(.+)_predicted-(.+)_p([\d.]+)\.png", os.path.basename(path))
        mistakes.append(
            {
                "index": int(m.group(1)),
                "true": m.group(2),
                "predicted": m.group(3),
                "probability": float(m.group(4)),
                "image": path,
            }
        )
    versions = versions_of(c, rid)
    aliases = {}
    for name in sorted({v.name for v in versions}):
        for alias, version in c.get_registered_model(name).aliases.items():
            aliases.setdefault((name, int(version)), []).append(alias)
    system = {k: history(k) for k in metrics if k.startswith("system/")}
    times = sorted(t for points in system.values() for _, _, t in points)
    gaps = [(b - a) / 1000 for a, b in itertools.pairwise(times)]
    inputs = run.inputs.dataset_inputs
    epochs = [int(v) for _, v, _ in epoch_series["epoch"]]
    ended = {v: k for k, v in STATUS.items()}.get(run.info.status)
    return {
        "tool": "MLflow",
        "reader": "MlflowClient",
        "runs": len(runs),
        "config": dict(run.data.params),
        "epochs": [
            {k: points[i][1] if i < len(points) else None for k, points in epoch_series.items()}
            for i in range(max(map(len, epoch_series.values())))
        ],
        "steps": [(s, v) for s, v, _ in history("train/batch_loss")],
        "models": [
            {
                "epoch": int(ver.tags["epoch"]),
                "final": "test_acc" in ver.tags,
                "metadata": {k: _number(v) for k, v in ver.tags.items()},
                "aliases": aliases.get((ver.name, int(ver.version)), []),
            }
            for ver in versions
        ],
        "test_acc": [v for _, v, _ in history("test/acc")],
        "summary": {k: metrics[k] for k in SUMMARY_KEYS if k in metrics},
        "segments": [{"id": rid, "epochs": epochs, "end": f"status {run.info.status}", "killed": False}],
        "ended": ended,
        "one_run": len(runs) == 1,
        "segments_note": f"one MLflow run ({rid[:8]}), reopened by start_run(run_id=...) on --resume"
        + (f"; the longest pause in its system metrics: {max(gaps):.0f} s" if gaps else ""),
        "dataset": {
            "recorded": bool(inputs),
            "kind": "a dataset input (mlflow.log_input)",
            "version": f"digest {inputs[0].dataset.digest}" if inputs else None,
            "files": 1 if inputs else 0,
            "hashed_by_tool": 0,  # MLflow keeps the digest it is given (the script's dataset version)
            "hash_note": "its digest is the one the script passes; MLflow hashed no file",
            "hash_at_sync": False,
        },
        "models_kind": "versions of one registered model that every run of the experiment adds to",
        "classes": classes,
        "confusion": np.array(counts, dtype=int) if counts else np.zeros((0, 0), dtype=int),
        "confusion_chart": False,
        "confusion_kind": "a PNG figure (log_figure) and its counts as JSON",
        "per_class_acc": {k.rsplit("/", 1)[1]: v for k, v in metrics.items() if k.startswith("test/per_class_acc/")},
        "mistakes": mistakes,
        "histograms": {},
        "system_samples": sum(len(p) for p in system.values()),
        "console_lines": 0,  # MLflow's client captures no console output
        "plain_text": plain_text([os.path.join(out_dir, "mlflow.db")]),
        "record_format": f"a SQLite database ({first_bytes(os.path.join(out_dir, 'mlflow.db'), 15).decode()}) and "
        "artifact files",
        "status": run.info.status,
    }


def read_search(out_dir):
    """The study's run and its child runs, one per trial, from the store through MlflowClient."""
    c = client(out_dir)
    runs = c.search_runs([e.experiment_id for e in c.search_experiments()])
    parents = {r.info.run_id: r for r in runs if r.data.tags["run_id"].endswith("-study")}
    trials = {}
    for run in runs:
        if run.info.run_id in parents:
            continue
        trial = trials.setdefault(
            int(run.data.tags["trial"]), new_trial({k: float(run.data.params[k]) for k in SEARCH_PARAMS})
        )
        trial.update(
            segments=trial["segments"] + 1,
            group=run.data.tags.get("mlflow.parentRunId"),
            state=run.data.tags.get("trial_state"),
            duration_s=run.data.metrics.get("trial/duration_s"),
        )
        trial["val_acc"] = [
            m.value for m in sorted(c.get_metric_history(run.info.run_id, "val/acc"), key=lambda m: m.step)
        ]
    studies = [
        {
            "run_id": r.info.run_id,
            "group": r.info.run_id,  # the trials' parent
            "closed": r.info.status == "FINISHED",
            "status": r.info.status,
            "best": int(r.data.tags["best/trial"]),
            "best_val_acc": float(r.data.tags["best/val_acc"]),
        }
        for r in parents.values()
        if "best/trial" in r.data.tags
    ]
    return {
        "trials": trials,
        "studies": studies,
        "grouping": "a parent run for the study with a child run per trial (MLflow's nesting, as mlflow.optuna's "
        "MlflowStorage makes it)",
    }


def artifact_paths(c, run_id, path=None):
    """Every artifact file of a run (under `path`), recursively."""
    return [
        f for e in c.list_artifacts(run_id, path) for f in (artifact_paths(c, run_id, e.path) if e.is_dir else [e.path])
    ]


def record_files(out_dir, run_id):
    """The files that hold one run's record alone: none (a local store holds every run of --out-dir)."""
    return []


def referenced(out_dir):
    """The store's text (every location it records) and the run's artifacts and model versions' files."""
    import sqlite3

    c = client(out_dir)
    [run] = _tracked_runs(c)
    with sqlite3.connect(os.path.join(out_dir, "mlflow.db")) as db:
        text = json.dumps(
            [
                row
                for (table,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'").fetchall()
                for row in db.execute(f'SELECT * FROM "{table}"').fetchall()
            ],
            default=str,
        )
    local = run.info.artifact_uri[len("file://") :]
    files = [os.path.join(local, a) for a in artifact_paths(c, run.info.run_id)]
    files += [v.source[len("file://") :] for v in c.search_model_versions()]
    return text, files


def repoint_store(old, new):
    """The local store records the artifacts' absolute location (experiments, runs, model versions):
    every text value of the SQLite store in `new` re-pointed from the old folder to the new."""
    store = os.path.join(new, "mlflow.db")
    if not os.path.isfile(store):
        return f"no MLflow store in {new}: nothing to re-point"
    durable.repoint_sqlite(store, old, new)
    return f"re-pointed 1 MLflow store from {old} to {new}"


FOOTPRINT = "its SQLite store and artifacts; model files by path (offline)"


def copy_record(src, dst, search=False):
    """The SQLite store and, for a run, its artifacts (a search's readers read the store alone)."""
    os.makedirs(dst, exist_ok=True)
    shutil.copy(os.path.join(src, "mlflow.db"), os.path.join(dst, "mlflow.db"))
    if not search:
        copy_tree(os.path.join(src, "mlartifacts"), os.path.join(dst, "mlartifacts"))
    return {}


def values_logged(out_dir, run_id, prefix):
    """How many values of the metrics named `prefix`... the run holds (a benchmark's load)."""
    c = client(out_dir)
    [run] = [r for r in _tracked_runs(c) if r.data.tags["run_id"] == run_id]
    return sum(len(c.get_metric_history(run.info.run_id, k)) for k in run.data.metrics if k.startswith(prefix))
