"""Move Neptune's local run data (offline and unsynced async queues) into W&B or MLflow.

    python neptune_export.py runs/neptune --to wandb     # one W&B offline run per Neptune run; then `wandb sync`
    python neptune_export.py runs/neptune --to mlflow    # a local MLflow store (or --tracking-uri a server)

neptune.ai's hosted app closed on 2026-03-05; Neptune's `neptune-exporter` reads a live Neptune
server, so runs still queued on disk had nowhere to go. This reads the queue itself: the JSON-lines
operation log the client writes under its data directory (`.neptune/offline/`, `.neptune/async/`).
The input is only read, never changed. Segments of one interrupted-and-resumed job (the scripts'
`run_id` field) become one run. Every operation is moved or counted as skipped in the closing summary.
"""

import argparse
import base64
import glob
import hashlib
import io
import json
import logging
import os
import re
import shutil
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path

import durable
from mlflow_tracking import create_store
from tracking import first_line

MODEL_EXTENSIONS = ("pt", "pth", "ckpt", "bin", "safetensors", "h5", "keras", "onnx", "pkl", "joblib")
SYSTEM = re.compile(r"^monitoring/[^/]+/(?!stdout$|stderr$)")  # hardware metrics, not console output
STATUS = {"completed": (0, "FINISHED"), "failed": (1, "FAILED"), "interrupted": (130, "KILLED")}


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


class ExportError(Exception):
    """The input or the target cannot be used: one line, exit 2."""


class NotRead(Exception):
    """Part of the input cannot be read: said by file and line, the rest exported, exit 1."""


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
        raise ExportError(f"{path} is not a folder")
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
        raise ExportError(
            f"no Neptune run data under {path} (looked for .neptune/offline/run__*/data-1.log and .neptune/async/...)"
        )
    return queues


def jobs(queues):
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
        if self.fields.get("status") in STATUS:
            return self.fields["status"]
        return "failed" if self.fields.get("sys/failed") else "completed"

    @property
    def model_files(self):
        """Uploaded files that are model versions, in upload order: model files, or files a
        namespace's `checkpoint` field names (as neptune_integration.py's model/best does)."""
        named = set(self.version_aliases)
        return [p for p, f in self.files.items() if f.get("ext") in MODEL_EXTENSIONS or p in named]


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
                why = apply(run, op, kind, path, at, queue_upload)
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
                point(run, ns, op["value"], before)
    for ns, target in run.pointers.items():  # the end state: each namespace's fields go to what it names
        meta = {k: v for k, v in run.namespace(ns).items() if k != "checkpoint" and "/" not in k}
        run.version_meta.setdefault(target, {}).update(meta)
    return run


def point(run, ns, target, before):
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


def apply(run, op, kind, path, at, upload_dir):
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


def file_present(run, path):
    """Whether an uploaded file is where the log points; a missing or changed one is reported by name."""
    f = run.files[path]
    if "content" in f:
        return True
    if not os.path.isfile(f["source"]):
        run.problems.append(f"{path}: {f['source']} is missing (deleted or moved since it was logged)")
        return False
    if f.get("at") and os.path.getmtime(f["source"]) > f["at"] + 2:
        run.problems.append(f"{path}: {f['source']} changed after it was logged; the exported bytes are today's")
    return True


def file_bytes(run, path):
    """The bytes of an uploaded file as the log points to them now, or None (reported by name)."""
    if not file_present(run, path):
        return None
    f = run.files[path]
    if "content" in f:
        return f["content"]
    with open(f["source"], "rb") as fh:
        return fh.read()


def file_set_paths(run, path):
    paths = sorted({p for g in run.file_sets[path] for p in glob.glob(g, recursive=True) if os.path.isfile(p)})
    if not paths:
        run.problems.append(f"{path}: no file matches {', '.join(run.file_sets[path])} any more")
    return paths


