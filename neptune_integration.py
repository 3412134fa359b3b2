"""Train AlexNet on CIFAR-10 and track it with Neptune (client 1.14).

    python neptune_integration.py --mode offline     # no account needed; `neptune sync` later
    python neptune_integration.py --project ws/proj  # online: NEPTUNE_API_TOKEN or a prompt

neptune.ai's hosted app closed on 2026-03-05: online mode reaches a self-hosted Neptune server
(the API token encodes its address). The mirror image of wandb_setup_script.py.
"""
import getpass
import json
import os
import re
import sys

import neptune
from neptune.types import File
from neptune.utils import stringify_unsupported

import tracking

TOKEN_PLACE = "the Neptune app's user menu (bottom left) > Get your API token"
PROJECT = re.compile(r"^[\w.-]+/[\w.-]+$")


class NeptuneTracker(tracking.Tracker):
    name = "Neptune"

    def __init__(self, args, run_dir):
        super().__init__(args, run_dir)
        # Neptune's data directory and matplotlib's cache stay under --out-dir, so
        # `neptune sync --path <out-dir>` works from that folder alone and home stays clean.
        self.data_dir = os.path.join(args.out_dir, ".neptune")
        os.environ["NEPTUNE_DATA_DIRECTORY"] = self.data_dir
        os.environ.setdefault("MPLCONFIGDIR", os.path.join(args.out_dir, ".matplotlib"))
        self.project = args.project or os.environ.get("NEPTUNE_PROJECT")
        self.token = None
        if args.mode == "online":
            self.authenticate()

    def authenticate(self):
        """Check the project's form and find the API token (env or a hidden prompt)."""
        if not self.project or not PROJECT.match(self.project):
            raise tracking.UsageError(f"Neptune needs --project or NEPTUNE_PROJECT as workspace/project, "
                                      f"got {self.project!r}")
        self.token = os.environ.get("NEPTUNE_API_TOKEN")
        if not self.token:
            if not sys.stdin.isatty():
                raise tracking.UsageError("no Neptune API token: set NEPTUNE_API_TOKEN (from "
                                          f"{TOKEN_PLACE}) or run with --mode offline")
            self.token = getpass.getpass(f"Neptune API token (from {TOKEN_PLACE}; input hidden): ").strip()
            if not self.token:
                raise tracking.UsageError("no Neptune API token given; run with --mode offline to track locally")

    def start(self, config, model, timeout_s=45):
        a = self.args
        try:
            self.run = tracking.call_with_timeout(lambda: neptune.init_run(
                project=self.project, api_token=self.token, custom_run_id=self.run_id,
                mode="async" if a.mode == "online" else "offline", name=a.name,
                description=a.notes, tags=a.tags, source_files=["*.py"],
                capture_hardware_metrics=True, capture_stdout=True, capture_stderr=True), timeout_s)
        except TimeoutError:
            raise tracking.UsageError(f"no answer from the Neptune server within {timeout_s} s (neptune.ai's "
                                      "hosted app closed on 2026-03-05; online needs a self-hosted server); "
                                      "run with --mode offline to track locally") from None
        except Exception as e:
            raise tracking.UsageError(f"Neptune could not open the run: {tracking.first_line(e)}; check "
                                      "NEPTUNE_API_TOKEN and --project, or run with --mode offline") from None
        # Offline, Neptune keeps no custom_run_id (and `neptune sync` makes each segment of a resumed
        # run its own run); this field ties the segments together. Online, custom_run_id resumes the run.
        self.run["run_id"] = self.run_id
        self.run["parameters"] = stringify_unsupported(config)
        self.run["model/params"] = config["model_params"]
        self.run["model/architecture"].upload(self.write_architecture(model))

    def log_dataset(self, info, files):
        self.run["dataset"] = stringify_unsupported(info)
        for path in files:  # Neptune's artifact hash of the data files is the dataset version
            self.run["dataset/files"].track_files(path)

    def log_metrics(self, metrics, step):
        for key, value in metrics.items():
            self.run[key].append(value, step=step)

    def log_epoch(self, metrics, step):
        for key, value in metrics.items():
            self.run[key].append(value, step=metrics["epoch"])

    def log_checkpoint(self, checkpoint):
        # Offline, Neptune records the file's path, not its content: each version is its own file
        # under --out-dir that the engine never rewrites, so `neptune sync` uploads the right bytes.
        version = "final" if checkpoint.final else f"epoch_{checkpoint.epoch}"
        self.run[f"model/checkpoints/{version}"].upload(checkpoint.path)
        meta = {"epoch": checkpoint.epoch, "val_acc": checkpoint.val_acc,
                "checkpoint": f"model/checkpoints/{version}"}
        if checkpoint.final:
            meta["test_acc"] = checkpoint.test_acc
            self.run["model/final"] = meta
        else:
            self.run["model/best"] = meta
        self.run["model/latest"] = meta

    def log_evaluation(self, evaluation):
        from matplotlib import pyplot as plt
        fig = self.confusion_figure(evaluation)
        self.run["test/confusion_matrix"].upload(File.as_image(fig))
        plt.close(fig)
        self.run["test/confusion_matrix_counts"] = json.dumps(evaluation.confusion.tolist())
        self.run["test/per_class_acc"] = dict(zip(evaluation.classes, evaluation.per_class_acc))
        for m in evaluation.mistakes:
            self.run["test/most_confident_mistakes"].append(
                File.as_image(m["image"]), name=f"test image {m['index']}",
                description=f"true: {m['true']}, predicted: {m['predicted']} (p={m['probability']:.3f})")

    def log_summary(self, summary):
        for key, value in summary.items():
            self.run[key] = value

    def finish(self, status):
        if not hasattr(self, "run"):
            return
        self.run["status"] = status
        if status != "completed":
            self.run["sys/failed"] = True
        self.url = self.run.get_url() if self.args.mode == "online" else None
        self.run.stop()

    def where(self):
        if not hasattr(self, "run"):
            return ""
        if self.args.mode == "online":
            return f"Neptune run: {self.url}"
        return (f"Neptune run saved offline in {self.data_dir}\n"
                f"  upload it: neptune sync --path {self.args.out_dir} --project WORKSPACE/PROJECT")


def main(argv=None):
    return tracking.main(NeptuneTracker, argv)


if __name__ == "__main__":
    sys.exit(main())
