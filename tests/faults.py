"""Run a tracker script with a fault injected at one phase of the run (used by test_resume.py).

    python tests/faults.py PHASE SIGNAL SCRIPT [flags...]

PHASE is where the signal is sent to the process itself:
  start       the tracker's run has just opened
  dataset     the dataset has just been logged
  step:N      during global optimizer step N
  epoch:N     epoch N's metrics have just been logged (the state of epoch N is not saved yet)
  version:N   epoch N's model version has just been logged, its metrics not yet (the resume state of
              epoch N waits for it: the order of a tool logging on the training thread)
  version:final  the final model version has just been logged, the summary (its marker) not yet
  state:N     the resume state of epoch N's end has just been written, the tracker's records
              maybe still in its client's buffers
  checkpoint  while the final model version (final.pt) is being written
  test        while the best checkpoint is evaluated on the test set
  finish      the results are recorded; the tracker is closing its run
  slow-finish no signal (SIGNAL is ignored): the tracker's finish first hangs for two minutes,
              as an upload to a slow server would, after printing "finishing slowly"
  dataset-race  no signal (SIGNAL is ignored), MLflow offline only: another writer adds the same
              dataset to the experiment's store between the run's lookup of it and its own insert,
              as a run started at the same moment into the same folder does; prints "raced"
  metrics-lost  no signal (SIGNAL is ignored), MLflow offline only: the first batch of step metrics
              MLflow's background queue writes fails, as in a store locked past its timeout
  queued:N    epoch N's model version and metrics are handed to the tracker's logging thread and
              held there, not stored, until the resume state of epoch N is written (the training
              goes on meanwhile); then the signal
  queued:final  the final model version and the results are handed to the logging thread, not stored
  search-endings  no signal (SIGNAL is ignored), --search only: every ending a trial can have, on any
              CPU: the pruner stops trials 1 and 2 at epoch 2 (and no other), and trial 3's weights
              turn to NaN as its epoch 2 begins, so its loss diverges there (a failed trial)
SIGNAL is INT, TERM or KILL (kill -9: no handler, no cleanup, nothing flushed).
A resume state is saved at every epoch's end, as on a CPU at full size (epochs of a minute or more).
"""

import contextlib
import importlib
import os
import signal
import sys
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import alexnet  # noqa: E402
import trackers  # noqa: E402


def fault():
    sys.stdout.flush()
    os.kill(os.getpid(), getattr(signal, f"SIG{SIGNAL}"))


def after(fn, when=lambda *a, **k: True, then=None):
    """fn, then the fault where `when` holds; then the event `then` is set (see state_waits)."""

    def wrapped(*args, **kwargs):
        result = fn(*args, **kwargs)
        if when(*args, **kwargs):
            fault()
            if then is not None:
                then.set()
        return result

    return wrapped


def state_waits(epoch):
    """The resume state of `epoch` is written only once the returned event is set: a call the tracker
    makes on its logging thread comes first, as when a tool logged on the training thread."""
    import threading

    done = threading.Event()
    save_state = alexnet.Engine.save_state

    def wrapped(self):
        if len(self.history) == epoch and self.partial is None:
            done.wait(120)
        save_state(self)

    alexnet.Engine.save_state = wrapped
    return done


def before(fn, when=lambda *a, **k: True):
    def wrapped(*args, **kwargs):
        if when(*args, **kwargs):
            fault()
        return fn(*args, **kwargs)

    return wrapped


def half_written(fn):
    """The final checkpoint's temporary file is half written when the fault comes."""

    def wrapped(path, *args, **kwargs):
        if os.path.basename(path) == "final.pt":
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path + ".tmp", "wb") as f:
                f.write(b"half a checkpoint")
            fault()
        return fn(path, *args, **kwargs)

    return wrapped


PHASE, SIGNAL, SCRIPT, *ARGV = sys.argv[1:]
alexnet.Engine.STATE_EVERY_S = 0.0
module = importlib.import_module(os.path.basename(SCRIPT)[:-3])
Tracker = trackers.get(os.path.basename(SCRIPT)).tracker
phase, _, n = PHASE.partition(":")
if phase == "start":
    Tracker.start = after(Tracker.start)
elif phase == "dataset":
    Tracker.log_dataset = after(Tracker.log_dataset)
elif phase == "step":
    alexnet.Engine.stop_requested = before(alexnet.Engine.stop_requested, lambda self, *a, **k: self.step == int(n))
