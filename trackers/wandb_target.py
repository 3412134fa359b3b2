"""neptune_export.py --to wandb: a Neptune run, replayed from its operation log, written as a W&B
offline run (then `wandb sync` uploads it)."""

import glob
import json
import os
import re
import shutil
from collections import Counter

from trackers.wandb_tracker import local_folders


class Target:
    """One W&B offline run per Neptune run (a replayed `trackers.neptune_record.Run`) under OUT/wandb/; `wandb sync` uploads them."""

    name = "W&B"
    write_errors = (OSError,)

    def __init__(self, args):
        self.out = os.path.abspath(args.out_dir)
        self.project = args.project
        os.environ.update(local_folders(self.out))  # its --out-dir holds all: nothing in the home folder
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
        config = run.config()
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
        for axis, paths in run.axes().items():
            wb.define_metric(axis, hidden=axis not in paths)
            by_step = {}
            for path in paths:
                if path != axis:
                    wb.define_metric(run.target_name(path), step_metric=axis)
                for step, value, ts in run.series[path]:
                    row = by_step.setdefault(step, {"_timestamp": ts, axis: step})
                    row[run.target_name(path)] = (
                        wandb.Image(
                            run.image(value),
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
                self.save(wb, files_dir, f"{path}.txt", run.text(path).encode())
                moved["series points"] += len(points)
        versions = set(run.model_files)
        for path in run.files:
            if path not in versions:
                content = run.file_bytes(path)
                if content is not None:
                    self.save(wb, files_dir, f"{path}.{run.files[path]['ext']}".rstrip("."), content)
                    moved["files"] += 1
        for path in run.file_sets:
            for source in run.file_set_paths(path):
                with open(source, "rb") as f:
                    self.save(wb, files_dir, os.path.join(path, os.path.basename(source)), f.read())
                moved["files"] += 1
        for path in run.tracked:
            present, digest = run.tracked_files(path)
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
            if run.file_present(path):
                self.log_version(wb, run, path)
                moved["files"] += 1
        summary = run.summary()
        wb.summary.update(summary)
        moved["fields"] += len(summary)
        wb.finish(exit_code=run.exit_code)
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
