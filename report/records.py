"""Each tracker's records of a run, read back from its own local data, in one shape for the report.

W&B: the offline `.wandb` logs through W&B's own reader, `wandb leet inspect --json`, and the files
the run folder holds (tables, images). Neptune: the offline operation logs (JSON lines under
`.neptune/`), replayed by neptune_export.py's reader. MLflow: the local SQLite store through
`MlflowClient`. A resumed run has one folder per segment in W&B and Neptune; the readers take them
all, oldest first. Paths are read relative to the folder given, so a copied record reads the same.
"""

import ast
import base64
import glob
import itertools
import json
import os
import re
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import neptune_export  # noqa: E402  (the reader of Neptune's operation log)
from neptune_export import operations  # noqa: E402
from wandb_setup_script import leet_records  # noqa: E402

EPOCH_KEYS = ("epoch", "train/loss", "train/acc", "val/loss", "val/acc", "lr", "epoch_time_s", "throughput_img_s")
SUMMARY_KEYS = ("test/loss", "test/acc", "best/val_acc", "best/epoch")


def wandb_logs(out_dir):
    return sorted(glob.glob(os.path.join(out_dir, "wandb", "offline-run-*", "*.wandb")))


def leet(*args):
    wandb_cli = os.path.join(os.path.dirname(sys.executable), "wandb")
    return subprocess.run(
        [wandb_cli, "leet", "inspect", "--json", *args], capture_output=True, text=True, check=True, timeout=300
    ).stdout


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


def first_bytes(path, n=16):
    with open(path, "rb") as f:
        return f.read(n)


def plain_text(paths):
    """Whether every file of a record is UTF-8 text."""
    try:
        for path in paths:
            with open(path, encoding="utf-8") as f:
                f.read()
        return True
    except UnicodeDecodeError:
        return False


def confusion_from(classes, rows):
    matrix = np.zeros((len(classes), len(classes)), dtype=int)
    for actual, predicted, count in rows:
        matrix[classes.index(actual), classes.index(predicted)] = count
    return matrix


def dataset_sizes(info):
    """The split sizes and a description of the data (no local path: the record may have moved)."""
    source = info.get("source", "")
    if "checksums not verified" in source:
        source = (
            "a CIFAR-10-format copy whose checksums differ from the official files, loaded with "
            "--skip-checksum; its content hash is the dataset version"
        )
    return {
        "train_images": info.get("train_size"),
        "val_images": info.get("val_size"),
        "test_images": info.get("test_size"),
        "data_source": source,
    }


def staged(out_dir, local_path):
    """Where a W&B table's file is under out_dir (the --out-dir of its run): W&B stages them in .wandb-data
    until `wandb sync`, and the manifest names the path it had then, wherever the record is now."""
    return os.path.join(out_dir, ".wandb-data", local_path.split(f"{os.sep}.wandb-data{os.sep}", 1)[1])


