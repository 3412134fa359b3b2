"""--search N: a hyperparameter search with Optuna, each trial trained by the engine and recorded
as a run of the tracker, the study kept in a journal file under --out-dir.

Offline, Optuna is the search engine of all three tools (W&B Sweeps need a W&B server). The journal
is Optuna's storage for several processes on one file system: processes given the same flags and
--out-dir share one study and split its trials, and a search stopped by Ctrl-C or a kill goes on
where it was when started again: finished trials are kept, the trial that was cut short continues
from its resume state as the same tracker run.
"""

import argparse
import hashlib
import json
import math
import os
import shutil
import signal
import sys
import time
import warnings

import optuna

import alexnet
import data
import durable
import lifecycle
import ranks
import resume
from trackers import base
from trackers.queued import Queued

# What is searched, around the recipe as fitted to the data (or the --lr given): the peak rate and
# the weight decay on log scales, label smoothing and the warmup. Flags name them, so the best
# trial is a command line.
PARAMS = ("lr", "weight_decay", "label_smoothing", "warmup_epochs")
OUTCOME_FILE = "trial.json"  # a trial's outcome, written once its tracker run is closed
PRUNED_AT = "pruned_at"  # the trial's user attribute in the journal: the epoch the pruner stopped it at


def space(base):
    return {
        "lr": optuna.distributions.FloatDistribution(base["lr"] / 5, base["lr"] * 2, log=True),
        "weight_decay": optuna.distributions.FloatDistribution(5e-5, 5e-3, log=True),
        "label_smoothing": optuna.distributions.FloatDistribution(0.0, 0.2),
        # Some warmup always: without it the first steps at a high rate blow the loss up (alexnet.RECIPES).
        "warmup_epochs": optuna.distributions.FloatDistribution(
            min(0.5, base["epochs"] / 4), min(2.0, base["epochs"] / 2)
        ),
    }


def sampler(base, number):
    """TPE seeded by --seed and the trial's number: a trial is proposed the same whoever asks for it
    (another process, a resumed search). Its first 10 trials are random draws; after them TPE
    models the trials that have ended, and which those are depends on who finished first."""
    return optuna.samplers.TPESampler(seed=base["seed"] + number, constant_liar=True)


def pruner():
    """The median rule: a trial whose best validation accuracy so far is below the median of the
    finished trials' at that epoch stops there; from the second epoch (steps are epochs, and Optuna
    prunes from step n_warmup_steps), once one trial has finished, so a search of a few trials prunes."""
    return optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=2)


def study_name(base):
    """The same flags name the same study: a second process, or the same command run again, joins it."""
    what = {k: base.get(k) for k in resume.MUST_MATCH if k not in PARAMS}
    what["space"] = {k: repr(d) for k, d in space(base).items()}
    return "search-" + hashlib.sha1(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:8]


class TrialRecorder:
    """The tool's tracker for one trial's run, but for what a search keeps: no model versions (the best
    trial's command trains its model again) and, before the run closes, the trial's outcome. Every
    other call and attribute is the tool's tracker's."""

    def __init__(self, tracker, trial):
        self.tracker, self.trial = tracker, trial
        self.diverged = False

    def __getattr__(self, name):
        return getattr(self.tracker, name)

    def log_epoch(self, metrics, step, checkpoint=None):
        self.tracker.log_epoch(metrics, step, None)
        self.diverged = not math.isfinite(metrics["train/loss"])  # the engine ends the trial: it failed

    def log_results(self, evaluation, checkpoint, summary, step):
        self.tracker.log_results(evaluation, None, summary, step)

    def finish(self, status, exit_code):
        if status == "completed" or self.diverged:
            outcome = self.trial.outcome("failed" if self.diverged else None)
            self.tracker.log_trial(outcome)
            self.tracker.finish(status, exit_code)
            write_json(os.path.join(self.run_dir, OUTCOME_FILE), outcome)  # last: the trial has ended
        else:  # stopped: the trial goes on when the search does
            self.tracker.finish(status, exit_code)