elif phase == "version":
    Tracker.log_model = after(
        Tracker.log_model,
        lambda self, checkpoint: (
            checkpoint.final if n == "final" else not checkpoint.final and checkpoint.epoch == int(n)
        ),
        then=state_waits(int(n)) if n != "final" else None,
    )
elif phase == "state":
    alexnet.Engine.save_state = after(
        alexnet.Engine.save_state, lambda self: len(self.history) == int(n) and self.partial is None
    )
elif phase == "epoch":
    Tracker.log_epoch = after(
        Tracker.log_epoch, lambda self, metrics, *a: metrics["epoch"] == int(n), then=state_waits(int(n))
    )
elif phase == "checkpoint":
    alexnet.save_checkpoint = half_written(alexnet.save_checkpoint)
elif phase == "test":
    alexnet.Engine.evaluate = before(alexnet.Engine.evaluate, lambda self, split, detailed=False: detailed)
elif phase == "finish":
    Tracker.finish = before(Tracker.finish)
elif phase == "slow-finish":

    def hang(fn):
        def wrapped(*args, **kwargs):
            print("finishing slowly", flush=True)
            # short sleeps: a signal's handler runs between bytecodes, so one long C sleep would
            # hold back a second press that lands while the first one's handler is still running
            for _ in range(1200):
                time.sleep(0.1)
            return fn(*args, **kwargs)

        return wrapped

    Tracker.finish = hang(Tracker.finish)
elif phase == "dataset-race":
    import sqlite3

    import sqlalchemy

    raced = []

    @sqlalchemy.event.listens_for(sqlalchemy.engine.Engine, "before_cursor_execute")
    def another_writer(conn, cursor, statement, parameters, context, executemany):
        if raced or not statement.lstrip().startswith("INSERT INTO datasets"):
            return
        raced.append(True)
        rows = parameters if executemany else [parameters]
        with contextlib.closing(sqlite3.connect(conn.engine.url.database, timeout=20)) as db, db:
            db.executemany(statement, [(uuid.uuid4().hex, *row[1:]) for row in rows])  # its own dataset_uuid
        print("raced", flush=True)
elif phase == "metrics-lost":
    import sqlite3
    import threading

    import sqlalchemy

    failed = []

    @sqlalchemy.event.listens_for(sqlalchemy.engine.Engine, "before_cursor_execute")
    def locked(conn, cursor, statement, parameters, context, executemany):
        queue = threading.current_thread().name.startswith("MLflowBatchLoggingWorkerPool")  # MLflow's own queue
        if queue and not failed and statement.lstrip().startswith("INSERT INTO metrics"):
            failed.append(True)
            raise sqlalchemy.exc.OperationalError(statement, parameters, sqlite3.OperationalError("database is locked"))
elif phase == "queued" and n == "final":
    Tracker.log_results = before(Tracker.log_results)
elif phase == "queued":
    import threading

    state_written = threading.Event()

    def noting(fn):
        def wrapped(self):
            fn(self)
            if len(self.history) >= int(n):
                state_written.set()

        return wrapped

    def held(fn):
        def wrapped(self, metrics, step, checkpoint=None, state=None):
            if metrics["epoch"] == int(n) and checkpoint:  # on the logging thread: the training goes on
                state_written.wait(120)
                fault()
            return fn(self, metrics, step, checkpoint, state)

        return wrapped

    alexnet.Engine.save_state = noting(alexnet.Engine.save_state)
    Tracker.log_epoch = held(Tracker.log_epoch)
elif phase == "search-endings":
    import optuna
    import torch

    import search

    class Scheduled(optuna.pruners.BasePruner):
        """Which trial is pruned where, fixed: the median rule's verdict hangs on validation accuracies
        that differ in their last bits from one CPU's kernels to another's."""

        def prune(self, study, trial):
            return trial.number in (1, 2) and trial.last_step == 2

    def diverging(fn):
        def wrapped(self, epoch):
            if self.cfg.get("trial") == 3 and epoch == 2:
                with torch.no_grad():
                    next(self.model.parameters()).fill_(float("nan"))
            return fn(self, epoch)

        return wrapped

    search.pruner = Scheduled
    alexnet.Engine.train_one_epoch = diverging(alexnet.Engine.train_one_epoch)
else:
    sys.exit(f"unknown phase {PHASE}")
sys.argv = [SCRIPT, *ARGV]
sys.exit(module.main())
