"""The tracker interface: what a tool's adapter provides, and what crosses between it and the engine.

`lifecycle.py` owns a tracker run's life: the adapter's constructor (which asks for and checks
credentials, before any data is loaded), `start`, then `recorded` on a resumed run, and `finish`
at the end, whatever happened. The engine (alexnet.py) makes the calls in between: log_dataset,
log_metrics and log_epoch while training, log_results once at the end. A search (search.py) adds
open_study, log_trial and log_study.
"""

import abc
import os
import re
import threading
from dataclasses import dataclass, field

USER_ENVIRONMENT = dict(os.environ)  # as the process started: what the user set, before any tracker sets its own


class UsageError(Exception):
    """A mistake the user can fix (bad flag, missing token, unwritable folder): one line, exit 2."""


class RecordError(Exception):
    """The tracker's own record of an earlier segment cannot be read back: one line, exit 1, and
    nothing logged (an empty record would log every earlier step again)."""


@dataclass
class Checkpoint:
    """A saved model version, as the trackers log it: a file the engine never rewrites."""

    path: str
    epoch: int
    val_acc: float
    final: bool = False
    test_acc: float = None


@dataclass
class Recorded:
    """What a tracker's record of this run already holds, read back from the tool's own record
    when a run resumes: nothing up to a stop (even a kill -9) is logged twice, and what the
    record lacks of what the resume state holds is logged from the state."""

    steps: set = field(default_factory=set)  # steps of the per-step series
    epochs: set = field(default_factory=set)  # epochs whose metrics are there
    versions: set = field(default_factory=set)  # epochs whose model version is there
    final: bool = False  # the final model version is there
    results: bool = False  # the summary (test/*, best/*), logged last, is there

    @property
    def last_step(self):
        return max(self.steps, default=0)

    def add(self, other):
        """This record with another segment's added to it."""
        self.steps |= other.steps
        self.epochs |= other.epochs
        self.versions |= other.versions
        self.final |= other.final
        self.results |= other.results
        return self