def read_wandb(out_dir):
    logs = wandb_logs(out_dir)
    per_log = [leet_records(log) for log in logs]
    records = [r for rs in per_log for r in rs]
    items = [r["history"]["item"] for r in records if r["type"] == "history"]
    state = json.loads(leet("--summary", logs[-1]))
    artifacts = [r["artifact"] for r in records if r["type"] == "artifact"]
    runs = [r["run"] for r in records if r["type"] == "run"]

    def table(name):
        """A test table from its run_table artifact (the table file in the run folder keeps no images)."""
        found = [
            a
            for a in artifacts
            if a["type"] == "run_table"
            and any(e["path"] == f"test/{name}.table.json" for e in a["manifest"]["contents"])
        ]
        if not found:
            return None
        entries = {e["path"]: staged(out_dir, e["local_path"]) for e in found[-1]["manifest"]["contents"]}
        with open(entries[f"test/{name}.table.json"]) as f:
            content = json.load(f)
        content["files"] = entries
        return content

    [dataset] = [a for a in artifacts if a["type"] == "dataset"][-1:] or [None]
    meta = json.loads(dataset["metadata"]) if dataset else {}
    classes = meta.get("classes", [])
    confusion = table("confusion_matrix_table")
    mistakes_table = table("most_confident_mistakes") or {"data": [], "files": {}}
    mistakes = [
        {
            "index": row[1],
            "true": row[2],
            "predicted": row[3],
            "probability": row[4],
            "image": mistakes_table["files"][row[0]["path"]],
        }
        for row in mistakes_table["data"]
    ]
    per_class = table("per_class_table")
    histograms = {}
    for it in items:
        for key in it:
            if key.endswith(".bins") and key.startswith(("gradients/", "parameters/")):
                name = key[: -len(".bins")]
                histograms.setdefault(name, []).append((it.get("epoch"), it[key], it[name + ".values"]))
    refs = [e for e in dataset["manifest"]["contents"] if e.get("ref")] if dataset else []
    config = runs[0]["config"]["update"]
    visualize = {
        k.split("_wandb.visualize.", 1)[1]: v["panel_config"].get("panelDefId")
        for r in records
        if r["type"] == "config"
        for k, v in r["config"]["update"].items()
        if k.startswith("_wandb.visualize.")
    }
    segments = []
    for rs in per_log:
        epochs = [
            int(r["history"]["item"]["epoch"])
            for r in rs
            if r["type"] == "history" and "val/acc" in r["history"]["item"]
        ]
        codes = [r["exit"].get("exit_code", 0) for r in rs if r["type"] == "exit"]
        ids = {r["run"]["run_id"] for r in rs if r["type"] == "run"}
        segments.append(
            {
                "id": ", ".join(sorted(ids)),
                "epochs": epochs,
                "end": f"exit code {codes[-1]}" if codes else "no exit record (killed)",
                "killed": not codes,
            }
        )
    ids = {s["id"] for s in segments}
    return {
        "tool": "W&B",
        "reader": "wandb leet inspect --json",
        **dataset_sizes(meta),
        "config": {k: v for k, v in config.items() if not k.startswith("_")},
        "epochs": [{k: it[k] for k in EPOCH_KEYS} for it in items if "epoch" in it and "val/acc" in it],
        "steps": [(it["global_step"], it["train/batch_loss"]) for it in items if "train/batch_loss" in it],
        "summary": {k: state["summary"][k] for k in SUMMARY_KEYS if k in state["summary"]},
        "segments": segments,
        "one_run": len(ids) == 1,
        "segments_note": f"{len(segments)} segment{'s' * (len(segments) != 1)} under one run id ({next(iter(ids))}): "
        "`wandb sync` merges them into one run"
        if len(ids) == 1
        else f"{len(ids)} run ids",
        "dataset": {
            "recorded": dataset is not None,
            "kind": "a dataset artifact",
            "version": f"digest {dataset['digest'][:12]}" if dataset else None,
            "files": len(refs),
            "hashed_by_tool": sum(1 for e in refs if e.get("digest")),
            "hash_note": "an md5 of each data file in the artifact's manifest",
            "hash_at_sync": False,
        },
        "models": [
            {"metadata": json.loads(a.get("metadata") or "{}"), "aliases": a["aliases"]}
            for a in artifacts
            if a["type"] == "model"
        ],
        "models_kind": "versions of a model artifact",
        "classes": classes,
        "confusion": confusion_from(classes, confusion["data"]) if confusion else np.zeros((0, 0), dtype=int),
        "confusion_chart": "test/confusion_matrix" in visualize,
        "confusion_kind": f"a chart of the tool's own ({visualize['test/confusion_matrix']}) over a table"
        if "test/confusion_matrix" in visualize
        else "a table",
        "per_class_acc": {c: a for c, a in per_class["data"]} if per_class else {},
        "mistakes": mistakes,
        "histograms": histograms,
        "system_samples": sum(r["type"] == "stats" for r in records),
        "console_lines": sum(r["type"] == "output_raw" and r["output_raw"]["line"].strip() != "" for r in records),
        "plain_text": plain_text(logs),
        "record_format": f"a binary log of protobuf records ({first_bytes(logs[-1], 4)!r}..., one .wandb file a segment)",
        "status": segments[-1]["end"],
    }