def tracked_files(run, path):
    """The tracked files that still exist, with a sha256 over them computed now (offline, Neptune
    records paths only; its own hash would have been computed at `neptune sync`)."""
    present, digest = [], hashlib.sha256()
    for source, _ in run.tracked[path]:
        local = source[len("file://") :] if source.startswith("file://") else source
        if not os.path.exists(local):
            run.problems.append(f"{path}: tracked file {local} is missing")
            continue
        present.append(local)
        with open(local, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    return present, digest.hexdigest()


def axes(run):
    """Float and image series grouped by their steps, each group with the name of its step axis:
    a series whose values are its own steps ("epoch"), else `<common prefix>_step`."""
    groups = {}
    for path, points in run.series.items():
        if run.kinds[path] == "string":
            continue
        groups.setdefault((run.kinds[path] == "image", tuple(s for s, _, _ in points)), []).append(path)
    named = {}
    for (_, steps), paths in groups.items():
        own = [p for p in paths if run.kinds[p] == "float" and [v for _, v, _ in run.series[p]] == list(steps)]
        if own:
            axis = min(own, key=len)
        else:
            prefix = os.path.commonprefix([target_name(p) for p in paths]).rstrip("/_")
            axis = f"{prefix or target_name(paths[0])}_step"
            while axis in named or axis in run.series:  # two groups with one prefix: each its own axis
                axis += "_"
        named[axis] = paths
    return named


def target_name(path):
    """Neptune's hardware monitoring (monitoring/<hash>/cpu) as the target's system metrics."""
    return "system/" + path.split("/", 2)[2] if SYSTEM.match(path) else path


def text_of(points):
    return "".join(v if v.endswith("\n") else v + "\n" for _, v, _ in points)


def image_of(value):
    from PIL import Image

    return Image.open(io.BytesIO(base64.b64decode(value["data"]))).convert("RGB")


def config_of(run):
    """Parameters under their own names; what else describes the run, under its Neptune path."""
    config = run.namespace("parameters")
    config.update({f"neptune/series_config/{p}": c for p, c in run.series_config.items()})
    config.update({p: sorted(s) for p, s in run.string_sets.items() if p != "sys/tags"})
    return config


def summary_of(run):
    """Every other field: results, dataset description, model fields, status."""
    from datetime import datetime

    skip = ("parameters/", "sys/name", "sys/description")
    summary = {p: v for p, v in run.fields.items() if not p.startswith(skip) and not p.endswith("/checkpoint")}
    for name, at in (("created", run.created), ("ended", run.ended)):  # the first and last operation's time
        if at:
            summary[f"sys/{name}"] = datetime.fromtimestamp(at, UTC).isoformat()
    return summary


class WandbTarget:
    """One W&B offline run per Neptune run under OUT/wandb/; `wandb sync` uploads them."""

    name = "W&B"
    write_errors = (OSError,)

    def __init__(self, args):
        self.out = os.path.abspath(args.out_dir)
        self.project = args.project
        for var, sub in [
            ("WANDB_DIR", ""),
            ("WANDB_CACHE_DIR", ".wandb-cache"),
            ("WANDB_CONFIG_DIR", ".wandb-config"),
            ("WANDB_DATA_DIR", ".wandb-data"),
            ("WANDB_ARTIFACT_DIR", ".wandb-artifacts"),
        ]:
            os.environ[var] = os.path.join(self.out, sub)  # nothing in the home folder, as the scripts
        os.makedirs(self.out, exist_ok=True)

    @staticmethod
    def run_id(run):
        return re.sub(r"[^A-Za-z0-9_-]", "-", run.key)[:64]

    MARKER = "neptune-export.json"  # written last: a folder without it is an export that was cut short

    def existing(self, run):
        for folder in glob.glob(os.path.join(self.out, "wandb", f"offline-run-*-{self.run_id(run)}")):
            if os.path.isfile(os.path.join(folder, self.MARKER)):
                return folder
            print(f"replacing an incomplete export of {run.key}: {folder}")
            shutil.rmtree(folder)
        return None

    def write(self, run):
        import wandb

        moved = Counter()
        config = config_of(run)
        wb = wandb.init(
            mode="offline",
            dir=self.out,
            id=self.run_id(run),
            project=self.project,
            job_type="neptune-export",
            name=run.fields.get("sys/name"),
            notes=run.fields.get("sys/description") or None,
            tags=sorted(run.string_sets.get("sys/tags", [])),
            config=config,
            settings=wandb.Settings(silent=True),
        )
        moved["fields"] += len(config) + sum(k in run.fields for k in ("sys/name", "sys/description"))
        rows = []
        for axis, paths in axes(run).items():
            wb.define_metric(axis, hidden=axis not in paths)
            by_step = {}
            for path in paths:
                if path != axis:
                    wb.define_metric(target_name(path), step_metric=axis)
                for step, value, ts in run.series[path]:
                    row = by_step.setdefault(step, {"_timestamp": ts, axis: step})
                    row[target_name(path)] = (
                        wandb.Image(
                            image_of(value),
                            caption=" - ".join(filter(None, [value.get("name"), value.get("description")])),
                        )
                        if run.kinds[path] == "image"
                        else value
                    )
                    moved["series points"] += 1
            rows += by_step.values()
        for row in sorted(rows, key=lambda r: r["_timestamp"]):
            wb.log(row)
        files_dir = os.path.join(wb.dir, "neptune")
        for path, points in run.series.items():
            if run.kinds[path] == "string":
                self.save(wb, files_dir, f"{path}.txt", text_of(points).encode())
                moved["series points"] += len(points)
        versions = set(run.model_files)
        for path in run.files:
            if path not in versions:
                content = file_bytes(run, path)
                if content is not None:
                    self.save(wb, files_dir, f"{path}.{run.files[path]['ext']}".rstrip("."), content)
                    moved["files"] += 1
        for path in run.file_sets:
            for source in file_set_paths(run, path):
                with open(source, "rb") as f:
                    self.save(wb, files_dir, os.path.join(path, os.path.basename(source)), f.read())
                moved["files"] += 1
        for path in run.tracked:
            present, digest = tracked_files(run, path)
            ns = path.rpartition("/")[0]
            meta = {k: v for k, v in run.namespace(ns).items() if "/" not in k} if ns else {}
            dataset = wandb.Artifact(
                re.sub(r"[^\w.-]", "-", run.fields.get(f"{ns}/name") or path),
                type="dataset",
                metadata={**meta, "neptune_field": path, "sha256_now": digest},
            )
            for local in present:
                dataset.add_reference(f"file://{os.path.abspath(local)}")  # checksummed now, where it lies
            wb.log_artifact(dataset)
            moved["files"] += len(present)
        for path in run.model_files:
            if file_present(run, path):
                self.log_version(wb, run, path)
                moved["files"] += 1
        summary = summary_of(run)
        wb.summary.update(summary)
        moved["fields"] += len(summary)
        wb.finish(exit_code=int(run.fields.get("exit_code", STATUS[run.status][0])))
        folder = os.path.dirname(wb.dir)
        with open(os.path.join(folder, self.MARKER), "w") as f:
            json.dump({"neptune_run": run.key, "queues": [q.folder for q in run.segments], **moved}, f, indent=1)
        return moved, folder

    def log_version(self, wb, run, path):
        import wandb

        alias = path.rpartition("/")[2].replace("_", "-")
        model = wandb.Artifact(f"model-{wb.id}", type="model", metadata=run.version_meta.get(path, {}))
        f = run.files[path]
        if "content" in f:
            with model.new_file(f"model.{f['ext']}", mode="wb") as out:
                out.write(f["content"])
        else:
            model.add_file(f["source"], name=f"model.{f['ext']}")
        wb.log_artifact(model, aliases=list(dict.fromkeys([*run.version_aliases.get(path, []), alias])))

    @staticmethod
    def save(wb, folder, name, content):
        target = os.path.join(folder, name)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "wb") as f:
            f.write(content)
        wb.save(target, base_path=wb.dir, policy="now")

    def done(self, written):
        return [
            f"W&B offline runs in {os.path.join(self.out, 'wandb')}",
            *[f"  upload: wandb sync {folder}" for folder in written],
        ]