class Tracker(abc.ABC):
    """The calls an experiment tracker gets. A tool's adapter implements every abstract method; one
    that does not fails when it is made, naming what is missing.

    Class attributes: `name` (as the user reads it), `project_help` (the --project flag's help), and
    `write_errors`, what the client raises when it cannot write its record (a full disk)."""

    name = None
    project_help = None
    mode_help = "online"  # --mode's default, as default_mode decides it
    write_errors = (OSError,)

    def __init__(self, args, run_dir):
        for attribute in ("name", "project_help"):
            if getattr(self, attribute) is None:
                raise TypeError(f"{type(self).__name__} does not say its {attribute}")
        self.args = args
        self.run_dir = run_dir  # this run's folder; its name is the run id
        self.run_id = os.path.basename(run_dir)
        self.settings = []  # the user's own settings of the tool that changed this run, said at its start

    @classmethod
    def add_arguments(cls, parser):
        """The tool's own flags, beside the ones every script shares (none by default)."""
        return parser

    mode_variable = None  # the tool's own variable that picks its mode (WANDB_MODE), if it has one
    modes = {}  # that variable's values, as --mode's

    @classmethod
    def default_mode(cls):
        """--mode when it is not given, from the tool's own settings: (mode, the setting that chose it, or None)."""
        mode = os.environ.get(cls.mode_variable) if cls.mode_variable else None
        return (cls.modes[mode], f"{cls.mode_variable}={mode}") if mode in cls.modes else ("online", None)

    def keep_or_set(self, defaults):
        """Each variable of `defaults` (name: our value) set to our value unless the user set it (in the
        environment the process started with): the user's own is kept, and said at the run's start. A
        value set for an earlier run of this process (a benchmark opens many) is ours, and replaced."""
        for var, value in defaults.items():
            if USER_ENVIRONMENT.get(var):
                self.settings.append(f"{var}={USER_ENVIRONMENT[var]}")
            else:
                os.environ[var] = value

    @abc.abstractmethod
    def start(self, config, model):
        """Open the run (or reopen it, for a resumed run) with the full config; `model` is there to
        record or watch."""

    @abc.abstractmethod
    def recorded(self):
        """What this run's record already holds from its earlier segments (`Recorded`), read back
        through the tool's record reader."""

    @abc.abstractmethod
    def log_dataset(self, info, files):
        """The dataset's description (`data.Dataset.describe()`) and the files it was read from."""

    @abc.abstractmethod
    def log_metrics(self, metrics, step):
        """Per-step metrics at global optimizer step `step`."""

    @abc.abstractmethod
    def log_epoch(self, metrics, step, checkpoint=None, state=None):
        """Per-epoch metrics (they include "epoch"), at the global step the epoch ended on, and the
        epoch's new best model version (`Checkpoint`) if it has one, logged before the metrics;
        `state` is what `epoch_state` took at the epoch's end (None: take it now)."""

    def epoch_state(self):
        """What log_epoch needs of the model as the epoch left it, taken on the training thread when
        log_epoch is handed to the logging thread (trackers/queued.py): the model trains on meanwhile.
        Keep it cheap; None for a tool that needs nothing."""
        return None

    @abc.abstractmethod
    def log_model(self, checkpoint):
        """A model version (`Checkpoint`), as the tool keeps versions of a model; log_epoch and
        log_results call it for their checkpoint before anything else they log."""

    @abc.abstractmethod
    def log_results(self, evaluation, checkpoint, summary, step):
        """The test evaluation of the best checkpoint (`alexnet.Evaluation`), the final model version
        and the summary (test/*, best/*), the summary last: when it is recorded, all are."""

    @abc.abstractmethod
    def finish(self, status, exit_code):
        """Close the run; status is "completed", "failed" or "interrupted"."""

    @abc.abstractmethod
    def log_trial(self, outcome):
        """A search's trial, before its run closes: its number and study (also in the config), state
        ("complete", "pruned" or "failed"), value (best validation accuracy), validation accuracy by
        epoch, parameters and duration (`search.JournalTrial.outcome`)."""

    @abc.abstractmethod
    def log_study(self, study):
        """The finished search (an `optuna.Study`) as the tool records a study, once; returns what
        the tool could not record offline, one line each."""

    @abc.abstractmethod
    def where(self):
        """Lines telling the user where the run's records are, how to look at them and upload them
        (asked once the run has opened)."""

    @staticmethod
    @abc.abstractmethod
    def relocate(old, new):
        """Re-point the tracker's local records in --out-dir `new`, copied or moved from `old`; a
        line saying what was done."""

    def open_study(self, name):  # noqa: B027 (optional: most tools need nothing before the trials)
        """Before a search's first trial (and in each process that joins it): what the tool needs
        before the trials' runs open."""


class Disabled(Tracker):
    """--mode disabled, and every process but rank 0 under torchrun: nothing is recorded."""

    name = "none"
    project_help = "unused"

    def start(self, config, model):
        pass

    def recorded(self):
        return Recorded()

    def log_dataset(self, info, files):
        pass

    def log_metrics(self, metrics, step):
        pass

    def log_epoch(self, metrics, step, checkpoint=None, state=None):
        pass

    def log_model(self, checkpoint):
        pass

    def log_results(self, evaluation, checkpoint, summary, step):
        pass

    def finish(self, status, exit_code):
        pass

    def log_trial(self, outcome):
        pass

    def log_study(self, study):
        return []

    def where(self):
        return ""

    @staticmethod
    def relocate(old, new):
        return "nothing to re-point"


def call_with_timeout(fn, seconds):
    """fn()'s result, or its exception re-raised, or TimeoutError if it has not returned in time.

    Tracker clients retry an unreachable server for minutes; a user deserves a verdict sooner.
    """
    box = []

    def target():
        try:
            box.append((True, fn()))
        except BaseException as e:  # handed to the caller's thread
            box.append((False, e))

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    if not box:
        raise TimeoutError
    ok, value = box[0]
    if not ok:
        raise value
    return value


def first_line(exc):
    """The first line of a tracker client's exception, without colour codes or banners."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("---")]
    return lines[0] if lines else type(exc).__name__
