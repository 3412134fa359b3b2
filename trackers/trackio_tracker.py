"""Trackio's adapter (client 0.43, Hugging Face): free and local-first, one SQLite store per project
under --out-dir/trackio (or the user's TRACKIO_DIR), a run per job reopened by its name on resume,
rows of metrics on explicit steps, a dataset and a model as versioned artifacts, histograms, images
and tables for the evaluation, a search's trials as a group of runs. `trackio show` is its dashboard;
`trackio sync` copies a project to a Hugging Face Space, which needs the Hub and a network.

What Trackio has no counterpart for is recorded as the nearest thing it has, and said: a run's
summary (test/*, best/*) is its last row; a run's status and exit code are a row too (and a failed
run raises an alert); a study is a run of the trials' group that holds the trials as a table. It
captures no console output. `trackio` is imported by the adapter's constructor, once TRACKIO_DIR is
set: Trackio reads it when imported, so one process writes one Trackio folder.
"""

import json
import os

import numpy as np

from trackers import base, run_files, studies, trackio_record

PROJECT = "alexnet-cifar10"
REMOTE = ("TRACKIO_SPACE_ID", "TRACKIO_SERVER_URL")  # Trackio's own settings that make a run remote
MISSING = (
    "Trackio keeps no run summary, status or console output: test/* and best/* are the run's last row, "
    "run/status and run/exit_code a row of their own"
)


def local_folders(out_dir):
    """Trackio's folder under `out_dir` unless the user's TRACKIO_DIR names one; no call to the Hugging
    Face Hub (Trackio asks it for the user's name when a token is set) unless the user allows it."""
    os.environ.setdefault("TRACKIO_DIR", os.path.join(out_dir, trackio_record.FOLDER))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("MPLCONFIGDIR", os.path.join(out_dir, ".matplotlib"))


