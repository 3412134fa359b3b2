"""The one reader of Neptune's record: the operation log the client writes offline (and for an async
run not yet acknowledged by a server) under its data directory, `.neptune/offline/run__*/data-N.log`,
JSON lines, one operation a line, one folder a segment. Neptune 1.14's client reads these logs only to
upload them (`neptune sync`); this replays them as a server would. Its contract is trackers/reading.py's;
neptune_export.py moves what it replays into another tool.

The log is Neptune's private format as neptune 1.14.0.post2 writes it: an entry {"obj": operation,
"version": n, "at": seconds}, an operation {"type": "LogFloats" | "AssignString" | "UploadFile" | ...,
"path": [...], ...}.
"""

import ast
import base64
import glob
import hashlib
import io
import json
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC

import numpy as np

import durable
from trackers.base import Recorded, UsageError, first_line
from trackers.reading import (
    EPOCH_KEYS,
    SEARCH_PARAMS,
    SUMMARY_KEYS,
    copy_tree,
    dataset_sizes,
    new_trial,
    plain_text,
)

RECORD_PATHS = (".neptune",)
MODEL_EXTENSIONS = ("pt", "pth", "ckpt", "bin", "safetensors", "h5", "keras", "onnx", "pkl", "joblib")
SYSTEM = re.compile(r"^monitoring/[^/]+/(?!stdout$|stderr$)")  # hardware metrics, not console output
EXIT_CODES = {"completed": 0, "failed": 1, "interrupted": 130}
LOG_NAME = re.compile(r"data-(\d+)\.log")


@dataclass
class Log:
    """One queue's operation log as read: its entries, where each came from, and what was not read."""

    entries: list = field(default_factory=list)  # {"obj": operation, "version", "at"}, in order
    lines: list = field(default_factory=list)  # "FILE: line N" of each entry
    unread: list = field(default_factory=list)  # what could not be read, by file and line, and why
    cut: list = field(default_factory=list)  # a last line cut short by a hard kill


def is_operation(entry):
    return (
        isinstance(entry, dict)
        and isinstance(entry.get("obj"), dict)
        and isinstance(entry["obj"].get("type"), str)
        and isinstance(entry["obj"].get("path"), list)
    )


def read_log(folder):
    """One queue's operation log (`data-N.log` files, in N's order). A bad line or file is passed
    over and named, the rest still read: a line cut short at the end by a hard kill (the client
    writes through a buffer) is expected; anything else is input that could not be read."""
    log, files = Log(), []
    for path in sorted(glob.glob(os.path.join(folder, "data-*.log"))):
        number = LOG_NAME.fullmatch(os.path.basename(path))
        if number:
            files.append((int(number[1]), path))
        else:
            log.unread.append(f"{path}: not a queue log's name (data-N.log); not read")
    for i, (_, path) in enumerate(sorted(files)):
        try:
            with open(path, "rb") as f:
                lines = f.read().split(b"\n")
        except OSError as e:
            log.unread.append(f"{path}: cannot be read ({e.strerror}); not read")
            continue
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                entry = None
                if i == len(files) - 1 and number == len(lines):  # the last write, never finished
                    log.cut.append(f"{path}: line {number} is cut short (a hard kill?); not read")
                    continue
            if is_operation(entry):
                log.entries.append(entry)
                log.lines.append(f"{path}: line {number}")
            else:
                log.unread.append(f"{path}: line {number} is not a Neptune operation; not read")
    return log


def operations(folder):
    """Every operation of one run's offline or async queue, in order."""
    return [entry["obj"] for entry in read_log(folder).entries]


def assigned(ops, path):
    values = [op["value"] for op in ops if op["type"].startswith("Assign") and "/".join(op["path"]) == path]
    return values[-1] if values else None


@dataclass
class Queue:
    """One folder of operations: a run's offline log, or one process's async queue."""

    folder: str
    log: Log
    created: str
    container: str  # the Neptune object's id
    problems: list  # what is missing from the log itself

    @property
    def run_id(self):
        value = assigned([e["obj"] for e in self.log.entries], "run_id")
        return None if value is None else str(value)


