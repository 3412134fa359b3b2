"""Both scripts survive SIGINT, SIGTERM, NaN and faults, and `--resume` continues the same run
exactly: each epoch recorded once, equal to an uninterrupted run's values."""

import errno
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading

import pytest
import torch
import warm
from conftest import EACH_TOOL, NEPTUNE_TOKEN, ROOT, SMALL_MODEL, WANDB_KEY, clean_env, read_run, record, run_script

import alexnet
import data
import lifecycle
import trackers
from trackers import base, mlflow_record, neptune_record
from trackers.queued import Queued

COMPARED = ["epoch", "train/loss", "train/acc", "val/loss", "val/acc", "lr"]
TOKENS = {"WANDB_API_KEY": WANDB_KEY, "NEPTUNE_API_TOKEN": NEPTUNE_TOKEN}


def args(out, epochs=3, extra=()):
    return [
        "--mode",
        "offline",
        "--dataset",
        "synthetic",
        "--train-size",
        640,
        "--epochs",
        epochs,
        "--batch-size",
        64,
        "--seed",
        5,
        "--device",
        "cpu",
        "--out-dir",
        out,
        "--log-every",
        3,
        *SMALL_MODEL,
        *extra,
    ]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("plain")
    result = run_script("wandb_setup_script.py", args(out)[:1] + ["disabled"] + args(out)[2:], out)
    assert result.returncode == 0, result.stderr[-2000:]
    [run] = [d for d in os.listdir(out) if d[0].isdigit()]
    with open(out / run / "history.json") as f:
        return json.load(f)


def interrupt_in_epoch_2(script, out, signum, home):
    """Start the script, send `signum` to its process group once epoch 1 is logged, wait for it."""
    proc = warm.Popen(
        [sys.executable, script, *map(str, args(out))],
        cwd=ROOT,
        env=clean_env(home, **TOKENS),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )  # like a terminal's Ctrl-C: the whole group
    for line in proc.stdout:
        if line.startswith("epoch 1/3"):
            os.killpg(proc.pid, signum)
            break
    out_text, err_text = proc.communicate(timeout=120)
    return proc.returncode, err_text


def recorded_epochs(tool, out, segments):
    return [{k: e[k] for k in COMPARED} for e in read_run(tool, out, segments)["epochs"]]


def recorded_test_acc(tool, out, segments):
    return read_run(tool, out, segments)["summary"]["test/acc"]


@pytest.mark.parametrize("tool", [trackers.get("wandb")], ids=["wandb"])  # SIGINT and kill -9 for all: the chain below
def test_sigterm_then_resume_equals_an_uninterrupted_run(tool, uninterrupted, tmp_path):
    out, script = tmp_path / "D", tool.script
    code, err = interrupt_in_epoch_2(script, out, signal.SIGTERM, tmp_path)
    assert code == 143, err[-2000:]
    assert "Traceback" not in err and "--resume" in err
    resumed = run_script(script, args(out, extra=["--resume"]), tmp_path, **TOKENS)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming run" in resumed.stdout
    want = [{k: e[k] for k in COMPARED} for e in uninterrupted["epochs"]]
    assert recorded_epochs(tool, out, segments=2) == want  # each epoch once, same values
    assert recorded_test_acc(tool, out, segments=2) == uninterrupted["summary"]["test/acc"]
    [run] = [d for d in os.listdir(out) if d[0].isdigit()]
    with open(out / run / "history.json") as f:
        assert json.load(f)["summary"] == uninterrupted["summary"]
    assert not os.path.exists(out / run / "resume.pt")  # finished: nothing left to resume
    segments = read_run(tool, out, 2)["segments"]  # the segment's exit code is the signal's, as a shell's
    assert [s["end"] for s in segments] == ["exit code 143", "exit code 0"]