class MlflowTarget:
    """One MLflow run per Neptune run: a local store under OUT (SQLite and artifacts), or a server."""

    name = "MLflow"

    def __init__(self, args):
        self.out = os.path.abspath(args.out_dir)
        os.makedirs(self.out, exist_ok=True)
        os.environ["XDG_CONFIG_HOME"] = os.path.join(self.out, ".mlflow-config")  # as mlflow_tracking.py
        os.environ.setdefault("MPLCONFIGDIR", os.path.join(self.out, ".matplotlib"))
        import mlflow
        import sqlalchemy

        logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)  # errors are said in one line instead
        self.uri = args.tracking_uri or f"sqlite:///{os.path.join(self.out, 'mlflow.db')}"
        # What a full disk or a refusing store raises; SQLAlchemy's own error where the store's migrations fail.
        self.write_errors = (OSError, mlflow.exceptions.MlflowException, sqlalchemy.exc.SQLAlchemyError)
        name = args.project or "neptune-export"
        try:
            if not args.tracking_uri:
                create_store(os.path.join(self.out, "mlflow.db"))
            self.client = mlflow.MlflowClient(self.uri, self.uri)
            experiment = self.client.get_experiment_by_name(name)
            self.experiment = (
                experiment.experiment_id
                if experiment
                else self.client.create_experiment(
                    name, artifact_location=None if args.tracking_uri else Path(self.out, "mlartifacts").as_uri()
                )
            )
        except self.write_errors as e:
            raise ExportError(f"MLflow at {self.uri}: {first_line(e)}") from None
        self.model_prefix = name

    def existing(self, run):
        """The MLflow run this Neptune run was moved into; one cut short (no export key, set last) is removed."""
        found = self.client.search_runs([self.experiment], f"tags.`neptune.export_key` = '{run.key}'", max_results=1)
        if found:
            return found[0].info.run_id
        for partial in self.client.search_runs([self.experiment], f"tags.`neptune.export_of` = '{run.key}'"):
            print(f"replacing an incomplete export of {run.key}: MLflow run {partial.info.run_id}")
            self.client.delete_run(partial.info.run_id)
        if self.client.search_registered_models(f"name = '{self.model_prefix}-{run.key}'"):
            self.client.delete_registered_model(f"{self.model_prefix}-{run.key}")
        return None

    def write(self, run):
        from mlflow.entities import Dataset, DatasetInput, InputTag, Metric, Param, RunTag

        moved = Counter()
        tags = {
            "neptune.export_of": run.key,
            "run_id": run.key,
            **dict.fromkeys(run.string_sets.get("sys/tags", []), ""),
        }
        if run.fields.get("sys/description"):
            tags["mlflow.note.content"] = run.fields["sys/description"]
        created = self.client.create_run(
            self.experiment, start_time=int((run.created or 0) * 1000), tags=tags, run_name=run.fields.get("sys/name")
        )
        rid = created.info.run_id
        moved["fields"] += sum(k in run.fields for k in ("sys/name", "sys/description"))
        params, metrics, texts, more_tags = {}, [], {}, {}
        for key, value in config_of(run).items():
            text = value if isinstance(value, str) else json.dumps(value)
            if len(text) <= 6000:  # MLflow's limit for a param value; a longer one becomes a text artifact
                params[self.key(run, key)] = text
            else:
                texts[f"neptune/{key}.txt"] = text
        for path, value in summary_of(run).items():
            if path.startswith("dataset/") and len(str(value)) <= 6000:  # describes the input, as a param
                params[self.key(run, path)] = str(value)
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                metrics.append(Metric(self.key(run, path), float(value), int((run.ended or 0) * 1000), 0))
            elif len(str(value)) <= 8000:  # a tag value's limit
                more_tags[self.key(run, f"neptune/{path}")] = str(value)
            else:
                texts[f"neptune/{path}.txt"] = str(value)
        moved["fields"] += len(params) + len(metrics) + len(texts) + len(more_tags)
        for path, points in run.series.items():
            if run.kinds[path] == "float":
                if any(s != int(s) for s, _, _ in points):
                    run.problems.append(f"{path}: fractional steps rounded down (MLflow steps are whole numbers)")
                name = self.key(run, target_name(path))
                metrics += [Metric(name, float(v), int(ts * 1000), int(s)) for s, v, ts in points]
                moved["series points"] += len(points)
        items = [Param(k, v) for k, v in params.items()]
        tag_items = [RunTag(k, v) for k, v in more_tags.items()]
        for i in range(0, len(items), 100):  # MLflow's batch limits: 100 params or tags, 1000 metrics
            self.client.log_batch(rid, params=items[i : i + 100])
        for i in range(0, len(tag_items), 100):
            self.client.log_batch(rid, tags=tag_items[i : i + 100])
        for i in range(0, len(metrics), 1000):
            self.client.log_batch(rid, metrics=metrics[i : i + 1000])
        for name, text in texts.items():
            self.client.log_text(rid, text, name)
        for path, points in run.series.items():
            if run.kinds[path] == "string":
                self.client.log_text(rid, text_of(points), f"neptune/{path}.txt")
                moved["series points"] += len(points)
            elif run.kinds[path] == "image":
                captions = {}
                for i, (step, value, _) in enumerate(points):
                    name = f"{i:03d}_{re.sub(r'[^A-Za-z0-9_.-]', '_', value.get('name') or 'image')}.png"
                    self.client.log_image(rid, image_of(value), f"{path}/{name}")
                    captions[name] = {"step": step, "name": value.get("name"), "description": value.get("description")}
                    moved["series points"] += 1
                self.client.log_dict(rid, captions, f"{path}/captions.json")
        versions = set(run.model_files)
        with tempfile.TemporaryDirectory() as tmp:
            for path in run.files:
                content = file_bytes(run, path) if path not in versions else None
                if content is not None:
                    self.log_file(rid, tmp, f"neptune/{path}.{run.files[path]['ext']}".rstrip("."), content)
                    moved["files"] += 1
            for path in run.file_sets:
                for source in file_set_paths(run, path):
                    self.client.log_artifact(rid, source, f"neptune/{path}")
                    moved["files"] += 1
            for path in run.tracked:
                present, digest = tracked_files(run, path)
                ns = path.rpartition("/")[0]
                folder = os.path.dirname(present[0]) if present else path
                dataset = Dataset(
                    name=run.fields.get(f"{ns}/name") or path,
                    digest=digest[:16],
                    source_type="local",
                    source=json.dumps({"uri": folder, "files": present}),
                )
                self.client.log_inputs(rid, [DatasetInput(dataset, [InputTag("mlflow.data.context", "training")])])
                moved["files"] += len(present)
            for path in run.model_files:
                content = file_bytes(run, path)
                if content is not None:
                    self.log_version(rid, tmp, run, path, content)
                    moved["files"] += 1
        self.client.set_tag(rid, "results", "recorded")
        self.client.set_terminated(rid, STATUS[run.status][1], end_time=int((run.ended or 0) * 1000))
        self.client.set_tag(rid, "neptune.export_key", run.key)  # last: the run is whole
        return moved, rid

    @staticmethod
    def key(run, name):
        """`name` as MLflow takes it for a metric, param or tag: characters and path parts it
        rejects become "_", said once."""
        from mlflow.utils.validation import path_not_unique, validate_param_and_metric_name

        if validate_param_and_metric_name(name) and not path_not_unique(name):
            return name
        fixed = "/".join(
            part if part not in ("", ".", "..") else "_" for part in re.sub(r"[^/\w.\- ]", "_", name).split("/")
        )
        said = f"{name}: MLflow rejects the name; moved as {fixed}"
        if said not in run.problems:
            run.problems.append(said)
        return fixed

    def log_file(self, rid, tmp, name, content):
        local = os.path.join(tmp, name)
        os.makedirs(os.path.dirname(local), exist_ok=True)
        with open(local, "wb") as f:
            f.write(content)
        self.client.log_artifact(rid, local, os.path.dirname(name))

    def log_version(self, rid, tmp, run, path, content):
        name = f"{path.rpartition('/')[2]}.{run.files[path]['ext']}"
        self.log_file(rid, tmp, f"checkpoints/{name}", content)
        model = f"{self.model_prefix}-{run.key}"
        if not self.client.search_registered_models(f"name = '{model}'"):
            self.client.create_registered_model(model, tags={"run_id": run.key})
        meta = {k: str(v) for k, v in run.version_meta.get(path, {}).items()}
        version = self.client.create_model_version(
            model, f"{self.client.get_run(rid).info.artifact_uri}/checkpoints/{name}", run_id=rid, tags=meta
        ).version
        # MLflow reserves "latest" for the newest version (models:/NAME/latest): no alias to set.
        for ns, named in run.pointers.items():  # the namespaces that name this version at the end
            if named == path and ns.rpartition("/")[2] != "latest":
                self.client.set_registered_model_alias(model, ns.rpartition("/")[2], version)

    def done(self, written):
        if self.uri.startswith("sqlite:///"):
            return [
                f"MLflow store {self.uri[len('sqlite:///') :]} (artifacts in {os.path.join(self.out, 'mlartifacts')})",
                f"  look at it: mlflow ui --backend-store-uri {self.uri} --default-artifact-root "
                f"{os.path.join(self.out, 'mlartifacts')}",
            ]
        return [f"MLflow runs at {self.uri}: {', '.join(written)}"]