def find_queues(path):
    """The queues under `path`: a folder holding a Neptune data directory, the data directory, or one run's folder."""
    if not os.path.isdir(path):
        raise UsageError(f"{path} is not a folder")
    queues = []
    for folder, dirs, files in os.walk(path):
        dirs.sort()
        if not any(LOG_NAME.fullmatch(f) for f in files):
            continue
        meta, unread = {}, []
        if "metadata.json" in files:
            try:
                with open(os.path.join(folder, "metadata.json"), "rb") as f:
                    meta = json.load(f)
                if not isinstance(meta, dict):
                    raise ValueError("not a JSON object")
            except (OSError, ValueError) as e:
                meta = {}
                unread.append(
                    f"{os.path.join(folder, 'metadata.json')}: line 1: cannot be read ({first_line(e)}); "
                    "the queue is taken for a run's, named by its folder"
                )
        if meta.get("containerType", "run") != "run":
            continue  # models and projects: this moves runs
        log = read_log(folder)
        log.unread[:0] = unread
        problems = list(log.cut)
        version = log.entries[0].get("version", 1) if log.entries else 1
        if isinstance(version, int) and version > 1:  # an async queue whose server acknowledged the start
            problems.append(
                f"{folder}: operations 1 to {version - 1} were acknowledged by a Neptune "
                "server and deleted here; they are on that server, not in this export"
            )
        parts = os.path.basename(folder).split("__")
        container = str(meta.get("containerId") or (parts[1] if len(parts) > 1 else os.path.basename(folder)))
        queues.append(Queue(folder, log, str(meta.get("createdAt", "")), container, problems))
    if not queues:
        raise UsageError(
            f"no Neptune run data under {path} (looked for .neptune/offline/run__*/data-1.log and .neptune/async/...)"
        )
    return queues


def group_segments(queues):
    """Queues grouped into target runs: the segments of a resumed job share the `run_id` field; any
    other queue is a run of its own. Each group oldest first."""
    groups = {}
    for q in sorted(queues, key=lambda q: q.created):
        groups.setdefault(re.sub(r"[^\w.-]", "-", q.run_id or q.container), []).append(q)
    return groups


