"""Both scripts survive SIGINT, SIGTERM, NaN and faults, and `--resume` continues the same run
exactly: each epoch recorded once, equal to an uninterrupted run's values."""
import glob
import json
import os
import resource
import signal
import subprocess
import sys

import pytest

from conftest import (NEPTUNE_TOKEN, ROOT, SCRIPTS, WANDB_KEY, clean_env, neptune_assigned, neptune_ops,
                      neptune_series, run_script, wandb_epochs, wandb_records)

COMPARED = ["epoch", "train/loss", "train/acc", "val/loss", "val/acc", "lr"]
TOKENS = {"WANDB_API_KEY": WANDB_KEY, "NEPTUNE_API_TOKEN": NEPTUNE_TOKEN}


def args(out, epochs=3, extra=()):
    return ["--mode", "offline", "--dataset", "synthetic", "--train-size", 640, "--epochs", epochs,
            "--batch-size", 64, "--seed", 5, "--device", "cpu", "--out-dir", out, "--log-every", 3, *extra]


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
    proc = subprocess.Popen([sys.executable, script, *map(str, args(out))], cwd=ROOT, env=clean_env(home, **TOKENS),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)  # like a terminal's Ctrl-C: the whole group
    for line in proc.stdout:
        if line.startswith("epoch 1/3"):
            os.killpg(proc.pid, signum)
            break
    out_text, err_text = proc.communicate(timeout=120)
    return proc.returncode, err_text


def recorded_epochs(script, out, segments):
    if script == "wandb_setup_script.py":
        return [{k: e[k] for k in COMPARED} for e in wandb_epochs(wandb_records(str(out), segments))]
    ops = neptune_ops(str(out), segments)
    series = {k: neptune_series(ops, k) for k in COMPARED}
    return [{k: series[k][i][1] for k in COMPARED} for i in range(len(series["epoch"]))]


def recorded_test_acc(script, out, segments):
    if script == "wandb_setup_script.py":
        last = sorted(glob.glob(os.path.join(out, "wandb", "offline-run-*", "*.wandb")))[segments - 1]
        wandb_cli = os.path.join(os.path.dirname(sys.executable), "wandb")
        state = subprocess.run([wandb_cli, "leet", "inspect", "--summary", "--json", last],
                               capture_output=True, text=True, check=True)
        return json.loads(state.stdout)["summary"]["test/acc"]
    return neptune_assigned(neptune_ops(str(out), segments), "test/acc")


@pytest.mark.parametrize("script", SCRIPTS)
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_then_resume_equals_an_uninterrupted_run(script, signum, uninterrupted, tmp_path):
    out = tmp_path / "D"
    code, err = interrupt_in_epoch_2(script, out, signum, tmp_path)
    assert code == 128 + signum, err[-2000:]
    assert "Traceback" not in err and "--resume" in err
    resumed = run_script(script, args(out, extra=["--resume"]), tmp_path, **TOKENS)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming run" in resumed.stdout
    want = [{k: e[k] for k in COMPARED} for e in uninterrupted["epochs"]]
    assert recorded_epochs(script, out, segments=2) == want  # each epoch once, same values
    assert recorded_test_acc(script, out, segments=2) == uninterrupted["summary"]["test/acc"]
    [run] = [d for d in os.listdir(out) if d[0].isdigit()]
    with open(out / run / "history.json") as f:
        assert json.load(f)["summary"] == uninterrupted["summary"]
    assert not os.path.exists(out / run / "resume.pt")  # finished: nothing left to resume


@pytest.mark.parametrize("script", SCRIPTS)
def test_non_finite_loss_stops_and_marks_the_run_failed(script, tmp_path):
    result = run_script(script, args(tmp_path, epochs=2, extra=["--lr", "1e6"]), tmp_path, **TOKENS)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "training loss became nan" in result.stderr.lower()
    if script == "wandb_setup_script.py":
        [exit_record] = [r["exit"] for r in wandb_records(str(tmp_path)) if r["type"] == "exit"]
        assert exit_record["exit_code"] == 1
    else:
        ops = neptune_ops(str(tmp_path))
        assert neptune_assigned(ops, "sys/failed") is True and neptune_assigned(ops, "status") == "failed"


@pytest.mark.parametrize("script", SCRIPTS)
def test_full_disk_stops_cleanly_and_keeps_the_record(script, tmp_path):
    limit = lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (20 << 20, 20 << 20))  # noqa: E731
    result = subprocess.run([sys.executable, script, *map(str, args(tmp_path, epochs=1))], cwd=ROOT,
                            env=clean_env(tmp_path, **TOKENS), capture_output=True, text=True, timeout=300,
                            preexec_fn=limit, stdin=subprocess.DEVNULL)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert "cannot write" in result.stderr and "epoch_1.pt" in result.stderr
    epochs = recorded_epochs(script, tmp_path, 1)
    assert [e["epoch"] for e in epochs] == [1]  # what was logged before the fault is all there


@pytest.mark.parametrize("script", SCRIPTS)
def test_resume_bad_inputs(script, tmp_path):
    nothing = run_script(script, args(tmp_path, extra=["--resume"]), tmp_path, **TOKENS)
    assert nothing.returncode == 2 and "no unfinished run" in nothing.stderr and "Traceback" not in nothing.stderr
    code, _ = interrupt_in_epoch_2(script, tmp_path, signal.SIGINT, tmp_path)
    assert code == 130
    conflict = run_script(script, args(tmp_path, epochs=5, extra=["--resume"]), tmp_path, **TOKENS)
    assert conflict.returncode == 2 and "--epochs 5" in conflict.stderr and "Traceback" not in conflict.stderr
    [run] = [d for d in os.listdir(tmp_path) if d[0].isdigit()]
    state = tmp_path / run / "resume.pt"
    state.write_bytes(state.read_bytes()[:5000])
    corrupt = run_script(script, args(tmp_path, extra=["--resume"]), tmp_path, **TOKENS)
    assert corrupt.returncode == 2 and "truncated or corrupt" in corrupt.stderr
    assert "Traceback" not in corrupt.stderr
