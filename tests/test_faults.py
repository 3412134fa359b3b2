"""A signal and a kill -9 at every phase of a run, each followed by --resume, for every script:
the tracker's record ends with each step and epoch exactly once (tests/faults.py injects them)."""

import glob
import json
import os
import subprocess
import sys
import time

import pytest
import warm
from conftest import EACH_TOOL, ROOT, best_epochs, clean_env, record, run_script
from test_resume import CHAIN_ARGS, TOKENS

# Each link: (phase, signal) injected by tests/faults.py, then the exit code expected. Every phase
# gets a kill -9, and a signal where one stops the run there; a kill -9 comes after a resume state
# exists, so its segment is a resumed one. The run goes on with --resume after each link; the last link ends it. final.pt is
# written once, never again: its write meets one fault, a kill -9 with the file half written.
CHAIN = [
    ("start", "INT", 130),
    ("start", "KILL", -9),
    ("dataset", "INT", 130),
    ("dataset", "KILL", -9),
    ("version:1", "KILL", -9),
    ("state:1", "KILL", -9),
    ("step:6", "INT", 130),
    ("step:7", "KILL", -9),
    ("epoch:2", "INT", 130),
    ("epoch:3", "KILL", -9),
    ("state:3", "KILL", -9),
    ("checkpoint", "KILL", -9),
    ("test", "INT", 130),
    ("test", "KILL", -9),
    ("queued:final", "KILL", -9),
    ("version:final", "KILL", -9),
    ("finish", "KILL", -9),
    ("finish", "INT", 0),
]


@EACH_TOOL
def test_a_fault_at_every_phase_then_resume_records_each_epoch_once(tool, tmp_path):
    """A signal and a kill -9 at each phase (tracker start, dataset, mid-epoch, after an epoch's
    metrics, test evaluation, checkpoint write, finish), each followed by --resume: the record
    holds every step and epoch exactly once and the test accuracy of an uninterrupted run."""
    script = tool.script
    plain = run_script(script, [*CHAIN_ARGS, "--out-dir", tmp_path / "plain"], tmp_path, **TOKENS)
    assert plain.returncode == 0, plain.stderr[-2000:]
    want = record(tool, tmp_path / "plain")
    assert want[0] == [1, 2, 3] and want[1] == list(range(1, 13)) and want[2] == 1 and want[4][0] == 1, want
    out = tmp_path / "D"
    for i, (phase, sig, code) in enumerate(CHAIN):
        argv = [*CHAIN_ARGS, "--out-dir", out, *(["--resume"] if i else [])]
        faulty = run_script(script, argv, tmp_path, fault=(phase, sig), **TOKENS)
        assert faulty.returncode == code, (phase, sig, faulty.stdout[-1500:], faulty.stderr[-3000:])
        assert "Traceback" not in faulty.stderr, (phase, sig, faulty.stderr[-3000:])
    again = run_script(script, [*CHAIN_ARGS, "--out-dir", out, "--resume"], tmp_path, **TOKENS)
    assert again.returncode == 0 and "finished" in again.stdout, again.stdout + again.stderr[-2000:]
    epochs, steps, finals, test_acc, versions = record(tool, out)
    assert epochs == [1, 2, 3] and steps == list(range(1, 13)) and finals == 1, (epochs, steps, finals)
    assert versions == want[4]  # each epoch's model version once
    assert test_acc == want[3]