@dataclass
class Run:
    """One target run, replayed from its operations: what a Neptune server would show."""

    key: str
    segments: list
    fields: dict = field(default_factory=dict)  # path -> value (Assign*)
    series: dict = field(default_factory=dict)  # path -> [(step, value, ts)] (floats, strings, images)
    kinds: dict = field(default_factory=dict)  # series path -> "float", "string" or "image"
    series_config: dict = field(default_factory=dict)  # path -> {min, max, unit}
    string_sets: dict = field(default_factory=dict)  # path -> set
    files: dict = field(default_factory=dict)  # path -> {"source", "ext", "at"} or {"content", "ext"}
    file_sets: dict = field(default_factory=dict)  # path -> [globs]
    tracked: dict = field(default_factory=dict)  # path -> [(file path, destination)]
    pointers: dict = field(default_factory=dict)  # namespace -> file path it names in its "checkpoint"
    version_meta: dict = field(default_factory=dict)  # file path -> metadata while a namespace named it
    version_aliases: dict = field(default_factory=dict)  # file path -> names of namespaces that named it
    applied: Counter = field(default_factory=Counter)  # operation type -> count
    skipped: Counter = field(default_factory=Counter)  # (operation type, why) -> count
    deleted: list = field(default_factory=list)
    problems: list = field(default_factory=list)  # files missing or changed since logged, by name
    unread: list = field(default_factory=list)  # input not read or not applied, by file and line
    created: float = None
    ended: float = None

    @property
    def container_ids(self):
        return {q.container for q in self.segments}

    def namespace(self, prefix):
        return {p[len(prefix) + 1 :]: v for p, v in self.fields.items() if p.startswith(prefix + "/")}

    @property
    def status(self):
        """How the run ended: "completed", "failed" or "interrupted" (the scripts' status field, else
        Neptune's own sys/failed)."""
        if self.fields.get("status") in EXIT_CODES:
            return self.fields["status"]
        return "failed" if self.fields.get("sys/failed") else "completed"

    @property
    def exit_code(self):
        return int(self.fields.get("exit_code", EXIT_CODES[self.status]))

    @property
    def model_files(self):
        """Uploaded files that are model versions, in upload order: model files, or files a
        namespace's `checkpoint` field names (as the Neptune adapter's model/best does)."""
        named = set(self.version_aliases)
        return [p for p, f in self.files.items() if f.get("ext") in MODEL_EXTENSIONS or p in named]

    def file_present(self, path):
        """Whether an uploaded file is where the log points; a missing or changed one is reported by name."""
        f = self.files[path]
        if "content" in f:
            return True
        if not os.path.isfile(f["source"]):
            self.problems.append(f"{path}: {f['source']} is missing (deleted or moved since it was logged)")
            return False
        if f.get("at") and os.path.getmtime(f["source"]) > f["at"] + 2:
            self.problems.append(f"{path}: {f['source']} changed after it was logged; the exported bytes are today's")
        return True

    def file_bytes(self, path):
        """The bytes of an uploaded file as the log points to them now, or None (reported by name)."""
        if not self.file_present(path):
            return None
        f = self.files[path]
        if "content" in f:
            return f["content"]
        with open(f["source"], "rb") as fh:
            return fh.read()

    def file_set_paths(self, path):
        paths = sorted({p for g in self.file_sets[path] for p in glob.glob(g, recursive=True) if os.path.isfile(p)})
        if not paths:
            self.problems.append(f"{path}: no file matches {', '.join(self.file_sets[path])} any more")
        return paths

    def tracked_files(self, path):
        """The tracked files that still exist, with a sha256 over them computed now (offline, Neptune
        records paths only; its own hash would have been computed at `neptune sync`)."""
        present, digest = [], hashlib.sha256()
        for source, _ in self.tracked[path]:
            local = source[len("file://") :] if source.startswith("file://") else source
            if not os.path.exists(local):
                self.problems.append(f"{path}: tracked file {local} is missing")
                continue
            present.append(local)
            with open(local, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    digest.update(chunk)
        return present, digest.hexdigest()

    def axes(self):
        """Float and image series grouped by their steps, each group with the name of its step axis:
        a series whose values are its own steps ("epoch"), else `<common prefix>_step`."""
        groups = {}
        for path, points in self.series.items():
            if self.kinds[path] == "string":
                continue
            groups.setdefault((self.kinds[path] == "image", tuple(s for s, _, _ in points)), []).append(path)
        named = {}
        for (_, steps), paths in groups.items():
            own = [p for p in paths if self.kinds[p] == "float" and [v for _, v, _ in self.series[p]] == list(steps)]
            if own:
                axis = min(own, key=len)
            else:
                prefix = os.path.commonprefix([self.target_name(p) for p in paths]).rstrip("/_")
                axis = f"{prefix or self.target_name(paths[0])}_step"
                while axis in named or axis in self.series:  # two groups with one prefix: each its own axis
                    axis += "_"
            named[axis] = paths
        return named

    @staticmethod
    def target_name(path):
        """Neptune's hardware monitoring (monitoring/<hash>/cpu) as the target's system metrics."""
        return "system/" + path.split("/", 2)[2] if SYSTEM.match(path) else path

    def text(self, path):
        """A string series as text, a line a point."""
        return "".join(v if v.endswith("\n") else v + "\n" for _, v, _ in self.series[path])

    @staticmethod
    def image(value):
        from PIL import Image

        return Image.open(io.BytesIO(base64.b64decode(value["data"]))).convert("RGB")

    def config(self):
        """Parameters under their own names; what else describes the run, under its Neptune path."""
        config = self.namespace("parameters")
        config.update({f"neptune/series_config/{p}": c for p, c in self.series_config.items()})
        config.update({p: sorted(s) for p, s in self.string_sets.items() if p != "sys/tags"})
        return config

    def summary(self):
        """Every other field: results, dataset description, model fields, status."""
        from datetime import datetime

        skip = ("parameters/", "sys/name", "sys/description")
        summary = {p: v for p, v in self.fields.items() if not p.startswith(skip) and not p.endswith("/checkpoint")}
        for name, at in (("created", self.created), ("ended", self.ended)):  # the first and last operation's time
            if at:
                summary[f"sys/{name}"] = datetime.fromtimestamp(at, UTC).isoformat()
        return summary


def replay(key, segments):
    """The run the segments' operations describe, each operation counted as applied or skipped."""
    run = Run(key, segments)
    batch_ns, before = None, {}
    for q in segments:
        run.problems += q.problems
        run.unread += q.log.unread
        queue_upload = os.path.join(q.folder, "upload_path")
        for entry, line in zip(q.log.entries, q.log.lines, strict=True):
            op, at = entry["obj"], entry.get("at")
            if not isinstance(at, (int, float)):
                at = None
            run.created = run.created or at
            run.ended = at or run.ended
            kind, path = op["type"], "/".join(map(str, op["path"]))
            ns = path.rpartition("/")[0]
            if not kind.startswith("Assign"):
                batch_ns = None
            elif ns != batch_ns:  # a dict assigned is a run of Assign operations on one namespace
                batch_ns, before = ns, run.namespace(ns)
            try:
                why = _apply(run, op, kind, path, at, queue_upload)
            except (KeyError, TypeError, ValueError, AttributeError) as e:  # a field the operation lacks
                why = "a malformed operation"
                run.unread.append(
                    f"{line}: a {kind} operation that cannot be applied ({type(e).__name__}: "
                    f"{first_line(e)}); not applied"
                )
            if why:
                run.skipped[(kind, why)] += 1
            else:
                run.applied[kind] += 1
            if kind.startswith("Assign") and path.endswith("/checkpoint"):
                _name_version(run, ns, op["value"], before)
    for ns, target in run.pointers.items():  # the end state: each namespace's fields go to what it names
        meta = {k: v for k, v in run.namespace(ns).items() if k != "checkpoint" and "/" not in k}
        run.version_meta.setdefault(target, {}).update(meta)
    return run


def _name_version(run, ns, target, before):
    """Namespace `ns` now names the file field `target`: what it held for its previous target
    (its fields before this assignment began) is that version's metadata."""
    old = run.pointers.get(ns)
    if old and old != target:
        meta = {k: v for k, v in before.items() if k != "checkpoint" and "/" not in k}
        run.version_meta.setdefault(old, {}).update(meta)
    run.pointers[ns] = target
    run.version_aliases.setdefault(target, [])
    name = ns.rpartition("/")[2]
    if name not in run.version_aliases[target]:
        run.version_aliases[target].append(name)


def _apply(run, op, kind, path, at, upload_dir):
    """Apply one operation to the run; the reason it was skipped, or None."""
    if kind == "AssignDatetime":
        from datetime import datetime

        run.fields[path] = datetime.fromtimestamp(op["value"] / 1000, UTC).isoformat()
    elif kind == "AssignArtifact":
        run.fields[path] = op["hash"]
    elif kind.startswith("Assign"):
        run.fields[path] = op["value"]
    elif kind in ("LogFloats", "LogStrings", "LogImages"):
        points = run.series.setdefault(path, [])
        run.kinds[path] = {"LogFloats": "float", "LogStrings": "string", "LogImages": "image"}[kind]
        for v in op["values"]:
            step = v["step"] if v["step"] is not None else (points[-1][0] + 1 if points else 0)  # as the server counts
            points.append((step, v["value"], v["ts"]))
    elif kind in ("ClearFloatLog", "ClearStringLog", "ClearImageLog"):
        run.series.pop(path, None)
    elif kind == "ConfigFloatSeries":
        run.series_config[path] = {k: op[k] for k in ("min", "max", "unit")}
    elif kind == "AddStrings":
        run.string_sets.setdefault(path, set()).update(op["values"])
    elif kind == "RemoveStrings":
        run.string_sets.setdefault(path, set()).difference_update(op["values"])
    elif kind == "ClearStringSet":
        run.string_sets[path] = set()
    elif kind == "UploadFile":
        source = op.get("file_path") or os.path.join(upload_dir, op.get("tmp_file_name") or "")
        run.files[path] = {"source": source, "ext": op.get("ext") or "", "at": at}
    elif kind == "UploadFileContent":
        run.files[path] = {"content": base64.b64decode(op["file_content"]), "ext": op.get("ext") or ""}
    elif kind == "UploadFileSet":
        run.file_sets[path] = (run.file_sets.get(path, []) if op.get("reset") == "False" else []) + op["file_globs"]
    elif kind == "DeleteFiles":
        run.file_sets[path] = [g for g in run.file_sets.get(path, []) if g not in op["file_paths"]]
    elif kind == "TrackFilesToArtifact":
        run.tracked.setdefault(path, []).extend(tuple(e) for e in op["entries"])
    elif kind == "ClearArtifact":
        run.tracked.pop(path, None)
    elif kind == "DeleteAttribute":
        for store in (run.fields, run.series, run.string_sets, run.files, run.file_sets, run.tracked):
            for p in [p for p in store if p == path or p.startswith(path + "/")]:
                del store[p]
        run.deleted.append(path)
    elif kind == "CopyAttribute" and op["container_id"] in run.container_ids:  # a field of this run
        source = "/".join(op["source_path"])
        stores = [store for store in (run.fields, run.series, run.string_sets, run.files) if source in store]
        if not stores:
            return "copies a field this run's log does not hold"
        for store in stores:
            store[path] = list(store[source]) if isinstance(store[source], list) else store[source]
        if source in run.kinds:
            run.kinds[path] = run.kinds[source]
    elif kind == "CopyAttribute":
        return "copies a field of another Neptune run or model, which only its server holds"
    else:
        return "an operation type this exporter does not know"
    return None


def folders(out_dir, run_id=None, data_dir=None):
    """The offline operation logs' folders under --out-dir (or Neptune's `data_dir`, the user's
    NEPTUNE_DATA_DIRECTORY) of one run id, or all, oldest first: one per segment, tied by the scripts'
    run_id field (Neptune 1.14 keeps no custom_run_id offline)."""

    def created(folder):
        with open(os.path.join(folder, "metadata.json")) as f:
            return json.load(f)["createdAt"]

    found = sorted(
        glob.glob(os.path.join(data_dir or os.path.join(out_dir, ".neptune"), "offline", "run__*")), key=created
    )
    return [f for f in found if run_id is None or assigned(operations(f), "run_id") == run_id]


def run_operations(out_dir):
    """Every operation of every segment's offline log, oldest first."""
    return [op for folder in folders(out_dir) for op in operations(folder)]


def series(ops, path):
    """A float series' (step, value) points, each as often as logged."""
    return [
        (v["step"], v["value"])
        for op in ops
        if op["type"] == "LogFloats" and "/".join(op["path"]) == path
        for v in op["values"]
    ]


@dataclass
class Held:
    """What earlier segments' logs hold: the run's `Recorded`, and the (series, step) points and the
    uploaded files, so that a kill -9 that cut a call short between two operations leaves what the
    call did write unwritten again."""

    recorded: Recorded
    points: set
    uploads: set


def held(segment_folders):
    """What the logs of a run's earlier segments hold. A kill -9 may cut a log between two operations:
    each check reads the call's last operation (the adapter writes "epoch" last of an epoch's metrics,
    model/latest/checkpoint last of a model version, test/acc last of the results)."""
    ops = [op for folder in segment_folders for op in operations(folder)]
    points = {
        ("/".join(op["path"]), float(v["step"]))
        for op in ops
        if op["type"] == "LogFloats"
        for v in op["values"]
        if v["step"] is not None
    }  # hardware monitoring has no steps
    uploads = {"/".join(op["path"]) for op in ops if op["type"] == "UploadFile"}
    versions = {
        op["value"].rpartition("/")[2]
        for op in ops
        if op["type"] == "AssignString" and op["path"] == ["model", "latest", "checkpoint"]
    }
    recorded = Recorded(
        {int(s) for key, s in points if key == "train/batch_acc"},
        {int(s) for key, s in points if key == "epoch"},
        {int(v[len("epoch_") :]) for v in versions if v.startswith("epoch_")},
        "final" in versions,
        assigned(ops, "test/acc") is not None,
    )
    return Held(recorded, points, uploads)


def _ended(ops):
    """How a segment ended, by the status field the adapter writes at its finish and Neptune's own
    sys/failed flag, which it sets for a run that did not complete; None for a segment killed."""
    status = assigned(ops, "status")
    if status is None:
        return None
    if (status == "completed") == bool(assigned(ops, "sys/failed")):
        return f"{status}, yet sys/failed is {assigned(ops, 'sys/failed')}"
    return status


def read_run(out_dir):
    groups = group_segments(find_queues(os.path.join(out_dir, ".neptune")))
    key, segments = max(groups.items(), key=lambda kv: len(kv[1]))  # the job (a probe may add none)
    run = replay(key, segments)
    ops = [e["obj"] for q in segments for e in q.log.entries]

    def values(path):
        return [v for _, v, _ in run.series.get(path, [])]

    epoch_series = {k: values(k) for k in EPOCH_KEYS}
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
        q_ops = [e["obj"] for e in q.log.entries]
        epochs = [int(v) for _, v in series(q_ops, "epoch")]
        status = assigned(q_ops, "status")
        seg_info.append(
            {
                "id": q.container,
                "epochs": epochs,
                "end": f"status {status}" if status else "no status (killed)",
                "killed": not status,
                "ended": _ended(q_ops),
            }
        )
    models = []
    for op in ops:  # each version as often as uploaded
        if op["type"] == "UploadFile" and op["path"][:2] == ["model", "checkpoints"]:
            version = op["path"][2]
            meta = run.version_meta.get("/".join(op["path"]), {})
            epoch = int(version[len("epoch_") :]) if version.startswith("epoch_") else meta.get("epoch")
            models.append({"epoch": epoch, "final": version == "final", "metadata": meta, "aliases": []})
    logs = [log for q in segments for log in glob.glob(os.path.join(q.folder, "data-*.log"))]
    counts = json.loads(fields["test/confusion_matrix_counts"]) if "test/confusion_matrix_counts" in fields else []
    return {
        "tool": "Neptune",
        "reader": "the reader of Neptune's operation log (trackers/neptune_record.py)",
        "runs": len(groups),
        **dataset_sizes({k[len("dataset/") :]: v for k, v in fields.items() if k.startswith("dataset/")}),
        "config": run.namespace("parameters"),
        "epochs": _by_epoch(epoch_series),
        "steps": [(s, v) for s, v, _ in run.series.get("train/batch_loss", [])],
        "models": models,
        "test_acc": [op["value"] for op in ops if op["type"] == "AssignFloat" and op["path"] == ["test", "acc"]],
        "summary": {k: fields[k] for k in SUMMARY_KEYS if k in fields},
        "segments": seg_info,
        "ended": seg_info[-1]["ended"],
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
            len(p) for path, p in run.series.items() if SYSTEM.match(path) and run.kinds[path] == "float"
        ),
        "console_lines": sum(len(p) for path, p in run.series.items() if path.endswith(("/stdout", "/stderr"))),
        "plain_text": plain_text(logs),
        "record_format": "JSON lines, one operation a line (data-N.log, one folder a segment)",
        "status": seg_info[-1]["end"],
    }


