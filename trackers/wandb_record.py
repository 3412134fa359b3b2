"""The one reader of W&B's record: offline `.wandb` logs, one a segment of a resumed run, read with
W&B's own reader (`wandb leet inspect --json`), and the files the run folder and the artifact
staging hold. Its contract is trackers/reading.py's.

The log's own format (a header, 32 KiB blocks of CRC-checked chunks of protobuf records) is read and
written here too, by `read_log`/`write_log`, only to re-point a moved record's paths: wandb 0.31's
client has no Python reader of it. That is W&B's private format as wandb 0.31.0 writes it.
"""

import contextlib
import glob
import json
import os
import shutil
import struct
import subprocess
import sys
import zlib

import durable
from trackers.base import Recorded, RecordError, first_line
from trackers.reading import (
    EPOCH_KEYS,
    SEARCH_PARAMS,
    SUMMARY_KEYS,
    confusion_from,
    copy_tree,
    dataset_sizes,
    first_bytes,
    new_trial,
    plain_text,
)

RECORD_PATHS = ("wandb", ".wandb-artifacts", ".wandb-cache", ".wandb-data", ".wandb-config")


def logs(out_dir, run_id="*"):
    """The .wandb logs under --out-dir (of one run id, or all), one per segment, oldest first. A
    segment that starts in the same second as an earlier one (a restart straight after a failed
    start) has -1, -2 added to its folder's name (wandb.init's set_sync_dir_suffix); the log's own
    name is the run id's alone."""
    found = glob.glob(os.path.join(out_dir, "wandb", f"*-{run_id}*", f"run-{run_id}.wandb"))
    return sorted(log for log in found if not os.path.islink(os.path.dirname(log)))  # not wandb/latest-run


