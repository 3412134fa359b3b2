"""The one reader of Trackio's record: its local store, one SQLite database a project
(`<TRACKIO_DIR>/<project>.db`), with media files and a content-addressed artifact store beside it.
Its contract is trackers/reading.py's.

Trackio's readers are its dashboard's server and command line (`trackio get run`), and its
`SQLiteStorage`, which reads only the folder fixed when trackio is imported. Records in several
folders are read here, in one process, from the store's tables as trackio 0.43.0 writes them:
metrics(run_id, run_name, step, metrics JSON, timestamp), a row per `trackio.log` call; configs;
system_metrics; alerts; artifacts, artifact_versions (metadata JSON), artifact_aliases and
run_artifact_links. A run is known by its name (our run id): a resumed run reopens it by name.
tests/test_trackio_script.py checks this reading against `trackio get run` and the dashboard's API.
"""

import contextlib
import json
import math
import os
import shutil
import sqlite3

import durable
from trackers.base import Recorded
from trackers.reading import EPOCH_KEYS, SEARCH_PARAMS, SUMMARY_KEYS, copy_tree, new_trial, plain_text

FOLDER = "trackio"  # Trackio's folder under --out-dir, unless the user's TRACKIO_DIR names another
RECORD_PATHS = (FOLDER,)
PROJECT = "alexnet-cifar10"
FOOTPRINT = "its SQLite store and media files; model files by reference"
_NUMBERS = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}  # how Trackio stores them


def store(out_dir):
    """The Trackio folder of the runs in --out-dir: its trackio/, or the user's TRACKIO_DIR where the
    runs wrote there."""
    local = os.path.join(out_dir, FOLDER)
    return local if os.path.isdir(local) else os.environ.get("TRACKIO_DIR", local)


def _database(folder, project):
    name = "".join(c for c in project if c.isalnum() or c in "-_").rstrip() or "default"  # Trackio's file name
    return os.path.join(folder, f"{name}.db")


def _projects(folder):
    return sorted(n[: -len(".db")] for n in os.listdir(folder) if n.endswith(".db")) if os.path.isdir(folder) else []


@contextlib.contextmanager
def _connect(path):
    db = sqlite3.connect(path, timeout=30)
    db.row_factory = sqlite3.Row
    try:
        yield db
    finally:
        db.close()


def _decoded(text):
    return {k: _NUMBERS.get(v, v) if isinstance(v, str) else v for k, v in json.loads(text).items()}


def rows(folder, project, run):
    """Every row a run logged (a dict of its values, with its step), in the order stored."""
    path = _database(folder, project)
    if not os.path.isfile(path):
        return []
    with _connect(path) as db:
        found = db.execute("SELECT step, metrics FROM metrics WHERE run_name = ? ORDER BY id", (run,)).fetchall()
    return [{**_decoded(r["metrics"]), "step": r["step"]} for r in found]


def run_exists(folder, project, run):
    """Whether the store holds a row of the run (Trackio keeps a run, and its config, with its first row)."""
    path = _database(folder, project)
    if not os.path.isfile(path):
        return False
    with _connect(path) as db, contextlib.suppress(sqlite3.OperationalError):  # no table yet
        return db.execute("SELECT 1 FROM metrics WHERE run_name = ? LIMIT 1", (run,)).fetchone() is not None
    return False


def _versions(db, run, kind):
    """The run's artifact versions of a type, each link (each log_artifact of it) once: (version row,
    metadata, aliases)."""
    found = []
    with contextlib.suppress(sqlite3.OperationalError):  # a store with no artifact yet
        links = db.execute(
            "SELECT v.id, v.version, v.metadata, v.manifest, a.name FROM run_artifact_links l "
            "JOIN artifact_versions v ON v.id = l.artifact_version_id JOIN artifacts a ON a.id = v.artifact_id "
            "WHERE l.run_name = ? AND l.direction = 'output' AND a.type = ? ORDER BY l.id",
            (run, kind),
        ).fetchall()
        for link in links:
            aliases = [
                r["alias"]
                for r in db.execute("SELECT alias FROM artifact_aliases WHERE artifact_version_id = ?", (link["id"],))
            ]
            found.append((link, json.loads(link["metadata"] or "{}"), aliases))
    return found


def recorded(folder, project, run):
    """What the store holds of a run (`Recorded`): a model version is known by its epoch-N or final alias."""
    logged = rows(folder, project, run)
    held = Recorded(
        steps={int(r["global_step"]) for r in logged if "train/batch_loss" in r},
        epochs={int(r["epoch"]) for r in logged if "val/acc" in r},
        results=any("test/acc" in r for r in logged),
    )
    path = _database(folder, project)
    if os.path.isfile(path):
        with _connect(path) as db:
            for _, meta, aliases in _versions(db, run, "model"):
                if "final" in aliases:
                    held.final = True
                else:
                    held.versions.add(int(meta["epoch"]))
    return held