class JournalTrial(optuna.trial.Trial):
    """An Optuna trial read from the journal, by whichever process trains it."""

    def values(self):
        """The validation accuracies the journal holds for this trial, by epoch."""
        return self.storage.get_trial(self._trial_id).intermediate_values

    def stop_early(self, metrics):
        """The engine asks after each epoch it trains: the journal gets the epoch's validation accuracy
        (after the tool's record, which a resumed trial completes first), then the pruner decides, once
        per epoch; its decision is kept in the journal, so a trial resumed after a kill stops where it
        did, whatever the other trials have done since."""
        epoch = metrics["epoch"]
        pruned_at = self.storage.get_trial(self._trial_id).user_attrs.get(PRUNED_AT)
        if pruned_at is not None:
            return epoch >= pruned_at
        values = self.values()
        if epoch not in values:
            self.report(metrics["val/acc"], epoch)
        elif epoch < max(values):  # a replayed epoch: the pruner let it pass before
            return False
        if not self.should_prune():
            return False
        self.set_user_attr(PRUNED_AT, epoch)
        ranks.rank0_print(
            f"epoch {epoch}: best val acc so far {max(self.values().values()):.4f}, below the median of the "
            "finished trials' at this epoch: pruned"
        )
        return True

    def outcome(self, state=None):
        """The trial as it ended: state (complete, pruned, failed), value (as Optuna keeps it: the best
        epoch's validation accuracy, a pruned trial's last), validation accuracy by epoch, parameters,
        and the time from its start to its end (a stopped and resumed trial's includes the stop)."""
        frozen = self.storage.get_trial(self._trial_id)
        values = frozen.intermediate_values
        state = state or ("pruned" if PRUNED_AT in frozen.user_attrs else "complete")
        return {
            "number": self.number,
            "study": self.study.study_name,
            "state": state,
            "params": frozen.params,
            "value": (values[max(values)] if state == "pruned" else max(values.values())) if values else None,
            "intermediate_values": {str(k): v for k, v in sorted(values.items())},
            "duration_s": round(time.time() - frozen.datetime_start.timestamp(), 3),
        }


class Stopped(Exception):
    """SIGTERM between two trials (in a trial, the engine stops at the end of a step)."""


def stopped(signum, frame):
    raise Stopped(signum)


def run(tracker_class, args, given):
    """Run (or join, or continue) the search these flags name; returns the exit code."""
    n = args.search
    searched = [f"--{k.replace('_', '-')}" for k in PARAMS[1:] if k in given]
    if searched:
        return ranks.rank0_error(
            f"--search chooses {', '.join(searched)} itself: leave {'it' if len(searched) == 1 else 'them'} "
            "out (--lr, if given, is the centre of the rates it tries)",
            2,
        )
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        out_dir = args.out_dir = lifecycle.prepare_out_dir(args.out_dir)
        device = lifecycle.resolve_device(args.device)
        cfg = lifecycle.make_config(args)
        dataset = lifecycle.load_data(args, cfg)
        cfg.update(lifecycle.fit_recipe(cfg, args, dataset))
        cfg.update(dataset_version=dataset.version, world_size=1, **alexnet.environment(device))
        name = study_name(cfg)
        folder = os.path.join(out_dir, name)
        os.makedirs(folder, exist_ok=True)
        storage = optuna.storages.JournalStorage(
            optuna.storages.journal.JournalFileBackend(os.path.join(folder, "journal.log"))
        )
        # The study's record, opened here: credentials are checked before any training.
        recorder = (tracker_class if args.mode != "disabled" else base.Disabled)(
            args, os.path.join(folder, f"{name}-study")
        )
        with durable.exclusive(os.path.join(folder, ".search.lock")):
            if args.resume == "latest" and not optuna.study.get_all_study_names(storage):
                raise base.UsageError(
                    f"--resume: no search of these flags in {out_dir} yet (its study would be "
                    f"{name}); give the flags it was started with, or leave out --resume"
                )
            study = optuna.create_study(
                study_name=name, storage=storage, direction="maximize", pruner=pruner(), load_if_exists=True
            )
            if "search_space" not in study.user_attrs:
                study.set_user_attr("search_space", {k: repr(d) for k, d in space(cfg).items()})
            recorder.open_study(name)
            done = [t for t in study.get_trials(deepcopy=False) if t.state.is_finished()]
        ranks.rank0_print(
            f"search {name}: {n} trials of {cfg['epochs']} epochs; {len(done)} ended before; "
            f"its journal: {_typed_path(os.path.join(folder, 'journal.log'))}"
        )
    except (base.UsageError, data.DataError) as e:
        return ranks.rank0_error(e, 2)
    except OSError as e:
        return ranks.rank0_error(f"cannot write the search's files in {args.out_dir}: {e.strerror} ({e.filename})", 2)
    except KeyboardInterrupt:
        return ranks.rank0_error("interrupted before the search started; nothing was recorded", 130)
    previous = signal.signal(signal.SIGTERM, stopped)  # between trials; the engine takes it over in one
    try:
        while True:
            claim = next_trial(study, folder, n, cfg)
            if claim is None:
                break
            trial, lock, resumed = claim
            try:
                code = train_trial(tracker_class, args, cfg, study, trial, folder, dataset, device, resumed)
            finally:
                lock.release()
            if code != 0:  # a trial stopped mid-way has said how to continue
                if os.path.exists(os.path.join(trial_dir(folder, study, trial.number), OUTCOME_FILE)):
                    ranks.rank0_print(
                        f"stopped after trial {trial.number} ended; continue the search with: "
                        f"{resume.continue_command()}",
                        file=sys.stderr,
                    )
                return code
        return finish(recorder, args, cfg, study, folder, n)
    except (KeyboardInterrupt, Stopped) as e:  # between two trials: the journal holds every trial that ended
        return ranks.rank0_error(
            f"stopped between trials; continue the search with: {resume.continue_command()}",
            128 + (e.args[0] if isinstance(e, Stopped) else signal.SIGINT),
        )
    finally:
        signal.signal(signal.SIGTERM, previous)