def summarize(runs, moved, already):
    total = Counter()
    for m in moved:
        total.update(m)
    applied = sum(sum(r.applied.values()) for r in runs)
    skipped = Counter()
    for r in runs:
        skipped.update(r.skipped)
    lines = [
        f"read {applied + sum(skipped.values())} operations in {sum(len(r.segments) for r in runs)} queue(s) "
        f"({len(runs)} run(s)): {applied} applied, {sum(skipped.values())} skipped",
        f"moved {total['fields']} fields, {total['series points']} series points, {total['files']} files"
        + (f"; already moved: {', '.join(already)}" if already else ""),
    ]
    if skipped:
        lines.append("skipped: " + "; ".join(f"{kind} x {n} ({why})" for (kind, why), n in sorted(skipped.items())))
    for r in runs:
        lines += [f"problem: {p}" for p in r.problems]
        if r.deleted:
            lines.append(f"deleted in Neptune before the export (not moved): {', '.join(r.deleted)}")
    unread = sum(len(r.unread) for r in runs)
    if unread:
        lines.append(f"not read: {unread} part(s) of the input, each named below; the rest was exported")
    return lines


def build_parser():
    p = argparse.ArgumentParser(
        description="Move Neptune's local run data (offline and async queues) into W&B or "
        "MLflow. The input is only read."
    )
    p.add_argument(
        "path",
        help="a folder holding a Neptune data directory (.neptune), the data directory, or one run's queue folder",
    )
    p.add_argument("--to", choices=["wandb", "mlflow"], required=True, help="the target tracker")
    p.add_argument(
        "--out-dir",
        default="exported",
        help="where the W&B offline runs or the local MLflow store go (default: exported/)",
    )
    p.add_argument("--tracking-uri", help="MLflow: a tracking server (default: a SQLite store in --out-dir)")
    p.add_argument("--project", help="W&B project, or MLflow experiment (default: neptune-export)")
    p.add_argument(
        "--strict", action="store_true", help="exit 1 if any operation was skipped or any file was missing or changed"
    )
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    logging.raiseExceptions = False  # a client's debug log on a full disk: said in one line, not a traceback each
    lock = None
    try:
        groups = jobs(find_queues(args.path))
        lock = durable.FolderLock(args.out_dir, "the export folder")  # two exports never replace each other's runs
        target = (WandbTarget if args.to == "wandb" else MlflowTarget)(args)
    except (ExportError, durable.Busy) as e:
        if lock:
            lock.release()
        print(f"error: {e}", file=sys.stderr)
        return 2
    runs, moved, written, already, failed = [], [], [], [], []
    for key, segments in groups.items():
        run = replay(key, segments)
        runs.append(run)
        try:
            previous = target.existing(run)
            if previous:
                already.append(f"{key} (as {previous})")
                continue
            counts, where = target.write(run)
        except target.write_errors as e:  # a full disk, a store that refuses: the other runs go on
            failed.append(
                f"run {key} was not exported: {first_line(e)} (an export cut short is replaced when this runs again)"
            )
            continue
        moved.append(counts)
        written.append(where)
    lock.release()
    for line in summarize(runs, moved, already) + target.done(written):
        print(line)
    errors = [line for r in runs for line in r.unread] + failed
    for line in errors:  # last, one line each: what was not read or not written
        print(f"error: {line}", file=sys.stderr)
    if errors:
        return 1
    if args.strict and any(r.skipped or r.problems for r in runs):
        print("error: --strict: something was skipped or a file was missing or changed (above)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