def _our_runs(db):
    """Our runs in a store (named by our run ids), oldest first; a search's study run is one of them."""
    return [
        r["run_name"]
        for r in db.execute("SELECT run_name, MIN(id) AS first FROM metrics GROUP BY run_name ORDER BY first")
    ]


def _job(folder):
    """(project, run name) of the run in a folder: the one run of its one project (a search holds more)."""
    for project in _projects(folder):
        with _connect(_database(folder, project)) as db, contextlib.suppress(sqlite3.OperationalError):
            names = _our_runs(db)
            if names:
                return project, names
    return PROJECT, []


def read_run(out_dir):
    folder = store(out_dir)
    project, names = _job(folder)
    run = names[-1] if names else None
    logged = rows(folder, project, run) if run else []
    path = _database(folder, project)
    models, dataset, config, system, alerts, segments = [], None, {}, 0, [], []
    if run:
        with _connect(path) as db:
            for _, meta, aliases in _versions(db, run, "model"):
                models.append(
                    {"epoch": meta.get("epoch"), "final": "final" in aliases, "metadata": meta, "aliases": aliases}
                )
            found = _versions(db, run, "dataset")
            dataset = found[-1] if found else None
            with contextlib.suppress(sqlite3.OperationalError):
                row = db.execute("SELECT config FROM configs WHERE run_name = ? ORDER BY id DESC", (run,)).fetchone()
                config = json.loads(row["config"]) if row else {}
                system = db.execute("SELECT COUNT(*) FROM system_metrics WHERE run_name = ?", (run,)).fetchone()[0]
                alerts = [r["title"] for r in db.execute("SELECT title FROM alerts WHERE run_name = ?", (run,))]
                segments = [
                    r["run_id"] for r in db.execute("SELECT DISTINCT run_id FROM metrics WHERE run_name = ?", (run,))
                ]
    summary = {}
    for r in logged:
        summary.update({k: r[k] for k in SUMMARY_KEYS if k in r})
    ends = [r for r in logged if "run/status" in r]
    evaluation = next((r for r in logged if "test/per_class_acc" in r), {})
    classes = [row["class"] for row in evaluation.get("test/per_class_acc", {}).get("_value", [])]
    counts = evaluation.get("test/confusion_matrix_counts", {}).get("_value", [])
    mistakes = [
        {
            "index": row["test index"],
            "true": row["true"],
            "predicted": row["predicted"],
            "probability": row["probability"],
            "image": os.path.join(folder, "media", row["image"]["file_path"]),
        }
        for row in evaluation.get("test/most_confident_mistakes", {}).get("_value", [])
    ]
    import numpy as np

    return {
        "tool": "Trackio",
        "reader": "the reader of Trackio's SQLite store (trackers/trackio_record.py)",
        "runs": len(names) if names else 0,
        "config": {k: v for k, v in config.items() if not k.startswith("_")},
        "epochs": [{k: r.get(k) for k in EPOCH_KEYS} for r in logged if "val/acc" in r],
        "steps": [(r["global_step"], r["train/batch_loss"]) for r in logged if "train/batch_loss" in r],
        "models": models,
        "test_acc": [r["test/acc"] for r in logged if "test/acc" in r],
        "summary": summary,
        "segments": [
            {"id": s, "epochs": [int(r["epoch"]) for r in logged if "val/acc" in r], "end": "", "killed": False}
            for s in segments
        ],
        "ended": ends[-1]["run/status"] if ends else None,
        "one_run": len(segments) == 1,
        "segments_note": f'one Trackio run ({run}), reopened by its name on --resume (resume="allow")',
        "dataset": {
            "recorded": dataset is not None,
            "kind": "a dataset artifact",
            "version": f"version v{dataset[0]['version']} ({', '.join(dataset[2])})" if dataset else None,
            "files": len(json.loads(dataset[0]["manifest"])) if dataset else 0,
            "hashed_by_tool": sum(bool(e.get("digest")) for e in json.loads(dataset[0]["manifest"])) if dataset else 0,
            "hash_note": "a sha256 of each data file in the artifact's manifest",
            "hash_at_sync": False,
        },
        "models_kind": "versions of a model artifact, each a checksummed reference to its file",
        "classes": classes,
        "confusion": np.array([[row[c] for c in classes] for row in counts], dtype=int)
        if counts
        else np.zeros((0, 0), dtype=int),
        "confusion_chart": False,
        "confusion_kind": "a PNG image (trackio.Image) and its counts as a table",
        "per_class_acc": {
            row["class"]: row["accuracy"] for row in evaluation.get("test/per_class_acc", {}).get("_value", [])
        },
        "mistakes": mistakes,
        "histograms": {
            k: [(r.get("epoch"), r[k]["bins"], r[k]["values"]) for r in logged if k in r]
            for k in sorted({k for r in logged for k in r if k.startswith(("gradients/", "parameters/"))})
        },
        "system_samples": system,
        "console_lines": 0,  # Trackio captures no console output
        "alerts": alerts,
        "plain_text": plain_text([path]) if os.path.isfile(path) else False,
        "record_format": "a SQLite database (one a project), media files and a content-addressed artifact store",
        "status": ends[-1]["run/status"] if ends else "no status row (killed)",
    }


