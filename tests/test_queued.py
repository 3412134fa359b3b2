"""The scripts' logging thread (trackers/queued.py): order, a bounded queue that drops nothing, the
run's end waiting for it, a failure raised on the training thread and nothing logged after it."""

import threading
import time

import pytest

from trackers import base, queued
from trackers.queued import Queued


class Slow(base.Disabled):
    """A tracker whose calls take time and are noted with the thread they ran on."""

    name = "Slow"

    def __init__(self, run_dir, delay_s=0.0, fail_at=None):
        super().__init__(None, run_dir)
        self.calls, self.delay_s, self.fail_at = [], delay_s, fail_at
        self.gate = threading.Event()
        self.gate.set()

    def log_metrics(self, metrics, step):
        self.gate.wait()
        time.sleep(self.delay_s)
        if step == self.fail_at:
            raise OSError(28, "No space left on device")
        self.calls.append(("log_metrics", step, threading.current_thread().name))

    def recorded(self):
        self.calls.append(("recorded", None, threading.current_thread().name))
        return base.Recorded()

    def finish(self, status, exit_code):
        self.calls.append(("finish", status, threading.current_thread().name))


def test_calls_run_in_order_on_one_thread_and_the_end_waits_for_them(tmp_path):
    tracker = Slow(str(tmp_path), delay_s=0.002)
    q = Queued(tracker)
    q.start({}, None)
    for step in range(1, 41):
        q.log_metrics({"loss": 1.0}, step)
    q.recorded()  # waits for everything before it
    assert [c[1] for c in tracker.calls] == [*range(1, 41), None]
    q.finish("completed", 0)
    assert [c[1] for c in tracker.calls][-1] == "completed"
    assert {c[2] for c in tracker.calls} == {"Slow calls"}  # one thread, not the caller's


def test_a_full_queue_makes_the_training_thread_wait_and_drops_nothing(tmp_path):
    tracker = Slow(str(tmp_path))
    tracker.gate.clear()  # the tool is stuck: nothing leaves the queue
    q = Queued(tracker)
    q.start({}, None)
    handed = []

    def train():
        for step in range(1, queued.MAX_QUEUED + 11):
            q.log_metrics({"loss": 1.0}, step)
            handed.append(step)

    trainer = threading.Thread(target=train)
    trainer.start()
    time.sleep(0.5)
    # The worker holds one call; the queue holds MAX_QUEUED more; the next waits.
    assert len(handed) == queued.MAX_QUEUED + 1 and trainer.is_alive()
    tracker.gate.set()
    trainer.join(10)
    q.finish("completed", 0)
    assert [c[1] for c in tracker.calls if c[0] == "log_metrics"] == list(range(1, queued.MAX_QUEUED + 11))


def test_a_failed_call_is_raised_at_the_next_and_nothing_after_it_is_logged(tmp_path):
    tracker = Slow(str(tmp_path), fail_at=3)
    q = Queued(tracker)
    q.start({}, None)
    tracker.gate.clear()  # all four handed over before the third fails
    for step in (1, 2, 3, 4):
        q.log_metrics({"loss": 1.0}, step)
    tracker.gate.set()
    with pytest.raises(OSError, match="No space left"):
        q.wait()
    q.log_metrics({"loss": 1.0}, 5)  # the failure was raised once; the logging stays stopped
    q.finish("failed", 1)
    assert [c[1] for c in tracker.calls] == [1, 2, "failed"]  # 4 and 5 not logged; the run still closed


def test_a_failure_is_raised_by_finish_once_the_run_is_closed(tmp_path):
    tracker = Slow(str(tmp_path), fail_at=2)
    q = Queued(tracker)
    q.start({}, None)
    tracker.gate.clear()
    q.log_metrics({"loss": 1.0}, 1)
    q.log_metrics({"loss": 1.0}, 2)
    tracker.gate.set()
    with pytest.raises(OSError):
        q.finish("completed", 0)
    assert tracker.calls[-1][:2] == ("finish", "completed")
