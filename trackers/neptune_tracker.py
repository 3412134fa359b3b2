"""Neptune's adapter (client 1.14): a run per segment (offline: an operation log per segment under
--out-dir/.neptune, tied by the run_id field), series on explicit steps, the dataset's fields and
tracked files, each model version a file upload, and a search's study as one run (neptune-optuna).

neptune.ai's hosted app closed on 2026-03-05: online mode reaches a self-hosted Neptune server (the
API token encodes its address)."""

import getpass
import json
import os
import re
import sys

import neptune
from neptune.types import File
from neptune.utils import stringify_unsupported

from trackers import base, neptune_record, run_files

TOKEN_PLACE = "the Neptune app's user menu (bottom left) > Get your API token"
PROJECT = re.compile(r"^[\w.-]+/[\w.-]+$")
MODES = {"async": "online", "sync": "online", "offline": "offline", "debug": "disabled"}  # NEPTUNE_MODE's


class NeptuneTracker(base.Tracker):
    name = "Neptune"
    project_help = "Neptune project as workspace/project (default: NEPTUNE_PROJECT; needed online)"
    mode_help = "NEPTUNE_MODE's (offline; debug: disabled; async, sync: online), else online"

    mode_variable = "NEPTUNE_MODE"
    modes = MODES

    def __init__(self, args, run_dir):
        super().__init__(args, run_dir)
        # Neptune's data directory and matplotlib's cache stay under --out-dir unless the user's
        # NEPTUNE_DATA_DIRECTORY says otherwise, so `neptune sync --path <out-dir>` works from that
        # folder alone and home stays clean.
        self.keep_or_set({"NEPTUNE_DATA_DIRECTORY": os.path.join(args.out_dir, ".neptune")})
        self.data_dir = os.environ["NEPTUNE_DATA_DIRECTORY"]
        os.environ.setdefault("MPLCONFIGDIR", os.path.join(args.out_dir, ".matplotlib"))
        self.project = args.project or os.environ.get("NEPTUNE_PROJECT")
        if not args.project and self.project:
            self.settings.append(f"NEPTUNE_PROJECT={self.project}")
        self.token = None
        self.held = neptune_record.Held(base.Recorded(), set(), set())  # what earlier segments hold
        if args.mode == "online":
            self._authenticate()

    def _authenticate(self):
        """Check the project's form and find the API token (env or a hidden prompt)."""
        if not self.project or not PROJECT.match(self.project):
            raise base.UsageError(
                f"Neptune needs --project or NEPTUNE_PROJECT as workspace/project, got {self.project!r}"
            )
        self.token = os.environ.get("NEPTUNE_API_TOKEN")
        if not self.token:
            if not sys.stdin.isatty():
                raise base.UsageError(
                    f"no Neptune API token: set NEPTUNE_API_TOKEN (from {TOKEN_PLACE}) or run with --mode offline"
                )
            self.token = getpass.getpass(f"Neptune API token (from {TOKEN_PLACE}; input hidden): ").strip()
            if not self.token:
                raise base.UsageError("no Neptune API token given; run with --mode offline to track locally")

    def start(self, config, model, timeout_s=45):
        a = self.args
        self.earlier = neptune_record.folders(a.out_dir, self.run_id, self.data_dir) if a.mode == "offline" else []
        # Offline, Neptune records the source files' glob and reads the files at `neptune sync`:
        # copies in the run folder travel with it.
        source = run_files.copy_source(self.run_dir)
        try:
            self.run = base.call_with_timeout(
                lambda: neptune.init_run(
                    project=self.project,
                    api_token=self.token,
                    custom_run_id=self.run_id,
                    mode="async" if a.mode == "online" else "offline",
                    name=a.name,
                    description=a.notes,
                    tags=[*a.tags, *([config["study"]] if config.get("study") else [])],
                    source_files=[os.path.join(source, pattern) for pattern in run_files.SOURCES],
                    capture_hardware_metrics=True,
                    capture_stdout=True,
                    capture_stderr=True,
                ),
                timeout_s,
            )
        except TimeoutError:
            raise base.UsageError(
                f"no answer from the Neptune server within {timeout_s} s (neptune.ai's "
                "hosted app closed on 2026-03-05; online needs a self-hosted server); "
                "run with --mode offline to track locally"
            ) from None
        except Exception as e:
            raise base.UsageError(
                f"Neptune could not open the run: {base.first_line(e)}; check "
                "NEPTUNE_API_TOKEN and --project, or run with --mode offline"
            ) from None
        # Offline, Neptune keeps no custom_run_id (and `neptune sync` makes each segment of a resumed
        # run its own run); this field ties the segments together. Online, custom_run_id resumes the run.
        self.run["run_id"] = self.run_id
        self.run["parameters"] = stringify_unsupported(config)
        self.run["model/params"] = config["model_params"]
        self.run["model/architecture"].upload(run_files.architecture_file(self.run_dir, model, config["model_params"]))

    def log_dataset(self, info, files):
        self.run["dataset"] = stringify_unsupported(info)
        for path in files:  # Neptune's artifact hash of the data files is the dataset version
            self.run["dataset/files"].track_files(path)

    def log_metrics(self, metrics, step):
        for key, value in metrics.items():
            if (key, float(step)) not in self.held.points:
                self.run[key].append(value, step=step)

    def recorded(self):
        if self.args.mode == "online":  # the server's copy of the resumed run

            def steps(path):
                return self.run[path].fetch_values()["step"].tolist() if self.run.exists(path) else []

            epochs = {int(e) for e in steps("epoch")}
            return base.Recorded(
                {int(s) for s in steps("train/batch_acc")},
                epochs,
                epochs,
                self.run.exists("model/final"),
                self.run.exists("test/acc"),
            )
        # The points and files a call cut short by a kill did write are not written again
        # (log_metrics, log_epoch, _log_model).
        self.held = neptune_record.held(self.earlier)
        return self.held.recorded

    def log_epoch(self, metrics, step, checkpoint=None, state=None):
        if checkpoint:
            self.log_model(checkpoint)
        for key, value in sorted(metrics.items(), key=lambda kv: kv[0] == "epoch"):  # "epoch" last
            if (key, float(metrics["epoch"])) not in self.held.points:
                self.run[key].append(value, step=metrics["epoch"])

    def log_model(self, checkpoint):
        # Offline, Neptune records the file's path, not its content: each version is its own file
        # under --out-dir that the engine never rewrites, so `neptune sync` uploads the right bytes.
        version = "final" if checkpoint.final else f"epoch_{checkpoint.epoch}"
        if f"model/checkpoints/{version}" not in self.held.uploads:
            self.run[f"model/checkpoints/{version}"].upload(checkpoint.path)
        meta = {"epoch": checkpoint.epoch, "val_acc": checkpoint.val_acc}
        if checkpoint.final:  # the final version is the best one, with its test accuracy
            meta["test_acc"] = checkpoint.test_acc
        meta["checkpoint"] = f"model/checkpoints/{version}"  # last: the reader takes it as the call's end
        if checkpoint.final:
            self.run["model/final"] = meta
        self.run["model/best"] = meta  # as W&B's aliases best and latest: the newest version logged
        self.run["model/latest"] = meta

    def log_results(self, evaluation, checkpoint, summary, step):
        self._log_evaluation(evaluation)
        if checkpoint:
            self.log_model(checkpoint)
        for key, value in sorted(summary.items(), key=lambda kv: kv[0] == "test/acc"):  # "test/acc" last
            self.run[key] = value

    def _log_evaluation(self, evaluation):
        from matplotlib import pyplot as plt

        fig = run_files.confusion_figure(evaluation)
        self.run["test/confusion_matrix"].upload(File.as_image(fig))
        plt.close(fig)
        self.run["test/confusion_matrix_counts"] = json.dumps(evaluation.confusion.tolist())
        self.run["test/per_class_acc"] = dict(zip(evaluation.classes, evaluation.per_class_acc, strict=True))
        for m in evaluation.mistakes:
            self.run["test/most_confident_mistakes"].append(
                File.as_image(m["image"]),
                name=f"test image {m['index']}",
                description=f"true: {m['true']}, predicted: {m['predicted']} (p={m['probability']:.3f})",
            )

    def finish(self, status, exit_code):
        if not hasattr(self, "run"):
            return
        self.run["status"] = status
        self.run["exit_code"] = exit_code
        if status != "completed":
            self.run["sys/failed"] = True
        self.url = self.run.get_url() if self.args.mode == "online" else None
        self.run.stop()

    def log_trial(self, outcome):
        self.run["trial"] = stringify_unsupported(outcome)

    def log_study(self, study):
        """The study as one run, written by neptune-optuna's log_study_metadata: every trial under
        trials/trials/N, the best under best/, Optuna's plots under visualizations/ (made once, at
        the end: the callback remakes them after each trial)."""
        import neptune_optuna
        import optuna

        a = self.args
        run = neptune.init_run(
            project=self.project,
            api_token=self.token,
            mode="async" if a.mode == "online" else "offline",
            name=study.study_name,
            tags=[*a.tags, study.study_name],
            capture_hardware_metrics=False,
            capture_stdout=False,
            capture_stderr=False,
        )
        run["run_id"] = self.run_id
        # neptune-optuna 1.4.1 appends each trial's value to a float series, and a failed trial's is None:
        # it gets the trials that have a value, and a failed trial is logged beside them, under its names.
        valued = optuna.create_study(study_name=study.study_name, directions=study.directions)
        valued.add_trials([t for t in study.get_trials() if t.value is not None])
        neptune_optuna.log_study_metadata(valued, run)
        for t in study.get_trials():
            if t.value is None:
                run[f"trials/trials/{t.number}"] = stringify_unsupported(
                    {
                        "params": t.params,
                        "intermediate_values": t.intermediate_values,
                        "state": repr(t.state),
                        "datetime_start": t.datetime_start,
                        "duration": t.duration,
                    }
                )
        run.stop()
        return [
            "Neptune offline: neptune_optuna.load_study_from_run refuses an offline run, so the study is "
            "reloaded from its Optuna journal; the runs of one search share its name as a tag",
            "neptune-optuna 1.4.1 cannot log a failed trial (its value is None): failed trials are logged under "
            "trials/trials/N by the adapter",
        ]

    def where(self):
        url = getattr(self, "url", None)  # an online run's, known once the run has closed
        if self.args.mode == "online":
            return f"Neptune run: {url or 'see the Neptune server'}"
        segments = len(getattr(self, "earlier", [])) + 1
        return (
            f"Neptune run saved offline in {self.data_dir}\n"
            + (
                f"  it has {segments} segments (one per start): `neptune sync` uploads each as a run of its own "
                f"(offline, Neptune 1.14 keeps no custom run id), each with the field run_id = {self.run_id}; "
                f"`neptune status` lists them as {segments} offline runs. One run from all of them: "
                f"neptune_export.py {self.args.out_dir} --to wandb (or --to mlflow)\n"
                if segments > 1
                else ""
            )
            + (
                f"  upload it: neptune sync --path {self.data_dir} --project WORKSPACE/PROJECT"
                if os.path.basename(self.data_dir) == ".neptune"
                else f"  upload it: `neptune sync --path` takes only a folder named .neptune: link {self.data_dir} "
                "as DIR/.neptune, then neptune sync --path DIR/.neptune --project WORKSPACE/PROJECT"
            )
        )

    relocate = staticmethod(neptune_record.repoint_logs)  # --moved-from


Tracker = NeptuneTracker