def leet(*args):
    """What `wandb leet inspect --json ARGS` prints; ValueError, with W&B's reason, where it fails."""
    wandb_cli = os.path.join(os.path.dirname(sys.executable), "wandb")
    try:
        read = subprocess.run(
            [wandb_cli, "leet", "inspect", "--json", *args], capture_output=True, text=True, timeout=300
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise ValueError(first_line(e)) from None
    if read.returncode != 0:
        raise ValueError(first_line(read.stderr or f"exit status {read.returncode}"))
    return read.stdout


def leet_records(log):
    """Every record of a .wandb log, through W&B's own reader; a read that fails or is cut short is
    an error, never fewer records."""
    try:
        return [json.loads(line) for line in leet(log).splitlines() if line.strip()]
    except ValueError as e:
        raise RecordError(
            f"cannot read W&B's record of the earlier segment {log} with `wandb leet inspect` "
            f"({first_line(e)}); nothing more was logged"
        ) from None


def records(out_dir):
    """Every record of every segment's log under --out-dir, oldest first."""
    return [r for log in logs(out_dir) for r in leet_records(log)]


def recorded_in_log(log):
    """What one segment's .wandb log holds (`Recorded`)."""
    held = Recorded()
    for r in leet_records(log):
        item = r["history"]["item"] if r["type"] == "history" else {}
        if "train/batch_loss" in item:
            held.steps.add(int(item["global_step"]))
        if "val/acc" in item:
            held.epochs.add(int(item["epoch"]))
        if r["type"] == "artifact" and r["artifact"]["type"] == "model":
            aliases = r["artifact"]["aliases"]
            held.final |= "final" in aliases
            held.versions.update(
                int(a[len("epoch-") :]) for a in aliases if a.startswith("epoch-") and "final" not in aliases
            )
        if r["type"] == "summary" and "test/acc" in r["summary"].get("update", {}):
            held.results = True
    return held


class SegmentsRead:
    """What each earlier segment's log was read to hold, kept in the run folder: a resume reads only
    the logs it has not read before. Each `wandb leet inspect` takes half a second of CPU, so a run
    resumed many times (a requeued cluster job) would otherwise read every earlier log again at each
    start. A log is known by its folder, size and modification time: one that changed is read again."""

    NAME = "wandb-segments.json"

    def __init__(self, run_dir):
        self.path = os.path.join(run_dir, self.NAME)
        try:
            with open(self.path) as f:
                known = json.load(f)
        except (OSError, ValueError):  # none yet, or unreadable: every log is read
            known = {}
        self.known = known if isinstance(known, dict) else {}
        self.changed = False

    def holds(self, log):
        key, stat = os.path.basename(os.path.dirname(log)), os.stat(log)
        seen, mark = self.known.get(key), [stat.st_size, stat.st_mtime_ns]
        if isinstance(seen, dict) and seen.get("mark") == mark:
            with contextlib.suppress(KeyError, TypeError):  # an entry of another shape: the log is read
                return Recorded(
                    set(seen["steps"]), set(seen["epochs"]), set(seen["versions"]), seen["final"], seen["results"]
                )
        held = recorded_in_log(log)
        after = os.stat(log)
        if [after.st_size, after.st_mtime_ns] == mark:  # not being written while it was read
            self.known[key] = dict(
                mark=mark,
                steps=sorted(held.steps),
                epochs=sorted(held.epochs),
                versions=sorted(held.versions),
                final=held.final,
                results=held.results,
            )
            self.changed = True
        return held

    def save(self):
        def write(tmp):
            with open(tmp, "w") as f:
                json.dump(self.known, f)

        if self.changed:
            with contextlib.suppress(OSError):  # a full disk: the next resume reads the logs again
                durable.write_atomically(self.path, write)


def recorded(run_dir, earlier):
    """What the earlier segments' logs of a run hold, each log read once across resumes."""
    held, read = Recorded(), SegmentsRead(run_dir)
    for log in earlier:
        held.add(read.holds(log))
    read.save()
    return held


def staged(out_dir, local_path):
    """Where a W&B table's file is now: W&B stages them in its data folder until `wandb sync`, and the
    manifest names the path it had then. Our default data folder is .wandb-data under out_dir (the
    --out-dir of its run), found wherever the run folder has moved; a user's WANDB_DATA_DIR stays put."""
    marker = f"{os.sep}.wandb-data{os.sep}"
    if marker in local_path:
        moved = os.path.join(out_dir, ".wandb-data", local_path.split(marker, 1)[1])
        if os.path.exists(moved):
            return moved
    return local_path


def _ended(code):
    if code is None:
        return None
    return "completed" if code == 0 else "interrupted" if code in (130, 143) else "failed"


def read_run(out_dir):
    per_log = [leet_records(log) for log in logs(out_dir)]
    records_ = [r for rs in per_log for r in rs]
    items = [r["history"]["item"] for r in records_ if r["type"] == "history"]
    artifacts = [r["artifact"] for r in records_ if r["type"] == "artifact"]
    runs = [r["run"] for r in records_ if r["type"] == "run"]
    summary, test_acc = {}, []
    for r in records_:
        if r["type"] == "summary":
            update = r["summary"].get("update", {})
            summary.update(update)
            if "test/acc" in update:
                test_acc.append(update["test/acc"])

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
    config = runs[0]["config"]["update"] if runs else {}
    visualize = {
        k.split("_wandb.visualize.", 1)[1]: v["panel_config"].get("panelDefId")
        for r in records_
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
                "exit_code": codes[-1] if codes else None,
            }
        )
    ids = {r["run_id"] for r in runs}
    last_log = logs(out_dir)[-1] if per_log else None
    models = [
        {
            "epoch": json.loads(a.get("metadata") or "{}").get("epoch"),
            "final": "final" in a["aliases"],
            "metadata": json.loads(a.get("metadata") or "{}"),
            "aliases": a["aliases"],
        }
        for a in artifacts
        if a["type"] == "model"
    ]
    return {
        "tool": "W&B",
        "reader": "wandb leet inspect --json",
        "runs": len(ids),
        **dataset_sizes(meta),
        "config": {k: v for k, v in config.items() if not k.startswith("_")},
        "epochs": [{k: it[k] for k in EPOCH_KEYS} for it in items if "epoch" in it and "val/acc" in it],
        "steps": [(it["global_step"], it["train/batch_loss"]) for it in items if "train/batch_loss" in it],
        "models": models,
        "test_acc": test_acc,
        "summary": {k: summary[k] for k in SUMMARY_KEYS if k in summary},
        "segments": segments,
        "ended": _ended(segments[-1]["exit_code"]) if segments else None,
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
        "models_kind": "versions of a model artifact",
        "classes": classes,
        "confusion": confusion_from(classes, confusion["data"]) if confusion else confusion_from([], []),
        "confusion_chart": "test/confusion_matrix" in visualize,
        "confusion_kind": f"a chart of the tool's own ({visualize['test/confusion_matrix']}) over a table"
        if "test/confusion_matrix" in visualize
        else "a table",
        "per_class_acc": {c: a for c, a in per_class["data"]} if per_class else {},
        "mistakes": mistakes,
        "histograms": histograms,
        "system_samples": sum(r["type"] == "stats" for r in records_),
        "console_lines": sum(r["type"] == "output_raw" and r["output_raw"]["line"].strip() != "" for r in records_),
        "plain_text": plain_text(logs(out_dir)),
        "record_format": f"a binary log of protobuf records ({first_bytes(last_log, 4)!r}..., one .wandb file a segment)"
        if last_log
        else "no .wandb log",
        "status": segments[-1]["end"] if segments else "no segment",
    }