CHAIN_ARGS = [
    "--mode",
    "offline",
    "--dataset",
    "synthetic",
    "--train-size",
    284,
    "--epochs",
    3,
    "--batch-size",
    64,
    "--seed",
    5,
    "--device",
    "cpu",
    "--log-every",
    1,
    *SMALL_MODEL,
]


def test_hard_crash_before_any_state_says_nothing_to_continue_yet(tmp_path):
    crashed = run_script(
        "neptune_integration.py", [*CHAIN_ARGS, "--out-dir", tmp_path], tmp_path, fault=("step:2", "KILL")
    )
    assert crashed.returncode == -9
    nothing = run_script("neptune_integration.py", [*CHAIN_ARGS, "--out-dir", tmp_path, "--resume"], tmp_path)
    assert nothing.returncode == 2 and "nothing to continue yet" in nothing.stderr
    assert "Traceback" not in nothing.stderr


@EACH_TOOL
def test_second_signal_during_a_slow_finish_stops_waiting(tool, tmp_path):
    """The tracker's finish hangs (as an upload to a slow server would): the first Ctrl-C is
    noted, the second stops waiting, says where the records are, and exits non-zero."""
    script = tool.script
    proc = warm.Popen(
        [
            sys.executable,
            os.path.join(ROOT, "tests", "faults.py"),
            "slow-finish",
            "none",
            script,
            *map(str, CHAIN_ARGS),
            "--epochs",
            "1",
            "--out-dir",
            str(tmp_path),
        ],
        cwd=ROOT,
        env=clean_env(tmp_path, **TOKENS),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    for line in proc.stdout:
        if line.startswith("finishing slowly"):
            break
    proc.send_signal(signal.SIGINT)
    # Press again once the first is noted, as a user does: two signals that arrive before Python's
    # handler runs make one call of it (a loaded machine waited out the two minutes so).
    noted = []
    for line in proc.stderr:
        noted.append(line)
        if "stopping after this step" in line:
            break
    proc.send_signal(signal.SIGINT)
    out_text, err_text = proc.communicate(timeout=60)
    err_text = "".join(noted) + err_text
    assert proc.returncode == 130, err_text[-2000:]
    assert "stopped waiting" in err_text and "Traceback" not in err_text
    # where the record is, and the tool's command that shows or uploads it
    assert "saved offline in" in out_text and f"{tool.key} " in out_text.split("saved offline in")[1], out_text
    assert record(tool, tmp_path)[0] == [1]  # what was recorded before is there


@EACH_TOOL
def test_non_finite_loss_stops_and_marks_the_run_failed(tool, tmp_path):
    script = tool.script
    result = run_script(script, args(tmp_path, epochs=2, extra=["--lr", "1e6"]), tmp_path, **TOKENS)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "training loss became nan" in result.stderr.lower()
    assert result.stderr.strip().splitlines()[-1].startswith("error:")  # last, below the tracker's lines
    run = read_run(tool, tmp_path, segments=1)
    assert run["ended"] == "failed", run["segments"]  # W&B: exit code 1; Neptune: sys/failed; MLflow: FAILED


@EACH_TOOL
def test_full_disk_stops_cleanly_and_keeps_the_record(tool, tmp_path):
    script = tool.script
    # no file over 4 MB: the small model's first checkpoint (10 MB) is the first file it meets
    result = warm.run(
        [sys.executable, script, *map(str, args(tmp_path, epochs=1))],
        cwd=ROOT,
        env=clean_env(tmp_path, **TOKENS),
        capture_output=True,
        text=True,
        timeout=300,
        fsize=4 << 20,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert "cannot write" in result.stderr and "epoch_1.pt" in result.stderr
    epochs = recorded_epochs(tool, tmp_path, 1)
    assert [e["epoch"] for e in epochs] == [1]  # what was logged before the fault is all there


@pytest.fixture
def small_disk(tmp_path):
    """A 300 MB file system for --out-dir: it fills while a run writes its checkpoints. Unlike the
    file-size limit above, the whole disk fills: MLflow's SQLite store fails too."""
    mount = tmp_path / "disk"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=300m", "tmpfs", str(mount)], capture_output=True)
    if made.returncode != 0:
        pytest.skip("cannot mount a small file system here (needs root)")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


@EACH_TOOL
def test_a_full_disk_is_one_line(tool, small_disk, tmp_path):
    script = tool.script
    result = run_script(
        script,
        [
            "--mode",
            "offline",
            "--dataset",
            "synthetic",
            "--train-size",
            640,
            "--epochs",
            8,
            "--batch-size",
            64,
            "--device",
            "cpu",
            "--out-dir",
            small_disk / "runs",
            "--optimizer",
            "adam",
            "--lr",
            "3e-4",
            "--weight-decay",
            "0",
        ],
        tmp_path,
    )
    assert "Traceback" not in result.stderr + result.stdout
    assert result.returncode == 1, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and re.search(r"cannot write|could not write", last), last
    assert "disk" in last or "space" in last, last


def test_a_tracker_that_cannot_write_is_one_line_last(tmp_path, capsys):
    """Where no small disk can be mounted: a tracker whose record write fails as on a full disk."""

    closed = []

    class FullDisk(base.Disabled):
        name = "FullDisk"

        def log_epoch(self, metrics, step, checkpoint=None, state=None):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), os.path.join(self.run_dir, "record"))

        def finish(self, status, exit_code):
            closed.append((status, threading.current_thread().name))

    cfg = dict(alexnet.RECIPES["default"], hidden=256, epochs=2, batch_size=64, log_every=5, seed=0)
    ds = data.load("synthetic", None, train_size=256, val_fraction=0.1, seed=0)
    run_dir = str(tmp_path / "run")
    # As the scripts make their calls: on the logging thread, where the write fails.
    engine = alexnet.Engine(cfg, ds, Queued(FullDisk(None, run_dir)), torch.device("cpu"), run_dir)
    os.makedirs(run_dir)
    engine.save_state()  # as after the first minute of a run: the line says how to continue
    code = lifecycle.train(engine, engine.tracker, False)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and "Traceback" not in "\n".join(err)
    assert closed == [("failed", "FullDisk calls")]  # the run is closed, by its thread, as failed
    assert err[-1].startswith("error: FullDisk could not write its record: No space left on device (")
    assert "continue with:" in err[-1] and "--resume" in err[-1]
    assert os.path.exists(engine.state_path)  # the resume state is kept