def read_neptune(out_dir):
    groups = neptune_export.jobs(neptune_export.find_queues(os.path.join(out_dir, ".neptune")))
    key, segments = max(groups.items(), key=lambda kv: len(kv[1]))  # the job (a probe may add none)
    run = neptune_export.replay(key, segments)

    def series(path):
        return [v for _, v, _ in run.series.get(path, [])]

    epoch_series = {k: series(k) for k in EPOCH_KEYS}
    fields = run.fields
    classes = ast.literal_eval(fields["dataset/classes"]) if "dataset/classes" in fields else []  # stringified
    tracked = sorted({e[0] for entries in run.tracked.values() for e in entries})  # each segment tracks them again
    mistakes = []
    for _, value, _ in run.series.get("test/most_confident_mistakes", []):
        m = re.match(r"true: (.+), predicted: (.+) \(p=([\d.]+)\)", value.get("description") or "")
        mistakes.append(
            {
                "index": int(value["name"].rsplit(" ", 1)[1]),
                "true": m.group(1) if m else None,
                "predicted": m.group(2) if m else None,
                "probability": float(m.group(3)) if m else None,
                "image": base64.b64decode(value["data"]),
            }
        )
    seg_info = []
    for q in segments:
        ops = [e["obj"] for e in q.log.entries]
        epochs = [
            int(v["value"]) for op in ops if op["type"] == "LogFloats" and op["path"] == ["epoch"] for v in op["values"]
        ]
        status = neptune_export.assigned(ops, "status")
        seg_info.append(
            {
                "id": q.container,
                "epochs": epochs,
                "end": f"status {status}" if status else "no status (killed)",
                "killed": not status,
            }
        )
    logs = [log for q in segments for log in glob.glob(os.path.join(q.folder, "data-*.log"))]
    counts = json.loads(fields["test/confusion_matrix_counts"]) if "test/confusion_matrix_counts" in fields else []
    return {
        "tool": "Neptune",
        "reader": "neptune_export.py's reader of the operation log",
        "config": run.namespace("parameters"),
        "epochs": [{k: epoch_series[k][i] for k in EPOCH_KEYS} for i in range(len(epoch_series["epoch"]))],
        "steps": [(s, v) for s, v, _ in run.series.get("train/batch_loss", [])],
        "summary": {k: fields[k] for k in SUMMARY_KEYS if k in fields},
        "segments": seg_info,
        "one_run": len(segments) == 1,
        "segments_note": f"{len(segments)} offline runs (container ids {', '.join(s['id'][:8] for s in seg_info)}), tied "
        "only by the script's run_id field: Neptune 1.14 keeps no custom_run_id offline, and "
        "`neptune sync` uploads each as its own run"
        if len(segments) > 1
        else "one offline run",
        "dataset": {
            "recorded": "dataset/version" in fields,
            "kind": "fields dataset/* and track_files",
            "version": f"field dataset/version {fields['dataset/version']}" if "dataset/version" in fields else None,
            "files": len(tracked),
            "hashed_by_tool": len(tracked) if run.fields.get("dataset/files") else 0,  # a hash comes at sync
            "hash_note": f"track_files recorded {len(tracked)} paths and no hash offline: the client "
            "hashes them at `neptune sync`",
            "hash_at_sync": bool(tracked),
        },
        # Neptune has no alias: the script's fields model/best, model/latest, model/final name the versions.
        "models": [{"metadata": run.version_meta.get(p, {}), "aliases": []} for p in run.model_files],
        "models_kind": "file uploads under model/checkpoints/, named by the fields model/best, model/latest and "
        "model/final",
        "classes": classes,
        "confusion": np.array(counts, dtype=int) if counts else np.zeros((0, 0), dtype=int),
        "confusion_chart": False,
        "confusion_kind": "a PNG figure (test/confusion_matrix) and its counts as a text field",
        "per_class_acc": run.namespace("test/per_class_acc"),
        "mistakes": mistakes,
        "histograms": {},
        "system_samples": sum(
            len(p) for path, p in run.series.items() if neptune_export.SYSTEM.match(path) and run.kinds[path] == "float"
        ),
        "console_lines": sum(len(p) for path, p in run.series.items() if path.endswith(("/stdout", "/stderr"))),
        "plain_text": plain_text(logs),
        "record_format": "JSON lines, one operation a line (data-N.log, one folder a segment)",
        "status": seg_info[-1]["end"],
    }


