"""Train AlexNet on CIFAR-10 and track it with Weights & Biases.

    python wandb_setup_script.py --mode offline      # no account needed; `wandb sync` later
    python wandb_setup_script.py                     # online: WANDB_API_KEY, `wandb login`, or a prompt

The mirror image of neptune_integration.py: same flags, metrics, artifacts and order.
"""

import contextlib
import getpass
import glob
import json
import math
import os
import shutil
import struct
import subprocess
import sys
import warnings
import zlib

import numpy as np
import torch
import wandb

import alexnet
import durable
import tracking

KEY_URL = "https://wandb.ai/authorize"
SOURCE = os.path.dirname(os.path.abspath(__file__))


# The .wandb log: a 7-byte header, then 32 KiB blocks of chunks (CRC-32 of kind and data, length,
# kind: full, first, middle or last piece of a record), each record a serialized protobuf Record.
LOG_HEADER, LOG_BLOCK, FULL, FIRST, MIDDLE, LAST = b":W&B\xe1\xbe\x00", 32768, 1, 2, 3, 4


def read_log(path):
    """The serialized records of a .wandb log; ValueError where any part of it cannot be read (a
    damaged block, a tail cut short), so a rewrite never drops what this reader could not read."""
    with open(path, "rb") as f:
        raw = f.read()
    if not raw.startswith(LOG_HEADER):
        raise ValueError(f"{path} is not a W&B run log")
    records, record, pos = [], b"", len(LOG_HEADER)
    while pos + 7 <= len(raw):
        if LOG_BLOCK - pos % LOG_BLOCK < 7:  # a block's end too short for a chunk: zeros
            pos += LOG_BLOCK - pos % LOG_BLOCK
            continue
        crc, size, kind = struct.unpack("<IHB", raw[pos : pos + 7])
        chunk = raw[pos + 7 : pos + 7 + size]
        if len(chunk) < size or zlib.crc32(bytes([kind]) + chunk) != crc:
            raise ValueError(f"{path} has a damaged or cut-short record at byte {pos}")
        record, pos = record + chunk, pos + 7 + size
        if kind in (FULL, LAST):
            records.append(record)
            record = b""
    if record or raw[pos:].strip(b"\0"):
        raise ValueError(f"{path} ends in a cut-short record at byte {pos}")
    return records


def write_log(path, records):
    out = bytearray(LOG_HEADER)
    for record in records:
        first = True
        while True:
            room = LOG_BLOCK - len(out) % LOG_BLOCK
            if room < 7:
                out += bytes(room)
                continue
            piece, record = record[: room - 7], record[room - 7 :]
            kind = (FULL if not record else FIRST) if first else (LAST if not record else MIDDLE)
            out += struct.pack("<IHB", zlib.crc32(bytes([kind]) + piece), len(piece), kind) + piece
            first = False
            if not record:
                break

    def write(tmp):
        with open(tmp, "wb") as f:
            f.write(out)

    durable.write_atomically(path, write)


def repoint(message, old, new):
    """Every string in a protobuf message (paths, JSON values) with `old` replaced by `new`."""
    for field, value in message.ListFields():
        if field.message_type and field.message_type.GetOptions().map_entry:
            for key in value:
                if isinstance(value[key], str):
                    value[key] = durable.repoint(value[key], old, new)
                else:
                    repoint(value[key], old, new)
        elif field.type == field.TYPE_MESSAGE:
            for item in value if field.is_repeated else [value]:
                repoint(item, old, new)
        elif field.type == field.TYPE_STRING:
            if field.is_repeated:
                value[:] = [durable.repoint(v, old, new) for v in value]
            else:
                setattr(message, field.name, durable.repoint(value, old, new))