@EACH_TOOL
def test_bad_resumes_are_refused_then_a_moved_run_resumes_from_its_own_files(tool, uninterrupted, tmp_path):
    """--resume with nothing to continue, with other flags and with a corrupt state is refused in one
    line; the stopped run's --out-dir is then moved with --moved-from (the old folder deleted) and
    resumed: it falls back to the state before the corrupt one, finishes from its own files, and
    records what an uninterrupted run records."""
    script = tool.script
    old, new = tmp_path / "old", tmp_path / "elsewhere" / "new"
    nothing = run_script(script, args(old, extra=["--resume"]), tmp_path, **TOKENS)
    assert nothing.returncode == 2 and "nothing to continue yet" in nothing.stderr and "Traceback" not in nothing.stderr
    code, _ = interrupt_in_epoch_2(script, old, signal.SIGINT, tmp_path)
    assert code == 130
    conflict = run_script(script, args(old, epochs=5, extra=["--resume"]), tmp_path, **TOKENS)
    assert conflict.returncode == 2 and "--epochs 5" in conflict.stderr and "Traceback" not in conflict.stderr
    [run] = [d for d in os.listdir(old) if d[0].isdigit()]
    state, previous = old / run / "resume.pt", old / run / "resume.previous.pt"
    good = state.read_bytes()
    state.write_bytes(good[:5000])
    previous.write_bytes(good[:5000])  # both unreadable
    corrupt = run_script(script, args(old, extra=["--resume"]), tmp_path, **TOKENS)
    assert corrupt.returncode == 2 and "truncated or corrupt" in corrupt.stderr
    assert "Traceback" not in corrupt.stderr
    previous.write_bytes(good)  # the state before the latest is kept: a corrupt latest falls back to it
    state.write_bytes(good[:5000])
    shutil.copytree(old, new, symlinks=True)
    shutil.rmtree(old)
    moved = run_script(script, ["--out-dir", new, "--moved-from", old], tmp_path)
    assert moved.returncode == 0, moved.stdout + moved.stderr
    resumed = run_script(script, args(new, extra=["--resume"]), tmp_path, **TOKENS)
    assert resumed.returncode == 0 and "resuming run" in resumed.stdout, resumed.stderr[-2000:]
    assert "continuing from the state saved before it" in resumed.stdout, resumed.stdout[-2000:]
    epochs, steps, finals, test_acc, _ = record(tool, new)
    assert (epochs, steps, finals) == ([1, 2, 3], [1, *range(3, 28, 3)], 1)  # each epoch and step once
    assert test_acc == [uninterrupted["summary"]["test/acc"]]
    assert not os.path.exists(old)