def number(text):
    """An MLflow tag (always a string) as the number it holds, else the text."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def read_mlflow(out_dir):
    from mlflow import MlflowClient

    uri = f"sqlite:///{os.path.join(out_dir, 'mlflow.db')}"
    client = MlflowClient(uri, uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    [run] = [r for r in runs if "run_id" in r.data.tags][-1:]
    rid = run.info.run_id

    def local(artifact_path):  # the store's artifact folder as it lies now, wherever it was written
        uri = run.info.artifact_uri
        return os.path.join(out_dir, "mlartifacts", uri.split("/mlartifacts/", 1)[1], artifact_path)

    def history(key):
        return [(m.step, m.value, m.timestamp) for m in client.get_metric_history(rid, key)]

    epoch_series = {k: history(k) for k in EPOCH_KEYS}
    metrics = run.data.metrics
    with open(local("dataset.json")) as f:
        info = json.load(f)
    classes = info["classes"]
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
    [model] = client.search_registered_models(f"tags.run_id = '{run.data.tags['run_id']}'") or [None]
    versions = (
        sorted(client.search_model_versions(f"name = '{model.name}'"), key=lambda v: int(v.version)) if model else []
    )
    aliases = {}
    for alias, version in model.aliases.items() if model else []:
        aliases.setdefault(int(version), []).append(alias)
    system = {k: history(k) for k in metrics if k.startswith("system/")}
    times = sorted(t for points in system.values() for _, _, t in points)
    gaps = [(b - a) / 1000 for a, b in itertools.pairwise(times)]
    inputs = run.inputs.dataset_inputs
    epochs = [int(v) for _, v, _ in epoch_series["epoch"]]
    return {
        "tool": "MLflow",
        "reader": "MlflowClient",
        "config": dict(run.data.params),
        "epochs": [{k: epoch_series[k][i][1] for k in EPOCH_KEYS} for i in range(len(epoch_series["epoch"]))],
        "steps": [(s, v) for s, v, _ in history("train/batch_loss")],
        "summary": {k: metrics[k] for k in SUMMARY_KEYS if k in metrics},
        "segments": [{"id": rid, "epochs": epochs, "end": f"status {run.info.status}", "killed": False}],
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
        "models": [
            {"metadata": {k: number(v) for k, v in ver.tags.items()}, "aliases": aliases.get(int(ver.version), [])}
            for ver in versions
        ],
        "models_kind": "Model Registry versions of one registered model",
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


READERS = {"W&B": ("wandb", read_wandb), "Neptune": ("neptune", read_neptune), "MLflow": ("mlflow", read_mlflow)}


def read_all(root):
    """Each tool's record of the job, from root/wandb, root/neptune and root/mlflow, and of its search
    from root/search/ (where there is one: `make run` makes none)."""
    found = {tool: read(os.path.join(root, sub)) for tool, (sub, read) in READERS.items()}
    for tool, search in read_searches(os.path.join(root, "search")).items():
        found[tool]["search"] = search
    return found


# A search (--search N): each tool's record of its trials, grouped as the tool groups a search.
SEARCH_PARAMS = ("lr", "weight_decay", "label_smoothing", "warmup_epochs")


def new_trial(params):
    return {"params": params, "val_acc": [], "state": None, "duration_s": None, "segments": 0}


def wandb_search(out_dir):
    """The trials (a run each, of one group) and the study runs (job_type study), from the .wandb logs."""
    trials, studies = {}, {}
    for log in wandb_logs(out_dir):  # oldest first: a later segment of a run updates its summary
        logged = leet_records(log)
        run = next(r["run"] for r in logged if r["type"] == "run")
        summary = {}
        for r in logged:
            if r["type"] == "summary":
                summary.update(r["summary"].get("update", {}))
        if run["job_type"] == "study":  # a study recorded again (a stop while it was written) is one run
            study = studies.setdefault(run["run_id"], {"group": run["run_group"]})
            if "best/trial" in summary:
                study.update(best=summary["best/trial"], best_val_acc=summary["best/val_acc"])
            continue
        config = run["config"]["update"]
        trial = trials.setdefault(config["trial"], new_trial({k: config[k] for k in SEARCH_PARAMS}))
        trial.update(segments=trial["segments"] + 1, group=run["run_group"])
        trial["val_acc"] += [
            r["history"]["item"]["val/acc"]
            for r in logged
            if r["type"] == "history" and "val/acc" in r["history"]["item"]
        ]
        trial["state"] = summary.get("trial/state", trial["state"])
        trial["duration_s"] = summary.get("trial/duration_s", trial["duration_s"])
    return {
        "trials": trials,
        "studies": [s for s in studies.values() if "best" in s],
        "grouping": "a run per trial, all of one group (W&B's grouping, as a sweep's runs), and the study as a "
        "run of job_type study (optuna-integration's WeightsAndBiasesCallback)",
    }


def neptune_search(out_dir):
    """The trials (a run each, tagged with the study) and the study runs (neptune-optuna's record)."""
    trials, studies = {}, {}
    for folder in neptune_folders(out_dir):  # oldest first
        ops = operations(folder)
        run_id = neptune_export.assigned(ops, "run_id")
        if run_id.endswith("-study"):
            numbers = {op["path"][2] for op in ops if op["path"][:2] == ["trials", "trials"]}
            if not any(op["path"][:2] == ["best", "trials"] for op in ops):
                continue  # cut short while written; the study is recorded again, under the same run_id

            studies[run_id] = {
                "best": int(next(op["path"][2] for op in ops if op["path"][:2] == ["best", "trials"])),
                "best_val_acc": neptune_export.assigned(ops, "best/value"),
                "trials": {
                    int(n): {
                        "params": {
                            k: neptune_export.assigned(ops, f"trials/trials/{n}/params/{k}") for k in SEARCH_PARAMS
                        },
                        "val_acc": study_values(ops, n),
                        "state": neptune_export.assigned(ops, f"trials/trials/{n}/state"),
                    }
                    for n in numbers
                },
            }
            continue
        number = int(run_id.rpartition("-")[2])
        trial = trials.setdefault(
            number, new_trial({k: neptune_export.assigned(ops, f"parameters/{k}") for k in SEARCH_PARAMS})
        )
        trial["segments"] += 1
        trial["val_acc"] += [
            v["value"] for op in ops if op["type"] == "LogFloats" and op["path"] == ["val", "acc"] for v in op["values"]
        ]
        trial["state"] = neptune_export.assigned(ops, "trial/state") or trial["state"]
        trial["duration_s"] = neptune_export.assigned(ops, "trial/duration_s") or trial["duration_s"]
    return {
        "trials": trials,
        "studies": list(studies.values()),
        "grouping": "the study as one run (neptune-optuna: each trial under trials/trials/N, the best under best/, "
        "Optuna's plots), and a run per trial tagged with the study's name",
    }


def study_values(ops, n):
    """Trial n's validation accuracy by epoch in neptune-optuna's record (its intermediate values)."""
    return [
        v
        for _, v in sorted(
            (int(op["path"][4]), op["value"])
            for op in ops
            if op["path"][:4] == ["trials", "trials", n, "intermediate_values"]
        )
    ]


def mlflow_search(out_dir):
    """The study's run and its child runs, one per trial, from the store through MlflowClient."""
    from mlflow import MlflowClient

    uri = f"sqlite:///{os.path.abspath(out_dir)}/mlflow.db"
    client = MlflowClient(uri, uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
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
            parent=run.data.tags.get("mlflow.parentRunId"),
            state=run.data.tags.get("trial_state"),
            duration_s=run.data.metrics.get("trial/duration_s"),
        )
        trial["val_acc"] = [
            m.value for m in sorted(client.get_metric_history(run.info.run_id, "val/acc"), key=lambda m: m.step)
        ]
    studies = [
        {
            "run_id": r.info.run_id,
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


SEARCH_READERS = {
    "W&B": ("wandb", wandb_search),
    "Neptune": ("neptune", neptune_search),
    "MLflow": ("mlflow", mlflow_search),
}


def read_searches(root):
    """Each tool's record of its search, from root/wandb, root/neptune and root/mlflow (where there is one)."""
    return {
        tool: read(os.path.join(root, sub))
        for tool, (sub, read) in SEARCH_READERS.items()
        if os.path.isdir(os.path.join(root, sub))
    }