def _by_epoch(epoch_series):
    """Per-epoch dicts from each key's series, the n-th point of each together (a key a kill left
    short of its n-th point is None there)."""
    count = max(map(len, epoch_series.values()))
    return [{k: v[i] if i < len(v) else None for k, v in epoch_series.items()} for i in range(count)]


def read_search(out_dir):
    """The trials (a run each, tagged with the study) and the study runs (neptune-optuna's record)."""
    trials, studies = {}, {}
    for folder in folders(out_dir):  # oldest first
        ops = operations(folder)
        run_id = assigned(ops, "run_id")
        if run_id.endswith("-study"):
            numbers = {op["path"][2] for op in ops if op["path"][:2] == ["trials", "trials"]}
            if not any(op["path"][:2] == ["best", "trials"] for op in ops):
                continue  # cut short while written; the study is recorded again, under the same run_id
            studies[run_id] = {
                "group": run_id[: -len("-study")],
                "closed": True,  # written whole (its best trial is there) by one process, then stopped
                "best": int(next(op["path"][2] for op in ops if op["path"][:2] == ["best", "trials"])),
                "best_val_acc": assigned(ops, "best/value"),
                "trials": {
                    int(n): {
                        "params": {k: assigned(ops, f"trials/trials/{n}/params/{k}") for k in SEARCH_PARAMS},
                        "val_acc": _study_values(ops, n),
                        "state": _optuna_state(assigned(ops, f"trials/trials/{n}/state")),
                    }
                    for n in numbers
                },
            }
            continue
        number = int(run_id.rpartition("-")[2])
        trial = trials.setdefault(number, new_trial({k: assigned(ops, f"parameters/{k}") for k in SEARCH_PARAMS}))
        trial["segments"] += 1
        trial["group"] = assigned(ops, "parameters/study")
        trial["val_acc"] += [v for _, v in series(ops, "val/acc")]
        trial["state"] = assigned(ops, "trial/state") or trial["state"]
        trial["duration_s"] = assigned(ops, "trial/duration_s") or trial["duration_s"]
    return {
        "trials": trials,
        "studies": list(studies.values()),
        "grouping": "the study as one run (neptune-optuna: each trial under trials/trials/N, the best under best/, "
        "Optuna's plots), and a run per trial tagged with the study's name",
    }