def read_search(out_dir):
    """The trials (a run each, of one group) and the study runs (job_type study), from the .wandb logs."""
    trials, studies = {}, {}
    for log in logs(out_dir):  # oldest first: a later segment of a run updates its summary
        logged = leet_records(log)
        run = next(r["run"] for r in logged if r["type"] == "run")
        summary = {}
        for r in logged:
            if r["type"] == "summary":
                summary.update(r["summary"].get("update", {}))
        if run["job_type"] == "study":  # a study recorded again (a stop while it was written) is one run
            study = studies.setdefault(run["run_id"], {"group": run["run_group"], "closed": False})
            if "best/trial" in summary:
                study.update(best=summary["best/trial"], best_val_acc=summary["best/val_acc"])
            study["closed"] |= any(r["type"] == "exit" and not r["exit"].get("exit_code") for r in logged)
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


def record_files(out_dir, run_id):
    """The files that hold one run's record (its segments' logs): a run left alone keeps them byte for byte."""
    return logs(out_dir, run_id)


def referenced(out_dir):
    """The records' text and every file they point to: the run files, artifact files and references."""
    rs = records(out_dir)
    files = [
        os.path.join(os.path.dirname(log), "files", f["path"])
        for log in logs(out_dir)
        for r in leet_records(log)
        if r["type"] == "files"
        for f in r["files"]["files"]
    ]
    manifests = [e for r in rs if r["type"] == "artifact" for e in r["artifact"]["manifest"]["contents"]]
    files += [e["local_path"] for e in manifests if e.get("local_path")]
    files += [e["ref"][len("file://") :] for e in manifests if e.get("ref", "").startswith("file://")]
    return json.dumps(rs), files


# The .wandb log, as wandb 0.31.0 writes it: a 7-byte header, then 32 KiB blocks of chunks (CRC-32 of
# kind and data, length, kind: full, first, middle or last piece of a record), each record a
# serialized protobuf Record.
_HEADER, _BLOCK, _FULL, _FIRST, _MIDDLE, _LAST = b":W&B\xe1\xbe\x00", 32768, 1, 2, 3, 4


def read_log(path):
    """The serialized records of a .wandb log; ValueError where any part of it cannot be read (a
    damaged block, a tail cut short), so a rewrite never drops what this reader could not read."""
    with open(path, "rb") as f:
        raw = f.read()
    if not raw.startswith(_HEADER):
        raise ValueError(f"{path} is not a W&B run log")
    found, record, pos = [], b"", len(_HEADER)
    while pos + 7 <= len(raw):
        if _BLOCK - pos % _BLOCK < 7:  # a block's end too short for a chunk: zeros
            pos += _BLOCK - pos % _BLOCK
            continue
        crc, size, kind = struct.unpack("<IHB", raw[pos : pos + 7])
        chunk = raw[pos + 7 : pos + 7 + size]
        if len(chunk) < size or zlib.crc32(bytes([kind]) + chunk) != crc:
            raise ValueError(f"{path} has a damaged or cut-short record at byte {pos}")
        record, pos = record + chunk, pos + 7 + size
        if kind in (_FULL, _LAST):
            found.append(record)
            record = b""
    if record or raw[pos:].strip(b"\0"):
        raise ValueError(f"{path} ends in a cut-short record at byte {pos}")
    return found