def test_resume_a_run_folder_outside_out_dir_continues_it_there(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    stopped = run_script(
        "neptune_integration.py", [*CHAIN_ARGS, "--out-dir", elsewhere], tmp_path, fault=("step:6", "INT")
    )
    assert stopped.returncode == 130, stopped.stderr[-2000:]
    [run] = [d for d in os.listdir(elsewhere) if d[0].isdigit()]
    pasted = stopped.stderr.split("continue with: ")[1].splitlines()[0]
    assert f"--resume {os.path.relpath(elsewhere / run, ROOT)}" in pasted and pasted.startswith(
        os.path.relpath(sys.executable, ROOT) if sys.executable.startswith(ROOT) else sys.executable
    )
    resumed = subprocess.run(
        pasted, shell=True, cwd=ROOT, env=clean_env(tmp_path), capture_output=True, text=True, timeout=300
    )  # the line as printed, pasted in the repository root
    assert resumed.returncode == 0 and "resuming run" in resumed.stdout, resumed.stderr[-2000:]
    assert sorted(os.listdir(elsewhere / run)) == ["architecture.txt", "checkpoints", "history.json", "source"]
    assert not os.path.exists(os.path.join(ROOT, "runs", run))  # not a new folder under the default --out-dir
    assert record(trackers.get("neptune"), elsewhere)[:2] == ([1, 2, 3], list(range(1, 13)))


def test_a_run_folder_is_trained_by_one_process_at_a_time(tmp_path):
    """Two --resume of one unfinished run at once: the second is refused in one line naming the
    first (exit 2) and records nothing; the first finishes with each epoch recorded once."""
    script = "neptune_integration.py"
    code, _ = interrupt_in_epoch_2(script, tmp_path, signal.SIGINT, tmp_path)
    assert code == 130
    [run] = [d for d in os.listdir(tmp_path) if d[0].isdigit()]
    first = warm.Popen(
        [sys.executable, script, *map(str, args(tmp_path, extra=["--resume", tmp_path / run]))],
        cwd=ROOT,
        env=clean_env(tmp_path),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    for line in first.stdout:
        if line.startswith("resuming run"):
            break
    # Held where it is (its lock with it) while the second starts: the small model's two epochs left
    # can end before a second process is up, and a finished run has nothing to refuse.
    first.send_signal(signal.SIGSTOP)
    try:
        second = run_script(script, args(tmp_path, extra=["--resume", tmp_path / run]), tmp_path)
    finally:
        first.send_signal(signal.SIGCONT)
    assert second.returncode == 2 and "Traceback" not in second.stderr, second.stderr[-2000:]
    [refusal] = second.stderr.strip().splitlines()
    assert f"is in use by pid {first.pid} on host " in refusal, refusal
    first.communicate(timeout=300)
    assert first.returncode == 0
    assert record(trackers.get("neptune"), tmp_path)[:2] == ([1, 2, 3], [1, *range(3, 28, 3)])
    assert len(neptune_record.folders(str(tmp_path))) == 2  # the run's two segments; the refused one made none
    assert sorted(os.listdir(tmp_path / run)) == ["architecture.txt", "checkpoints", "history.json", "source"]


def test_plain_resume_continues_the_newest_unfinished_run(tmp_path):
    """A newer finished run does not hide an older unfinished one."""
    code, _ = interrupt_in_epoch_2("wandb_setup_script.py", tmp_path, signal.SIGINT, tmp_path)
    assert code == 130
    [unfinished] = [d for d in os.listdir(tmp_path) if d[0].isdigit()]
    disabled = ["--mode", "disabled", *args(tmp_path)[2:]]
    assert run_script("wandb_setup_script.py", disabled, tmp_path).returncode == 0  # a newer run, finished
    resumed = run_script("wandb_setup_script.py", [*disabled, "--resume"], tmp_path)
    assert resumed.returncode == 0 and f"resuming run {unfinished}" in resumed.stdout, resumed.stderr[-2000:]


@pytest.mark.parametrize("n", [2, 4])
def test_mlflow_runs_started_together_into_a_new_folder_each_record_one_run(n, tmp_path):
    """The first runs into a new folder create MLflow's SQLite store together: its migrations race
    unless one process makes it while the others wait."""
    out = tmp_path / "new"
    procs = [
        warm.Popen(
            [sys.executable, "mlflow_tracking.py", *map(str, args(out, epochs=1))],
            cwd=ROOT,
            env=clean_env(tmp_path),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(n)
    ]
    errors = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * n, "\n".join(e[-1500:] for e in errors)
    assert not any("Traceback" in e for e in errors)
    client = mlflow_record.client(out)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert len(runs) == n and len({r.data.tags["run_id"] for r in runs}) == n
    assert all(r.info.status == "FINISHED" and r.data.metrics["epoch"] == 1 for r in runs)


def test_an_mlflow_run_that_loses_the_race_to_add_the_dataset_links_the_winners(tmp_path):
    """Runs started together into one folder each look the dataset up, find none and add it: the
    store keeps the first and refuses the others' (UNIQUE experiment, name, digest). Here another
    writer adds it between this run's lookup and its insert, every time (by chance it was 1 in 30
    four-run launches, two launches at a time on 2 cores, and two tests of one CI run)."""
    out = tmp_path / "out"
    result = run_script("mlflow_tracking.py", args(out, epochs=1), tmp_path, fault=("dataset-race", "INT"))
    assert result.returncode == 0 and "raced" in result.stdout, result.stderr
    assert "Traceback" not in result.stderr
    client = mlflow_record.client(out)
    [run] = client.search_runs([e.experiment_id for e in client.search_experiments()])
    [dataset] = [d.dataset for d in run.inputs.dataset_inputs]
    with sqlite3.connect(out / "mlflow.db") as db:
        stored = db.execute("SELECT name, digest FROM datasets").fetchall()
    assert stored == [(dataset.name, dataset.digest)]  # one copy: the other writer's
    assert run.info.status == "FINISHED" and run.data.metrics["epoch"] == 1


def test_step_metrics_mlflows_queue_failed_to_write_are_written_again(tmp_path):
    """MLflow's background queue reports a batch it could not write in a log line and goes on: the
    run writes it again before it records the epoch, so no step is missing."""
    out = tmp_path / "out"
    result = run_script("mlflow_tracking.py", args(out, epochs=2), tmp_path, fault=("metrics-lost", "INT"))
    assert result.returncode == 0 and "Failed to log run data" in result.stderr, result.stderr
    run = read_run(trackers.get("mlflow"), out)
    assert [s for s, _ in run["steps"]] == [1, 3, 6, 9, 12, 15, 18]
    assert [e["epoch"] for e in run["epochs"]] == [1, 2]