@EACH_TOOL
def test_a_kill_9_with_a_model_version_queued_and_not_stored_then_resume_records_it_once(tool, tmp_path):
    """A tool's calls are made on a logging thread of its own (trackers/queued.py): epoch 1's model
    version and metrics are held there, not stored, until epoch 1's resume state is written, then kill
    -9. The state says epoch 1 is done, the record lacks it: --resume logs it from the state, once."""
    script = tool.script
    plain = run_script(script, [*CHAIN_ARGS, "--out-dir", tmp_path / "plain"], tmp_path, **TOKENS)
    assert plain.returncode == 0, plain.stderr[-2000:]
    out = tmp_path / "D"
    killed = run_script(script, [*CHAIN_ARGS, "--out-dir", out], tmp_path, fault=("queued:1", "KILL"), **TOKENS)
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert glob.glob(str(out / "*" / "resume.pt")), "no resume state was written before the kill"
    again = run_script(script, [*CHAIN_ARGS, "--out-dir", out, "--resume"], tmp_path, **TOKENS)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "its record holds steps to" in again.stdout and "epochs none" in again.stdout, again.stdout[-2000:]
    assert record(tool, out) == record(tool, tmp_path / "plain")  # each epoch, step and version once


# The reproduction of a kill -9 soon after a resume-state write, at the default interval (the first
# epoch's end, then at most a minute apart): what a client had buffered is lost, the state is kept.
TIMED_ARGS = [
    "--mode",
    "offline",
    "--dataset",
    "synthetic",
    "--train-size",
    1024,
    "--epochs",
    5,
    "--batch-size",
    128,
    "--seed",
    5,
    "--device",
    "cpu",
    "--log-every",
    2,
]


@pytest.fixture(scope="module")
def timed_plain(tmp_path_factory):
    """The engine's own account of the uninterrupted run (--mode disabled): its epochs, its best
    epochs (each a model version), its per-step logging steps and its test accuracy."""
    out = tmp_path_factory.mktemp("timed-plain")
    result = run_script("wandb_setup_script.py", [*TIMED_ARGS[:1], "disabled", *TIMED_ARGS[2:], "--out-dir", out], out)
    assert result.returncode == 0, result.stderr[-2000:]
    [history] = glob.glob(str(out / "*" / "history.json"))
    with open(history) as f:
        run = json.load(f)
    return [e["epoch"] for e in run["epochs"]], [1, *range(2, 41, 2)], best_epochs(run), run["summary"]["test/acc"]


def state_id(path):
    try:
        st = os.stat(path)
        return st.st_ino, st.st_mtime_ns
    except FileNotFoundError:
        return None


@EACH_TOOL
def test_kill_9_seconds_after_a_resume_state_write_at_the_default_interval(tool, timed_plain, tmp_path):
    """kill -9 one, three and five seconds after a resume.pt write, each followed by --resume: each
    epoch, per-step point and model version is in the record once, the test accuracy an uninterrupted run's."""
    script = tool.script
    out = tmp_path / "D"
    for i, delay in enumerate((1, 3, 5)):
        states = glob.glob(str(out / "*" / "resume.pt"))
        before = state_id(states[0]) if states else None
        proc = warm.Popen(
            [
                sys.executable,
                os.path.join(ROOT, script),
                *map(str, TIMED_ARGS),
                "--out-dir",
                out,
                *(["--resume"] if i else []),
            ],
            cwd=ROOT,
            env=clean_env(tmp_path, **TOKENS),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            states = glob.glob(str(out / "*" / "resume.pt"))
            if states and state_id(states[0]) not in (None, before):
                break
            time.sleep(0.05)
        assert proc.poll() is None, f"ended before a resume state was written: {proc.stderr.read()[-2000:]}"
        time.sleep(delay)
        assert proc.poll() is None, f"ended before the kill: {proc.stderr.read()[-2000:]}"
        proc.kill()
        proc.communicate(timeout=60)
    again = run_script(script, [*TIMED_ARGS, "--out-dir", out, "--resume"], tmp_path, **TOKENS)
    assert again.returncode == 0, again.stderr[-2000:]
    epochs, steps, finals, test_acc, versions = record(tool, out)
    want_epochs, want_steps, want_versions, want_acc = timed_plain
    assert (epochs, steps, versions, finals) == (want_epochs, want_steps, want_versions, 1)
    assert test_acc == [want_acc]