class TrackioTracker(base.Tracker):
    name = "Trackio"
    project_help = f"Trackio project (default: '{PROJECT}')"
    mode_help = "online if TRACKIO_SPACE_ID or TRACKIO_SERVER_URL is set, else offline"

    @staticmethod
    def default_mode():
        """Trackio has no mode setting: a Space or server named in its variables means online; without one
        Trackio records locally, and so does the script."""
        remote = next((f"{k}={os.environ[k]}" for k in REMOTE if os.environ.get(k)), None)
        return ("online", remote) if remote else ("offline", None)

    def __init__(self, args, run_dir):
        super().__init__(args, run_dir)
        if base.USER_ENVIRONMENT.get("TRACKIO_DIR"):
            self.settings.append(f"TRACKIO_DIR={base.USER_ENVIRONMENT['TRACKIO_DIR']}")
        local_folders(args.out_dir)
        self.project = args.project or PROJECT
        self.remote = {}
        if args.mode == "online":
            self.remote = {k: os.environ[k] for k in REMOTE if os.environ.get(k)}
            if not self.remote:
                raise base.UsageError(
                    "Trackio online needs a Hugging Face Space (TRACKIO_SPACE_ID) or a Trackio server "
                    "(TRACKIO_SERVER_URL), or run with --mode offline"
                )
        else:  # an offline run stays local whatever the user's online settings say
            for key in REMOTE:
                os.environ.pop(key, None)
        import trackio
        import trackio.utils

        self.folder = str(trackio.utils.TRACKIO_DIR)  # where this process's Trackio writes

    def start(self, config, model):
        import trackio

        exists = trackio_record.run_exists(self.folder, self.project, self.run_id)
        try:
            self.run = trackio.init(
                project=self.project,
                name=self.run_id,
                group=config.get("study"),
                config={k: v for k, v in config.items() if not k.startswith("_")},
                resume="allow",
                embed=False,
            )
        except Exception as e:  # a remote Space or server that is not there
            raise base.UsageError(
                f"Trackio could not open the run: {base.first_line(e)}; run with --mode offline to track locally"
            ) from None
        self.model = model  # its histograms are logged at each epoch's end
        run_files.weight_sample(model)  # the histograms' positions, drawn now rather than at the first epoch's end
        self.last_step = 0
        if not exists:  # a Trackio run, and its config, are stored with its first row
            self.run.log({"model/params": config["model_params"]}, step=0)

    def recorded(self):
        return trackio_record.recorded(self.folder, self.project, self.run_id)

    def log_dataset(self, info, files):
        import trackio

        dataset = trackio.Artifact(info["name"], type="dataset", description=info["source"], metadata=info)
        for path in files:  # checksummed where they lie, not copied: the digest follows the content
            dataset.add_reference(f"file://{path}")
        if not files:  # generated data: its description is the version
            path = os.path.join(self.run_dir, "dataset.json")
            os.makedirs(self.run_dir, exist_ok=True)
            with open(path, "w") as f:
                json.dump(info, f, indent=1)
            dataset.add_file(path)
        self.run.log_artifact(dataset, aliases=[f"v-{info['version']}"])

    def log_metrics(self, metrics, step):

        self.run.log({**metrics, "global_step": step}, step=step)
        self.last_step = step

    def epoch_state(self):
        return run_files.weight_sample(self.model)  # the histograms' values, as the epoch left them

    def log_epoch(self, metrics, step, checkpoint=None, state=None):
        import trackio

        if checkpoint:
            self.log_model(checkpoint)
        histograms = {
            k: trackio.Histogram(np_histogram=v)
            for k, v in run_files.histograms(state or run_files.weight_sample(self.model)).items()
        }
        self.run.log({**metrics, **histograms}, step=step)
        trackio_record.write_queued(self.run)  # in the store now, not up to 0.5 s later
        self.last_step = step

    def log_model(self, checkpoint):
        import trackio

        meta = {"epoch": checkpoint.epoch, "val_acc": checkpoint.val_acc}
        aliases = ["best", "final"] if checkpoint.final else ["best", f"epoch-{checkpoint.epoch}"]  # each moves here
        if checkpoint.final:
            meta["test_acc"] = checkpoint.test_acc
        model = trackio.Artifact(f"model-{self.run_id}", type="model", metadata=meta)
        # Checksummed where it lies, not copied (the engine never rewrites a version's file): a copy of
        # 93 MB at each new best took the training thread's cores. `trackio sync` sends the checksum.
        model.add_reference(f"file://{checkpoint.path}", name="model.pt")
        self.run.log_artifact(model, aliases=aliases)

    def log_results(self, evaluation, checkpoint, summary, step):
        import trackio
        from matplotlib import pyplot as plt

        # One step after training's last: a resumed run's earlier segment may hold that step's rows.
        fig = run_files.confusion_figure(evaluation)
        fig.canvas.draw()
        picture = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
        plt.close(fig)
        self.run.log(
            {
                "test/confusion_matrix": trackio.Image(picture, caption="Test confusion matrix (rows: true class)"),
                "test/confusion_matrix_counts": trackio.Table(
                    columns=["true", *evaluation.classes],
                    data=[[c, *map(int, row)] for c, row in zip(evaluation.classes, evaluation.confusion, strict=True)],
                ),
                "test/per_class_acc": trackio.Table(
                    columns=["class", "accuracy"],
                    data=[[c, a] for c, a in zip(evaluation.classes, evaluation.per_class_acc, strict=True)],
                ),
                "test/most_confident_mistakes": trackio.Table(
                    columns=["image", "test index", "true", "predicted", "probability"],
                    data=[
                        [trackio.Image(m["image"]), m["index"], m["true"], m["predicted"], m["probability"]]
                        for m in evaluation.mistakes
                    ],
                ),
            },
            step=step + 1,
        )
        if checkpoint:
            self.log_model(checkpoint)
        self.run.log(dict(summary), step=step + 1)  # last: the reader takes test/acc as all of the above there
        trackio_record.write_queued(self.run)
        self.last_step = step + 1

    def finish(self, status, exit_code):
        import trackio

        if not hasattr(self, "run"):
            return
        self.run.log({"run/status": status, "run/exit_code": exit_code}, step=self.last_step)
        if status == "failed":
            self.run.alert(title="run failed", text=f"exit code {exit_code}", level=trackio.AlertLevel.ERROR)
        self.run.finish()  # waits until every row is in the store

    def log_trial(self, outcome):

        self.run.log(studies.trial_values(outcome), step=self.last_step)

    def log_study(self, study):
        """The study as one run of the trials' group: the trials as a table, the best trial as a row."""
        import trackio

        run = trackio.init(
            project=self.project,
            name=self.run_id,
            group=study.study_name,
            config={"search_space": str(study.user_attrs.get("search_space")), "study": study.study_name},
            resume="allow",
            embed=False,
        )
        columns, rows = studies.trials_table(study)
        run.log({"trials": trackio.Table(columns=columns, data=rows), **studies.best_values(study)}, step=0)
        run.finish()
        return [
            f"Trackio has no study or sweep type: this search ran on Optuna, its trials the runs of group "
            f"{study.study_name}, the study a run of that group holding the trials as a table"
        ]

    def where(self):
        remote = next(iter(self.remote.values()), None)
        if remote:
            return f"Trackio run {self.run_id} (project {self.project}) at {remote}\n  {MISSING}"
        return (
            f"Trackio run {self.run_id} saved offline in {self.folder} (project {self.project})\n"
            f"  look at it: TRACKIO_DIR={self.folder} trackio show --project {self.project}\n"
            f"  share it:   TRACKIO_DIR={self.folder} trackio sync --project {self.project} --space-id USER/SPACE "
            "(a Hugging Face Space: needs an account and a network)\n"
            f"  {MISSING}"
        )

    relocate = staticmethod(trackio_record.repoint_store)  # --moved-from


Tracker = TrackioTracker