# A trial's state in neptune-optuna's record: none for a complete trial (it logs the state of the
# others, as Optuna's repr), the repr for the failed trials the adapter logs beside it.
_OPTUNA_STATES = {None: "complete", "<TrialState.PRUNED: 2>": "pruned", "<TrialState.FAIL: 3>": "failed"}


def _optuna_state(logged):
    return _OPTUNA_STATES.get(logged, logged)


def _study_values(ops, n):
    """Trial n's validation accuracy by epoch in neptune-optuna's record (its intermediate values)."""
    return [
        v
        for _, v in sorted(
            (int(op["path"][4]), op["value"])
            for op in ops
            if op["path"][:4] == ["trials", "trials", n, "intermediate_values"]
        )
    ]


def record_files(out_dir, run_id):
    """The files that hold one run's record (its segments' folders): a run left alone keeps them byte for byte."""
    return sorted(
        os.path.join(d, n) for folder in folders(out_dir, run_id) for d, _, names in os.walk(folder) for n in names
    )


def referenced(out_dir):
    """The logs' text and every file (or glob) they point to: what `neptune sync` uploads."""
    ops = run_operations(out_dir)
    files = [op["file_path"] for op in ops if op["type"] == "UploadFile" and op.get("file_path")]
    files += [g for op in ops if op["type"] == "UploadFileSet" for g in op["file_globs"]]
    files += [path for op in ops if op["type"] == "TrackFilesToArtifact" for path, _ in op["entries"]]
    return json.dumps(ops), files