def next_trial(study, folder, n, cfg):
    """The trial this process trains next (a trial, its run folder's lock, whether it ran before), or
    None when the search has all its trials. Under the search's lock, so two processes never take
    the same one: first a trial whose process died (its run folder free), then a new one."""
    with durable.exclusive(os.path.join(folder, ".search.lock")):
        trials = study.get_trials(deepcopy=False)
        for t in trials:
            if t.state == optuna.trial.TrialState.RUNNING:
                try:
                    lock = durable.FolderLock(trial_dir(folder, study, t.number), "the trial's run folder")
                except durable.Busy:
                    continue  # another process trains it
                trial = JournalTrial(study, t._trial_id)
                # A kill inside study.ask may have left a value unsuggested: suggested now, as it would have been.
                study.sampler = sampler(cfg, t.number)
                for key, dist in space(cfg).items():  # a value already there is kept
                    trial.suggest_float(key, dist.low, dist.high, log=dist.log)
                return trial, lock, True
        if len(trials) >= n:
            return None
        study.sampler = sampler(cfg, len(trials))
        asked = study.ask(space(cfg))
        lock = durable.FolderLock(trial_dir(folder, study, asked.number), "the trial's run folder")
        return JournalTrial(study, asked._trial_id), lock, False


def trial_dir(folder, study, number):
    return os.path.join(folder, f"{study.study_name}-trial-{number}")


