"""neptune_export.py --to mlflow: a Neptune run, replayed from its operation log, written as an MLflow
run in a local store under --out-dir, or on a server (--tracking-uri)."""

import json
import logging
import os
import re
import tempfile
from collections import Counter
from pathlib import Path

from trackers import base
from trackers.mlflow_record import STATUS, versions_of
from trackers.mlflow_tracker import (
    champion,
    create_store,
    experiment_id,
    local_folders,
    register_version,
    write_errors,
)


class Target:
    """One MLflow run per Neptune run (a replayed `trackers.neptune_record.Run`): a local store under OUT (SQLite and artifacts), or a server."""

    name = "MLflow"

    def __init__(self, args):
        self.out = os.path.abspath(args.out_dir)
        os.makedirs(self.out, exist_ok=True)
        local_folders(self.out)  # as the MLflow script
        import mlflow

        logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)  # errors are said in one line instead
        self.uri = args.tracking_uri or f"sqlite:///{os.path.join(self.out, 'mlflow.db')}"
        self.write_errors = write_errors()
        name = args.project or "neptune-export"
        try:
            if not args.tracking_uri:
                create_store(os.path.join(self.out, "mlflow.db"))
            self.client = mlflow.MlflowClient(self.uri, self.uri)
            self.experiment = experiment_id(
                self.client, name, None if args.tracking_uri else Path(self.out, "mlartifacts").as_uri()
            )
        except self.write_errors as e:
            raise base.UsageError(f"MLflow at {self.uri}: {base.first_line(e)}") from None
        self.model_prefix = name

    def existing(self, run):
        """The MLflow run this Neptune run was moved into; one cut short (no export key, set last) is removed."""
        found = self.client.search_runs([self.experiment], f"tags.`neptune.export_key` = '{run.key}'", max_results=1)
        if found:
            return found[0].info.run_id
        for partial in self.client.search_runs([self.experiment], f"tags.`neptune.export_of` = '{run.key}'"):
            print(f"replacing an incomplete export of {run.key}: MLflow run {partial.info.run_id}")
            for version in versions_of(self.client, partial.info.run_id):  # its model versions too
                self.client.delete_model_version(version.name, version.version)
            self.client.delete_run(partial.info.run_id)
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
        for key, value in run.config().items():
            text = value if isinstance(value, str) else json.dumps(value)
            if len(text) <= 6000:  # MLflow's limit for a param value; a longer one becomes a text artifact
                params[self.key(run, key)] = text
            else:
                texts[f"neptune/{key}.txt"] = text
        for path, value in run.summary().items():
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
                name = self.key(run, run.target_name(path))
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
                self.client.log_text(rid, run.text(path), f"neptune/{path}.txt")
                moved["series points"] += len(points)
            elif run.kinds[path] == "image":
                captions = {}
                for i, (step, value, _) in enumerate(points):
                    name = f"{i:03d}_{re.sub(r'[^A-Za-z0-9_.-]', '_', value.get('name') or 'image')}.png"
                    self.client.log_image(rid, run.image(value), f"{path}/{name}")
                    captions[name] = {"step": step, "name": value.get("name"), "description": value.get("description")}
                    moved["series points"] += 1
                self.client.log_dict(rid, captions, f"{path}/captions.json")
        versions = set(run.model_files)
        with tempfile.TemporaryDirectory() as tmp:
            for path in run.files:
                content = run.file_bytes(path) if path not in versions else None
                if content is not None:
                    self.log_file(rid, tmp, f"neptune/{path}.{run.files[path]['ext']}".rstrip("."), content)
                    moved["files"] += 1
            for path in run.file_sets:
                for source in run.file_set_paths(path):
                    self.client.log_artifact(rid, source, f"neptune/{path}")
                    moved["files"] += 1
            for path in run.tracked:
                present, digest = run.tracked_files(path)
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
                content = run.file_bytes(path)
                if content is not None:
                    self.log_version(rid, tmp, run, path, content)
                    moved["files"] += 1
        self.client.set_tag(rid, "results", "recorded")
        self.client.set_terminated(rid, STATUS[run.status], end_time=int((run.ended or 0) * 1000))
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
        # As the MLflow script registers: one model (the experiment's name), each version tagged with its
        # run id, the alias champion on the best final version of all the runs moved into it.
        meta = {k: str(v) for k, v in run.version_meta.get(path, {}).items()}
        version = register_version(
            self.client,
            self.model_prefix,
            f"{self.client.get_run(rid).info.artifact_uri}/checkpoints/{name}",
            rid,
            {"run_id": run.key, **meta},
            [],
        )
        if "test_acc" in meta:  # the final version
            champion(self.client, self.model_prefix, version)

    def done(self, written):
        if self.uri.startswith("sqlite:///"):
            return [
                f"MLflow store {self.uri[len('sqlite:///') :]} (artifacts in {os.path.join(self.out, 'mlartifacts')})",
                f"  look at it: mlflow ui --backend-store-uri {self.uri} --default-artifact-root "
                f"{os.path.join(self.out, 'mlartifacts')}",
            ]
        return [f"MLflow runs at {self.uri}: {', '.join(written)}"]
