"""W&B's adapter: a run per tracked job (offline: a `.wandb` log per segment under --out-dir/wandb),
its metrics on explicit steps, a dataset artifact, a model artifact's versions, tables and a chart
for the test evaluation, and a search's trials as a group of runs."""

import getpass
import json
import os
import shlex
import shutil
import subprocess
import sys
import warnings

import wandb

from trackers import base, run_files, studies, wandb_record

KEY_URL = "https://wandb.ai/authorize"


MODES = {"online": "online", "run": "online", "offline": "offline", "dryrun": "offline", "disabled": "disabled"}


def local_folders(out_dir):
    """Where W&B writes locally (run logs, artifact staging, caches): under `out_dir` unless the user's
    own variable says otherwise, so `wandb sync` works from that folder alone and home stays clean."""
    return {
        var: os.path.join(out_dir, sub)
        for var, sub in [
            ("WANDB_DIR", ""),
            ("WANDB_CACHE_DIR", ".wandb-cache"),
            ("WANDB_CONFIG_DIR", ".wandb-config"),
            ("WANDB_DATA_DIR", ".wandb-data"),
            ("WANDB_ARTIFACT_DIR", ".wandb-artifacts"),
        ]
    }


class WandbTracker(base.Tracker):
    name = "W&B"
    project_help = "W&B project (default: WANDB_PROJECT, else 'alexnet-cifar10')"
    mode_help = "WANDB_MODE's (offline, dryrun, disabled, online), else online"

    @classmethod
    def add_arguments(cls, parser):
        parser.add_argument(
            "--entity", default=None, help="W&B entity: a team or user (default: WANDB_ENTITY, else yours)"
        )

    mode_variable = "WANDB_MODE"
    modes = MODES

    def __init__(self, args, run_dir):
        super().__init__(args, run_dir)
        self.keep_or_set(local_folders(args.out_dir))
        self.log_root = os.environ["WANDB_DIR"]  # W&B writes its logs under <log_root>/wandb
        for flag, var in (("entity", "WANDB_ENTITY"), ("project", "WANDB_PROJECT")):
            if not getattr(args, flag) and os.environ.get(var):
                self.settings.append(f"{var}={os.environ[var]}")
        if args.mode == "online":
            self._authenticate()

    def _authenticate(self, timeout_s=45):
        """Find the API key (env, `wandb login`, or a hidden prompt) and verify it with the server."""
        where = "WANDB_API_KEY"
        if not os.environ.get("WANDB_API_KEY") and not wandb.login(prompt=False, verify=False):
            if not sys.stdin.isatty():
                raise base.UsageError(f"no W&B API key: set WANDB_API_KEY (from {KEY_URL}) or run with --mode offline")
            key = getpass.getpass(f"W&B API key (from {KEY_URL}, or User settings > API keys; input hidden): ").strip()
            if not key:
                raise base.UsageError("no W&B API key given; run with --mode offline to track locally")
            os.environ["WANDB_API_KEY"] = key  # this process and W&B's service only; never saved
            where = "the key you typed"
        server = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")
        try:
            refused = self._verify_key(timeout_s)
        except subprocess.TimeoutExpired:
            raise base.UsageError(
                f"no answer from the W&B server {server} within {timeout_s} s "
                "(no network?); run with --mode offline to track locally"
            ) from None
        if refused and any(w in refused.lower() for w in ("busy", "connect", "timed out", "resolve")):
            raise base.UsageError(
                f"no answer from the W&B server {server} (no network?): the key "
                "was not checked; run with --mode offline to track locally"
            )
        if refused:
            raise base.UsageError(
                f"the W&B server {server} refused {where}: {refused}; run with --mode offline to track locally"
            )

    @staticmethod
    def _verify_key(timeout_s):
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
        return base.first_line(reason)

    def _project(self):
        return self.args.project or os.environ.get("WANDB_PROJECT", "alexnet-cifar10")

    def start(self, config, model):
        a = self.args
        earlier = wandb_record.logs(self.log_root, self.run_id)
        try:
            self.run = wandb.init(
                project=self._project(),
                entity=a.entity,  # None: WANDB_ENTITY, else the key's default entity
                name=a.name,
                tags=a.tags,
                notes=a.notes,
                config=config,
                mode=a.mode,
                dir=self.log_root,
                id=self.run_id,
                resume="allow",
                group=config.get("study"),
                job_type="trial" if config.get("study") else "train",
                settings=wandb.Settings(init_timeout=60),
            )
        except wandb.errors.Error as e:
            raise base.UsageError(
                f"W&B could not open the run: {base.first_line(e)}; run with --mode offline to track locally"
            ) from None
        self.folder = os.path.dirname(self.run.dir)
        self.earlier = [log for log in earlier if not log.startswith(self.folder + os.sep)]
        self.url = self.run.url if a.mode == "online" else None
        self.run.define_metric("global_step", hidden=True)
        self.run.define_metric("train/batch_*", step_metric="global_step")
        self.run.define_metric("epoch")
        self.run.summary["model/params"] = config["model_params"]
        # Copied into the run's files folder, not linked to: the run folder can move to another machine.
        shutil.copy(run_files.architecture_file(self.run_dir, model, config["model_params"]), self.run.dir)
        self.run.save(os.path.join(self.run.dir, "architecture.txt"), base_path=self.run.dir, policy="now")
        source = run_files.copy_source(self.run.dir)  # the code that ran, as Neptune's source_files
        for pattern in run_files.SOURCES:
            self.run.save(os.path.join(source, pattern), base_path=self.run.dir, policy="now")
        self.model = model  # its histograms are logged at each epoch's end
        run_files.weight_sample(model)  # the histograms' positions, drawn now rather than at the first epoch's end
        self.epoch_metrics_defined = False

    def recorded(self):
        if self.args.mode == "online":  # the server's summary of the resumed run
            s, epochs = self.run.summary, set(range(1, int(self.run.summary.get("epoch", 0)) + 1))
            return base.Recorded(
                set(range(1, int(s.get("global_step", 0)) + 1)), epochs, epochs, "test/acc" in s, "test/acc" in s
            )
        return wandb_record.recorded(self.run_dir, self.earlier)

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

    def epoch_state(self):
        return run_files.weight_sample(self.model)  # the histograms' values, as the epoch left them

    def log_epoch(self, metrics, step, checkpoint=None, state=None):
        if checkpoint:
            self.log_model(checkpoint)
        if not self.epoch_metrics_defined:  # per-epoch metrics plot against "epoch"
            for key in metrics.keys() - {"epoch"}:
                self.run.define_metric(key, step_metric="epoch")
            self.epoch_metrics_defined = True
        histograms = {
            k: wandb.Histogram(np_histogram=v)
            for k, v in run_files.histograms(state or run_files.weight_sample(self.model)).items()
        }
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
        self._log_evaluation(evaluation, step + 1)
        if checkpoint:
            self.log_model(checkpoint)
        self.run.summary.update(summary)

    def _log_evaluation(self, evaluation, step):
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
        self.run.summary.update(studies.trial_values(outcome))

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
                    project=self._project(),
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
        for trial in sorted(study.get_trials(), key=lambda t: t.number):
            callback(study, trial)
        run = wandb.run
        columns, rows = studies.trials_table(study)
        run.log({"trials": wandb.Table(columns=columns, data=rows)})
        run.summary.update(studies.best_values(study))
        run.finish()
        return [
            f"W&B offline: Sweeps need a W&B server (wandb.sweep); this search ran on Optuna, its trials the "
            f"runs of group {study.study_name} (job_type trial), the study its run of job_type study"
        ]

    def where(self):
        if self.args.mode == "online":
            return f"W&B run: {self.url}"
        segments = [os.path.dirname(log) for log in self.earlier] + [self.folder]  # one folder per start
        return (
            f"W&B run saved offline in {self.folder}"
            + (f" and {len(segments) - 1} earlier segment folder(s) of the same run id" if len(segments) > 1 else "")
            + f"\n  look at it: wandb leet {self.folder}\n"
            f"  upload it:  wandb sync {' '.join(shlex.quote(s) for s in segments)}"
        )

    relocate = staticmethod(wandb_record.repoint_logs)  # --moved-from


Tracker = WandbTracker
