"""A tool's tracker run on a thread of its own, so the training thread only hands each logging call
over.

An epoch's end costs a tool tens to hundreds of milliseconds (hashing or copying a 93 MB model
version, registering it, binning histograms): on a GPU, whose epochs of this job take a second or
less, that is a large share of the epoch, all of it waited for by the training thread. Here every
call to the tool is made on one worker thread, in the order the training thread made it: the logging
calls are put on a bounded queue and the training thread goes on; opening the run, reading its
record back and closing it are waited for. One thread for all of a tool's calls, as in a script that
never starts one: MLflow's active run and Trackio's current run belong to the thread that opened it.

What stays true (docs/resuming.md):
- Order: one worker, one queue, the calls as made (W&B drops a step lower than its last).
- Nothing dropped: the queue holds at most MAX_QUEUED calls; when it is full the training thread
  waits for room.
- A kill -9 loses what is queued, and the resume state is never taken as what the tool stored: a
  resumed run reads the tool's own record (`recorded`, made after everything before it) and logs from
  the resume state what the record lacks, so each epoch, step and model version is there once.
- The run's end waits for the queue (`finish`), and so does a read of the record (`recorded`).
- A logging call that fails stops the logging (nothing after it is logged, so the record never holds
  a later call without an earlier one); its error is raised on the training thread at its next
  call, where the run ends with one line, as if the call had failed there. The run is still closed.
"""

import queue
import sys
import threading

MAX_QUEUED = 64  # calls: an epoch makes a handful at the default --log-every; every step, this bounds memory
SWITCH_INTERVAL_S = (
    0.00005  # how soon a thread holding the interpreter's lock gives it up to a waiting one (Python: 5 ms)
)


class Queued:
    """`tracker`'s calls made on a worker thread, in order; its attributes are the tracker's own."""

    def __init__(self, tracker):
        self.tracker = tracker
        self._calls = queue.Queue(MAX_QUEUED)
        self._failure = None  # a logging call's error, for the training thread's next call
        self._stopped = False  # a logging call failed: no later one is made
        self._worker = None

    def __getattr__(self, name):
        return getattr(self.tracker, name)

    def _work(self):
        while True:
            method, args, answer = self._calls.get()
            try:
                if answer is not None:  # waited for: its result or its error goes to the caller
                    try:
                        answer.append((True, getattr(self.tracker, method)(*args)))
                    except BaseException as e:
                        answer.append((False, e))
                elif not self._stopped:  # after a failure nothing more is logged
                    getattr(self.tracker, method)(*args)
            except BaseException as e:
                self._failure, self._stopped = e, True
            finally:
                self._calls.task_done()
            if method == "finish":
                return

    def _log(self, method, *args):
        self._raise_failure()
        self._calls.put((method, args, None))  # waits while the queue is full

    def _wait_for(self, method, *args):
        answer = []
        self._calls.put((method, args, answer))
        while not answer:  # a signal's handler runs meanwhile (Ctrl-C twice: Abandoned)
            self._calls.join()
        ok, value = answer[0]
        if not ok:
            raise value
        return value

    def _raise_failure(self):
        if self._failure is not None:
            failure, self._failure = self._failure, None
            raise failure

    def start(self, config, model):
        # The worker's Python work (a client's bookkeeping) holds the interpreter's lock in slices: the
        # training thread, woken from a GPU wait, gets it back within 0.05 ms instead of 5.
        sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL_S))
        self._worker = threading.Thread(target=self._work, name=f"{self.tracker.name} calls", daemon=True)
        self._worker.start()
        self._wait_for("start", config, model)

    def wait(self):
        """Until every call handed over has been made; a failure among them is raised here."""
        if self._worker is not None:
            self._calls.join()
        self._raise_failure()

    def recorded(self):
        self._raise_failure()
        return self._wait_for("recorded")

    def log_dataset(self, info, files):
        self._log("log_dataset", info, list(files))

    def log_metrics(self, metrics, step):
        self._log("log_metrics", dict(metrics), step)

    def log_epoch(self, metrics, step, checkpoint=None, state=None):
        # What the call needs of the model as the epoch left it, taken now: it trains on meanwhile.
        self._log("log_epoch", dict(metrics), step, checkpoint, self.tracker.epoch_state())

    def log_model(self, checkpoint):
        self._log("log_model", checkpoint)

    def log_results(self, evaluation, checkpoint, summary, step):
        self._log("log_results", evaluation, checkpoint, dict(summary), step)

    def log_trial(self, outcome):
        self._log("log_trial", outcome)

    def finish(self, status, exit_code):
        """Everything queued logged, then the run closed (whatever failed before); a logging call's
        failure is raised once the run is closed."""
        if self._worker is None:  # the run never opened
            self.tracker.finish(status, exit_code)
            return
        worker, self._worker = self._worker, None
        self._wait_for("finish", status, exit_code)  # a second Ctrl-C stops the wait (Abandoned): no join then
        worker.join()
        self._raise_failure()