def leet_records(log):
    """Every record of a .wandb log, through W&B's own reader (`wandb leet inspect --json`); a read
    that fails or is cut short is an error, never fewer records."""
    wandb_cli = os.path.join(os.path.dirname(sys.executable), "wandb")
    try:
        read = subprocess.run(
            [wandb_cli, "leet", "inspect", "--json", log], capture_output=True, text=True, timeout=300
        )
        if read.returncode != 0:
            raise ValueError(tracking.first_line(read.stderr or f"exit status {read.returncode}"))
        return [json.loads(line) for line in read.stdout.splitlines() if line.strip()]
    except (OSError, ValueError, subprocess.TimeoutExpired) as e:
        raise tracking.RecordError(
            f"cannot read W&B's record of the earlier segment {log} with `wandb leet "
            f"inspect` ({tracking.first_line(e)}); nothing more was logged"
        ) from None


def held_by(log):
    """What one segment's .wandb log holds (`alexnet.Recorded`), read by `wandb leet inspect`."""
    held = alexnet.Recorded()
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
                return alexnet.Recorded(
                    set(seen["steps"]), set(seen["epochs"]), set(seen["versions"]), seen["final"], seen["results"]
                )
        held = held_by(log)
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


def weight_histograms(model, bins=64):
    """What wandb.watch(model, log="all") records, under its names: a histogram of every parameter
    and of its gradient from the epoch's last step, binned on the model's device. Once per epoch,
    so the histograms line up with the epochs and the model versions; on an H100 one set took
    about 0.01 s here, one wandb.watch histogram step about 0.5 s (docs/costs.md, "Histograms")."""
    histograms = {}
    for name, p in model.named_parameters():
        for kind, t in (("parameters", p), ("gradients", p.grad)):
            if t is None:
                continue
            t = t.detach().float()
            lo, hi = (v.item() for v in torch.aminmax(t))
            if not (math.isfinite(lo) and math.isfinite(hi)):
                continue  # a diverged run: nothing meaningful to bin
            if hi <= lo:  # a constant tensor (zero-initialized biases): numpy's convention
                lo, hi = lo - 0.5, hi + 0.5
            counts = torch.histc(t, bins=bins, min=lo, max=hi).cpu().numpy()
            histograms[f"{kind}/{name}"] = wandb.Histogram(np_histogram=(counts, np.linspace(lo, hi, bins + 1)))
    return histograms


