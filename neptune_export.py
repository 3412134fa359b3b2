"""Move Neptune's local run data (offline and unsynced async queues) into W&B or MLflow.

    python neptune_export.py runs/neptune --to wandb     # one W&B offline run per Neptune run; then `wandb sync`
    python neptune_export.py runs/neptune --to mlflow    # a local MLflow store (or --tracking-uri a server)

neptune.ai's hosted app closed on 2026-03-05; Neptune's `neptune-exporter` reads a live Neptune
server, so runs still queued on disk had nowhere to go. This reads the queue itself: the JSON-lines
operation log the client writes under its data directory (`.neptune/offline/`, `.neptune/async/`).
The input is only read, never changed. Segments of one interrupted-and-resumed job (the scripts'
`run_id` field) become one run. Every operation is moved or counted as skipped in the closing summary.

The reading and replaying is Neptune's record reader's (trackers/neptune_record.py); each target is
its tool's (trackers/<key>_target.py, for every tool of the registry that has one). Neither this
nor `--help` imports torch or the training engine.
"""

import argparse
import logging
import sys
from collections import Counter

import durable
import trackers
from trackers import base, neptune_record


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
    p.add_argument(
        "--to", choices=[t.key for t in trackers.TOOLS if t.exports], required=True, help="the target tracker"
    )
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
        groups = neptune_record.group_segments(neptune_record.find_queues(args.path))
        lock = durable.FolderLock(args.out_dir, "the export folder")  # two exports never replace each other's runs
        target = trackers.get(args.to).target(args)
    except (base.UsageError, durable.Busy) as e:
        if lock:
            lock.release()
        print(f"error: {e}", file=sys.stderr)
        return 2
    runs, moved, written, already, failed = [], [], [], [], []
    for key, segments in groups.items():
        run = neptune_record.replay(key, segments)
        runs.append(run)
        try:
            previous = target.existing(run)
            if previous:
                already.append(f"{key} (as {previous})")
                continue
            counts, where = target.write(run)
        except target.write_errors as e:  # a full disk, a store that refuses: the other runs go on
            failed.append(
                f"run {key} was not exported: {base.first_line(e)} (an export cut short is replaced when this runs again)"
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