def write_log(path, serialized):
    out = bytearray(_HEADER)
    for record in serialized:
        first = True
        while True:
            room = _BLOCK - len(out) % _BLOCK
            if room < 7:
                out += bytes(room)
                continue
            piece, record = record[: room - 7], record[room - 7 :]
            kind = (_FULL if not record else _FIRST) if first else (_LAST if not record else _MIDDLE)
            out += struct.pack("<IHB", zlib.crc32(bytes([kind]) + piece), len(piece), kind) + piece
            first = False
            if not record:
                break

    def write(tmp):
        with open(tmp, "wb") as f:
            f.write(out)

    durable.write_atomically(path, write)


def _repoint_message(message, old, new):
    """Every string in a protobuf message (paths, JSON values) with `old` replaced by `new`."""
    for field, value in message.ListFields():
        if field.message_type and field.message_type.GetOptions().map_entry:
            for key in value:
                if isinstance(value[key], str):
                    value[key] = durable.repoint(value[key], old, new)
                else:
                    _repoint_message(value[key], old, new)
        elif field.type == field.TYPE_MESSAGE:
            for item in value if field.is_repeated else [value]:
                _repoint_message(item, old, new)
        elif field.type == field.TYPE_STRING:
            if field.is_repeated:
                value[:] = [durable.repoint(v, old, new) for v in value]
            else:
                setattr(message, field.name, durable.repoint(value, old, new))


def repoint_logs(old, new):
    """W&B keeps absolute paths in its run logs (staged files, model files, settings): every .wandb
    log under --out-dir `new`, and the logs' symlinks, re-pointed from the old folder to the new. A
    log not read whole is left as it is and said, as RecordError."""
    from wandb.proto.wandb_internal_pb2 import Record

    moved, refused = 0, []
    for log in sorted({os.path.realpath(p) for p in glob.glob(os.path.join(new, "wandb", "*", "*.wandb"))}):
        serialized = []
        try:
            logged = read_log(log)
        except ValueError as e:
            refused.append(str(e))
            continue
        for data in logged:
            record = Record()
            record.ParseFromString(data)
            _repoint_message(record, old, new)
            serialized.append(record.SerializeToString())
        write_log(log, serialized)
        moved += 1
    for folder, dirs, files in os.walk(new):
        for name in dirs + files:
            link = os.path.join(folder, name)
            if os.path.islink(link) and os.readlink(link).startswith(old + os.sep):
                target = new + os.readlink(link)[len(old) :]
                os.remove(link)
                os.symlink(target, link)
    done = f"re-pointed {moved} W&B run log(s) from {old} to {new}"
    if refused:
        raise RecordError(f"{done}; left as they are, not re-pointed: {'; '.join(refused)}")
    return done


FOOTPRINT = "its .wandb log, run files and artifact manifests; model files by reference"


def copy_record(src, dst, search=False):
    """Each segment's run folder (without the copy of the code that ran: the record lists it, the
    evidence need not keep it) and, for a run, the test tables' files staged until `wandb sync`."""
    for log in logs(src):
        folder = os.path.dirname(log)
        target = os.path.join(dst, "wandb", os.path.basename(folder))
        copy_tree(folder, target)
        shutil.rmtree(os.path.join(target, "files", "source"), ignore_errors=True)
        if search:
            continue
        for r in leet_records(log):
            if r["type"] == "artifact" and r["artifact"]["type"] == "run_table":
                for entry in r["artifact"]["manifest"]["contents"]:
                    copied = staged(dst, entry["local_path"])
                    os.makedirs(os.path.dirname(copied), exist_ok=True)
                    shutil.copy(staged(src, entry["local_path"]), copied)
    return {}


def values_logged(out_dir, run_id, prefix):
    """How many values of the series named `prefix`... the run's record holds (a benchmark's load)."""
    return sum(
        1
        for log in logs(out_dir, run_id)
        for r in leet_records(log)
        if r["type"] == "history"
        for k in r["history"]["item"]
        if k.startswith(prefix)
    )