class WandbTracker(tracking.Tracker):
    name = "W&B"
    project_help = "W&B project (default: WANDB_PROJECT, else 'alexnet-cifar10')"

    def __init__(self, args, run_dir):
        super().__init__(args, run_dir)
        # Everything W&B writes locally (run logs, artifact staging, caches) stays under
        # --out-dir, so `wandb sync` works from that folder alone and the home folder stays clean.
        for var, sub in [
            ("WANDB_DIR", ""),
            ("WANDB_CACHE_DIR", ".wandb-cache"),
            ("WANDB_CONFIG_DIR", ".wandb-config"),
            ("WANDB_DATA_DIR", ".wandb-data"),
            ("WANDB_ARTIFACT_DIR", ".wandb-artifacts"),
        ]:
            os.environ[var] = os.path.join(args.out_dir, sub)
        if args.mode == "online":
            self.authenticate()

    def authenticate(self, timeout_s=45):
        """Find the API key (env, `wandb login`, or a hidden prompt) and verify it with the server."""
        where = "WANDB_API_KEY"
        if not os.environ.get("WANDB_API_KEY") and not wandb.login(prompt=False, verify=False):
            if not sys.stdin.isatty():
                raise tracking.UsageError(
                    f"no W&B API key: set WANDB_API_KEY (from {KEY_URL}) or run with --mode offline"
                )
            key = getpass.getpass(f"W&B API key (from {KEY_URL}, or User settings > API keys; input hidden): ").strip()
            if not key:
                raise tracking.UsageError("no W&B API key given; run with --mode offline to track locally")
            os.environ["WANDB_API_KEY"] = key  # this process and W&B's service only; never saved
            where = "the key you typed"
        server = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")
        try:
            refused = self.verify_key(timeout_s)
        except subprocess.TimeoutExpired:
            raise tracking.UsageError(
                f"no answer from the W&B server {server} within {timeout_s} s "
                "(no network?); run with --mode offline to track locally"
            ) from None
        if refused and any(w in refused.lower() for w in ("busy", "connect", "timed out", "resolve")):
            raise tracking.UsageError(
                f"no answer from the W&B server {server} (no network?): the key "
                "was not checked; run with --mode offline to track locally"
            )
        if refused:
            raise tracking.UsageError(
                f"the W&B server {server} refused {where}: {refused}; run with --mode offline to track locally"
            )

    @staticmethod
    def verify_key(timeout_s):
        """W&B's reason for refusing the key, or None if the server accepts it. Checked by
        wandb.login(verify=True) in a child process: a server that never answers leaves W&B's
        service waiting on it, and this process would wait for that service at exit."""
        check = (
            "import sys, wandb\ntry:\n    wandb.login(verify=True)\n"
            "except Exception as e:\n    print('REFUSED', e, file=sys.stderr)\n    sys.exit(1)"
        )
        result = subprocess.run(
            [sys.executable, "-c", check], capture_output=True, text=True, timeout=timeout_s, stdin=subprocess.DEVNULL
        )
        if result.returncode == 0:
            return None
        reason = result.stderr.rpartition("REFUSED ")[2] or result.stderr.strip() or "no reason given"
        return tracking.first_line(reason)

    def start(self, config, model):
        a = self.args
        earlier = self.segments()
        try:
            self.run = wandb.init(
                project=a.project or os.environ.get("WANDB_PROJECT", "alexnet-cifar10"),
                name=a.name,
                tags=a.tags,
                notes=a.notes,
                config=config,
                mode=a.mode,
                dir=a.out_dir,
                id=self.run_id,
                resume="allow",
                group=config.get("study"),
                job_type="trial" if config.get("study") else "train",
                settings=wandb.Settings(init_timeout=60),
            )
        except wandb.errors.Error as e:
            raise tracking.UsageError(
                f"W&B could not open the run: {tracking.first_line(e)}; run with --mode offline to track locally"
            ) from None
        self.folder = os.path.dirname(self.run.dir)
        self.earlier = [log for log in earlier if not log.startswith(self.folder + os.sep)]
        self.url = self.run.url if a.mode == "online" else None
        self.run.define_metric("global_step", hidden=True)
        self.run.define_metric("train/batch_*", step_metric="global_step")
        self.run.define_metric("epoch")
        self.run.summary["model/params"] = config["model_params"]
        # Copied into the run's files folder, not linked to: the run folder can move to another machine.
        shutil.copy(self.write_architecture(model), self.run.dir)
        self.run.save(os.path.join(self.run.dir, "architecture.txt"), base_path=self.run.dir, policy="now")
        os.makedirs(os.path.join(self.run.dir, "source"), exist_ok=True)
        for path in glob.glob(os.path.join(SOURCE, "*.py")):  # the code that ran, as Neptune's source_files
            shutil.copy(path, os.path.join(self.run.dir, "source"))
        self.run.save(os.path.join(self.run.dir, "source", "*.py"), base_path=self.run.dir, policy="now")
        self.model = model  # its histograms are logged at each epoch's end
        self.epoch_metrics_defined = False

    def segments(self):
        """The .wandb logs of this run id under --out-dir: one per segment of a resumed offline run. A
        segment that starts in the same second as an earlier one (a restart straight after a failed
        start) has -1, -2 added to its folder's name (wandb.init's set_sync_dir_suffix); the log's
        own name is the run id's alone."""
        return sorted(
            glob.glob(os.path.join(self.args.out_dir, "wandb", f"*-{self.run_id}*", f"run-{self.run_id}.wandb"))
        )

    def recorded(self):
        if self.args.mode == "online":  # the server's summary of the resumed run
            s, epochs = self.run.summary, set(range(1, int(self.run.summary.get("epoch", 0)) + 1))
            return alexnet.Recorded(
                set(range(1, int(s.get("global_step", 0)) + 1)), epochs, epochs, "test/acc" in s, "test/acc" in s
            )
        recorded, read = alexnet.Recorded(), SegmentsRead(self.run_dir)
        for log in self.earlier:
            held = read.holds(log)
            recorded.steps.update(held.steps)
            recorded.epochs.update(held.epochs)
            recorded.versions.update(held.versions)
            recorded.final |= held.final
            recorded.results |= held.results
        read.save()
        return recorded

    def log_dataset(self, info, files):
        dataset = wandb.Artifact(info["name"], type="dataset", description=info["source"], metadata=info)
        with dataset.new_file("dataset.json") as f:
            json.dump(info, f, indent=1)
        for path in files:  # checksummed where they lie, not copied: the digest follows the content
            dataset.add_reference(f"file://{path}")
        if self.args.mode == "online":
            self.run.use_artifact(dataset)
        else:  # W&B refuses use_artifact offline: logged as this run's output instead
            self.run.log_artifact(dataset)

    # Explicit steps: a resumed run (or an offline segment synced later) continues the same axis.
    def log_metrics(self, metrics, step):
        self.run.log({**metrics, "global_step": step}, step=step)

    def log_epoch(self, metrics, step, checkpoint=None):
        if checkpoint:
            self.log_model(checkpoint)
        if not self.epoch_metrics_defined:  # per-epoch metrics plot against "epoch"
            for key in metrics.keys() - {"epoch"}:
                self.run.define_metric(key, step_metric="epoch")
            self.epoch_metrics_defined = True
        histograms = weight_histograms(self.model)
        self.run.log({**metrics, **histograms}, step=step, commit=True)
        for key in histograms:  # thousands of bins would bury test/acc in the summary (`wandb leet`);
            del self.run.summary[key]  # define_metric(summary="none") misses names with dots, as these

    def log_model(self, checkpoint):
        meta = {"epoch": checkpoint.epoch, "val_acc": checkpoint.val_acc}
        aliases = ["best", "latest", f"epoch-{checkpoint.epoch}"]
        if checkpoint.final:
            meta["test_acc"] = checkpoint.test_acc
            aliases.append("final")
        model = wandb.Artifact(f"model-{self.run.id}", type="model", metadata=meta)
        model.add_file(checkpoint.path, name="model.pt", policy="immutable")  # the file is never rewritten
        self.run.log_artifact(model, aliases=aliases)
        if checkpoint.final and self.args.mode == "online":
            self.run.link_artifact(model, "wandb-registry-model/alexnet-cifar10")
        elif checkpoint.final:
            print("W&B offline: the model registry needs a server; link the 'best' model after `wandb sync`")

    def log_results(self, evaluation, checkpoint, summary, step):
        # One step after training's last: a resumed run's earlier segment may hold that step's row.
        self.log_evaluation(evaluation, step + 1)
        if checkpoint:
            self.log_model(checkpoint)
        self.run.summary.update(summary)

    def log_evaluation(self, evaluation, step):
        per_class = wandb.Table(
            columns=["class", "accuracy"],
            data=[[c, a] for c, a in zip(evaluation.classes, evaluation.per_class_acc, strict=True)],
        )
        mistakes = wandb.Table(
            columns=["image", "test index", "true", "predicted", "probability"],
            data=[
                [wandb.Image(m["image"]), m["index"], m["true"], m["predicted"], m["probability"]]
                for m in evaluation.mistakes
            ],
        )
        self.run.log(
            {
                "test/confusion_matrix": wandb.plot.confusion_matrix(
                    y_true=evaluation.y_true.tolist(), preds=evaluation.y_pred.tolist(), class_names=evaluation.classes
                ),
                "test/per_class_acc": wandb.plot.bar(per_class, "class", "accuracy", title="Test accuracy per class"),
                "test/per_class_table": per_class,
                "test/most_confident_mistakes": mistakes,
            },
            step=step,
            commit=True,
        )

    def finish(self, status, exit_code):
        if hasattr(self, "run"):
            self.run.finish(exit_code=exit_code)

    def log_trial(self, outcome):
        self.run.summary.update(
            {f"trial/{key}": value for key, value in outcome.items() if key not in ("params", "intermediate_values")}
        )

    def log_study(self, study):
        """The study as one run of the trials' group (job_type "study"), written by optuna-integration's
        WeightsAndBiasesCallback, called for each trial in order: it logs each trial's parameters and
        value at step = trial number, and W&B drops a step lower than the last, so not as trials end
        (two processes end them out of order). Then the trials table and the best trial."""
        from optuna_integration.wandb import WeightsAndBiasesCallback

        a = self.args
        with warnings.catch_warnings():  # deprecated since optuna-integration 4.9, still its W&B integration
            warnings.simplefilter("ignore", FutureWarning)
            callback = WeightsAndBiasesCallback(
                metric_name="val_acc",
                wandb_kwargs=dict(
                    project=a.project or os.environ.get("WANDB_PROJECT", "alexnet-cifar10"),
                    name=study.study_name,
                    tags=a.tags,
                    mode=a.mode,
                    dir=a.out_dir,
                    id=self.run_id,
                    resume="allow",
                    group=study.study_name,
                    job_type="study",
                    config={"search_space": study.user_attrs.get("search_space")},
                ),
            )
        trials = sorted(study.get_trials(), key=lambda t: t.number)
        for trial in trials:
            callback(study, trial)
        run = wandb.run
        params = sorted({key for t in trials for key in t.params})
        run.log(
            {
                "trials": wandb.Table(
                    columns=["trial", "state", "val_acc", "duration_s", *params, "val_acc_by_epoch"],
                    data=[
                        [
                            t.number,
                            t.state.name.lower(),
                            t.value,
                            t.duration.total_seconds() if t.duration else None,
                            *[t.params.get(key) for key in params],
                            json.dumps(t.intermediate_values),
                        ]
                        for t in trials
                    ],
                )
            }
        )
        best = study.best_trial
        run.summary.update(
            {
                "best/trial": best.number,
                "best/val_acc": best.value,
                **{f"best/{key}": value for key, value in best.params.items()},
            }
        )
        run.finish()
        return [
            f"W&B offline: Sweeps need a W&B server (wandb.sweep); this search ran on Optuna, its trials the "
            f"runs of group {study.study_name} (job_type trial), the study its run of job_type study"
        ]

    @staticmethod
    def relocate(old, new):
        """W&B keeps absolute paths in its run logs (staged files, model files, settings): re-point
        every .wandb log under --out-dir, and the logs' symlinks, from the old folder to the new.
        A log not read whole is left as it is, and said (the client has no Python reader to ask)."""
        from wandb.proto.wandb_internal_pb2 import Record

        moved, refused = 0, []
        for log in sorted({os.path.realpath(p) for p in glob.glob(os.path.join(new, "wandb", "*", "*.wandb"))}):
            records = []
            try:
                logged = read_log(log)
            except ValueError as e:
                refused.append(str(e))
                continue
            for data in logged:
                record = Record()
                record.ParseFromString(data)
                repoint(record, old, new)
                records.append(record.SerializeToString())
            write_log(log, records)
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
            raise tracking.RecordError(f"{done}; left as they are, not re-pointed: {'; '.join(refused)}")
        return done

    def where(self):
        if not hasattr(self, "folder"):
            return ""
        if self.args.mode == "online":
            return f"W&B run: {self.url}"
        return (
            f"W&B run saved offline in {self.folder}\n"
            f"  look at it: wandb leet {self.folder}\n"
            f"  upload it:  wandb sync {self.folder}"
        )


def main(argv=None):
    return tracking.main(WandbTracker, argv)


if __name__ == "__main__":
    sys.exit(main())