def read_search(out_dir):
    """The trials (a run each, of one group) and the study's run (the group's run that holds the trials)."""
    folder = store(out_dir)
    project, names = _job(folder)
    trials, studies = {}, []
    path = _database(folder, project)
    configs = {}
    starts = {}
    if names:
        with _connect(path) as db:
            configs = {
                r["run_name"]: json.loads(r["config"]) for r in db.execute("SELECT run_name, config FROM configs")
            }
            for r in db.execute("SELECT run_name, COUNT(DISTINCT run_id) AS n FROM metrics GROUP BY run_name"):
                starts[r["run_name"]] = r["n"]
    for name in names:
        logged, config = rows(folder, project, name), configs.get(name, {})
        if name.endswith("-study"):
            best = next((r for r in logged if "best/trial" in r), None)
            if best:
                studies.append(
                    {
                        "group": config.get("_Group"),
                        "closed": True,
                        "best": int(best["best/trial"]),
                        "best_val_acc": best["best/val_acc"],
                    }
                )
            continue
        trial = trials.setdefault(int(config["trial"]), new_trial({k: config.get(k) for k in SEARCH_PARAMS}))
        ends = [r for r in logged if "trial/state" in r]
        trial.update(
            segments=starts.get(name, 0),  # Trackio runs of this name: a resumed trial reopens its own
            group=config.get("_Group"),
            state=ends[-1]["trial/state"] if ends else None,
            duration_s=ends[-1]["trial/duration_s"] if ends else None,
        )
        trial["val_acc"] = [r["val/acc"] for r in logged if "val/acc" in r]
    return {
        "trials": trials,
        "studies": studies,
        "grouping": "a run per trial, all of one group (Trackio's grouping), and the study as a run of that group "
        "holding the trials as a table",
    }


def record_files(out_dir, run_id):
    """The files that hold one run's record alone: none (a project's store holds all its runs)."""
    return []


def referenced(out_dir):
    """The store's text and every file it points to: media files and the artifacts' blobs."""
    folder = store(out_dir)
    texts, files = [], []
    for project in _projects(folder):
        with _connect(_database(folder, project)) as db:
            for (table,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
                texts += [list(row) for row in db.execute(f'SELECT * FROM "{table}"').fetchall()]
            for (metrics,) in db.execute("SELECT metrics FROM metrics"):
                files += [os.path.join(folder, "media", p) for p in _media(json.loads(metrics))]
            for (manifest,) in db.execute("SELECT manifest FROM artifact_versions"):
                for entry in json.loads(manifest):
                    if entry.get("digest") and not entry.get("ref"):
                        digest = entry["digest"].removeprefix("sha256:")
                        files.append(os.path.join(folder, "artifacts", project, "blobs", "sha256", digest[:2], digest))
                    elif entry.get("ref", "").startswith("file://"):
                        files.append(entry["ref"][len("file://") :])
    return json.dumps(texts, default=str), files


def _media(value):
    """The media files a logged value points to (an image, a table's images), relative to media/."""
    if isinstance(value, dict):
        if isinstance(value.get("file_path"), str) and value.get("_type", "").startswith("trackio."):
            yield value["file_path"]
        for v in value.values():
            yield from _media(v)
    elif isinstance(value, list):
        for v in value:
            yield from _media(v)


def values_logged(out_dir, run_id, prefix):
    """How many values of the series named `prefix`... the run's rows hold (a benchmark's load)."""
    folder = store(out_dir)
    return sum(k.startswith(prefix) for project in _projects(folder) for r in rows(folder, project, run_id) for k in r)


def write_queued(run):
    """Write the rows `run` has queued into its local store now. Trackio's own sender writes them every
    0.5 s from a daemon thread, so rows queued less than that before the process ends (a second Ctrl-C
    that stops waiting for `finish`) would never reach the store. Private internals of trackio 0.43.0:
    `Run._flush_queues_inline`, under the `_client_lock` its sender holds for the same call."""
    if run._is_local:
        with run._client_lock:
            run._flush_queues_inline()


def repoint_store(old, new):
    """Trackio keeps the run's config (--out-dir, --data-dir) and the dataset's file references as
    absolute paths: every text value of each project's store in `new` re-pointed from the old folder."""
    folder = os.path.join(new, FOLDER)
    projects = _projects(folder)
    for project in projects:
        durable.repoint_sqlite(_database(folder, project), old, new)
    return f"re-pointed {len(projects)} Trackio store(s) from {old} to {new}"


def copy_record(src, dst, search=False):
    """The Trackio folder (its stores, media and artifact blobs; model versions are references)."""
    copy_tree(os.path.join(store(src), ""), os.path.join(dst, FOLDER), skip=(".lock",))
    if search:  # a search's readers read the store alone
        shutil.rmtree(os.path.join(dst, FOLDER, "artifacts"), ignore_errors=True)
    return {}