def train_trial(tracker_class, args, base, study, trial, folder, dataset, device, resumed):
    """Train one trial through the engine, record it, and tell Optuna how it ended; the exit code."""
    run_dir = trial_dir(folder, study, trial.number)
    outcome_path = os.path.join(run_dir, OUTCOME_FILE)
    if not os.path.exists(outcome_path):
        params = trial.params
        trial_args = argparse.Namespace(**{**vars(args), **params, "batch_size": base["batch_size"]})
        cfg = {**base, **params, "run_id": os.path.basename(run_dir), "study": study.study_name, "trial": trial.number}
        ranks.rank0_print(f"trial {trial.number}: " + ", ".join(f"{k} {v:.4g}" for k, v in params.items()))
        state_path = os.path.join(run_dir, alexnet.Engine.RESUME_FILE)
        try:
            saved = lifecycle.read_state(state_path) if os.path.exists(state_path) else None
            tracker = (
                Queued(tracker_class(trial_args, run_dir))
                if args.mode != "disabled"
                else base.Disabled(trial_args, run_dir)
            )
            recorder = TrialRecorder(tracker, trial)
            engine = alexnet.Engine(cfg, dataset, recorder, device, run_dir, stop_early=trial.stop_early)
            if saved:
                engine.restore(saved)
        except (base.UsageError, alexnet.CheckpointError) as e:
            return ranks.rank0_error(e, 2)
        # A trial that ran before continues as the same tracker run, logging only what its record lacks.
        code = lifecycle.train(engine, recorder, resumed)
        if code != 0 and not recorder.diverged:
            return code
    with open(outcome_path) as f:
        outcome = json.load(f)
    if outcome["state"] == "failed":  # its folder is kept as it is, to look at
        study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
        ranks.rank0_print(f"trial {trial.number}: failed (the loss diverged); the search goes on")
        return 0
    # A search keeps no model files (the best trial's command trains its model again), nor a resume
    # state left by a stop that came as the trial ended.
    shutil.rmtree(os.path.join(run_dir, "checkpoints"), ignore_errors=True)
    for name in (alexnet.Engine.RESUME_FILE, alexnet.Engine.PREVIOUS_FILE):
        if os.path.exists(os.path.join(run_dir, name)):
            os.remove(os.path.join(run_dir, name))
    if outcome["state"] == "pruned":
        study.tell(trial.number, state=optuna.trial.TrialState.PRUNED)
    else:
        study.tell(trial.number, outcome["value"])
    ranks.rank0_print(f"trial {trial.number}: {outcome['state']}, val acc {outcome['value']:.4f}")
    return 0


def finish(recorder, args, cfg, study, folder, n):
    """When every trial has ended: the study's record (once, by the process that ends it last) and
    the best trial with the command that trains it."""
    with durable.exclusive(os.path.join(folder, ".search.lock")):
        trials = study.get_trials(deepcopy=False)
        if any(not t.state.is_finished() for t in trials):
            ranks.rank0_print(
                f"this process is done; trial(s) {[t.number for t in trials if not t.state.is_finished()]} of "
                f"search {study.study_name} are still trained by another"
            )
            return 0
        if not any(t.state == optuna.trial.TrialState.COMPLETE for t in trials):
            return ranks.rank0_error(
                f"search {study.study_name}: no trial completed (all pruned or failed); nothing to record as its best",
                1,
            )
        marker = os.path.join(folder, f"study-{recorder.run_id}-{_tool_slug(recorder)}.json")
        if not os.path.exists(marker) or read_json(marker)["trials"] != len(trials):
            # Optuna's plots warn of a search too small to plot or rank; what they show says so.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                optuna.logging.set_verbosity(optuna.logging.ERROR)
                try:
                    notes = recorder.log_study(study)
                except (base.UsageError, *recorder.write_errors) as e:
                    return ranks.rank0_error(
                        f"{recorder.name} could not record the study: {base.first_line(e)}; "
                        f"the trials are recorded; record it with: {resume.continue_command()}",
                        1,
                    )
                finally:
                    optuna.logging.set_verbosity(optuna.logging.WARNING)
            write_json(marker, {"trials": len(trials), "notes": notes})
            for line in notes:
                ranks.rank0_print(line)
    best = study.best_trial
    ranks.rank0_print(
        f"best trial {best.number}: val acc {best.value:.4f} with "
        + ", ".join(f"{k} {v:.4g}" for k, v in best.params.items())
    )
    # The batch the search trained with: a peak rate given keeps the recipe's batch otherwise.
    train = {**best.params, "batch_size": cfg["batch_size"]}
    ranks.rank0_print(
        "  train it to the end: "
        + resume.command_line(
            drop=["--resume", "--search", *map(flag, train)],
            add=[word for key, value in train.items() for word in (flag(key), f"{value:.6g}")],
        )
    )
    return 0


def _tool_slug(recorder):
    return "".join(c for c in recorder.name.lower() if c.isalnum()) or "none"


def flag(key):
    return "--" + key.replace("_", "-")


def _typed_path(path):
    """A path as the user would type it: relative below the current folder, else absolute."""
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative


def read_json(path):
    with open(path) as f:
        return json.load(f)


def write_json(path, value):
    def write(tmp):
        with open(tmp, "w") as f:
            json.dump(value, f, indent=1)

    durable.write_atomically(path, write)