def _repoint(value, old, new):
    """`value` (a decoded operation) with the folder `old` re-pointed to `new` in every string."""
    if isinstance(value, str):
        return durable.repoint(value, old, new)
    if isinstance(value, list):
        return [_repoint(v, old, new) for v in value]
    if isinstance(value, dict):
        return {k: _repoint(v, old, new) for k, v in value.items()}
    return value


def repoint_logs(old, new):
    """Offline, Neptune records uploads as absolute paths, read at `neptune sync`: every operation log
    under --out-dir `new` re-pointed from the old folder to the new."""
    logs = glob.glob(os.path.join(new, ".neptune", "*", "*", "data-*.log"))
    for log in logs:
        with open(log) as f:
            lines = f.read().splitlines(keepends=True)

        def write(tmp, lines=lines):
            with open(tmp, "w") as f:
                for line in lines:
                    try:
                        f.write(json.dumps(_repoint(json.loads(line), old, new)) + "\n")
                    except ValueError:  # a line cut short by a hard kill stays as it was
                        f.write(line)

        durable.write_atomically(log, write)
    return f"re-pointed {len(logs)} Neptune operation log(s) from {old} to {new}"


FOOTPRINT = "its operation log and in-memory uploads; model files by path"


def copy_record(src, dst, search=False):
    """Each segment's operation log folder; a search's without neptune-optuna's plots (plotly HTML
    pages with plotly.js inside, about 5 MB each), which are counted instead."""
    plots = []
    for folder in folders(src):
        if search:
            plots += glob.glob(os.path.join(folder, "upload_path", "visualizations_*.html"))
        copy_tree(folder, os.path.join(dst, ".neptune", "offline", os.path.basename(folder)), skip=(".html",) * search)
    return {"neptune_plots": {"files": len(plots), "bytes": sum(map(os.path.getsize, plots))}} if search else {}


def values_logged(out_dir, run_id, prefix):
    """How many values of the series named `prefix`... the run's logs hold (a benchmark's load)."""
    return sum(
        len(op["values"])
        for folder in folders(out_dir, run_id)
        for op in operations(folder)
        if op["type"] == "LogFloats" and "/".join(op["path"]).startswith(prefix)
    )
