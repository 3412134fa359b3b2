"""On a cluster: a torchrun restart and a scheduler's requeue continue the same tracked run with one
command line (`--resume auto`), and a resumed run brings its own flags back."""

import glob
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest
import warm
from collect import kill_in_epoch_2
from conftest import EACH_TOOL, ROOT, SMALL_MODEL, best_epochs, clean_env, record, run_script
from test_resume import TOKENS

import trackers

ARGS = [
    "--mode",
    "offline",
    "--dataset",
    "synthetic",
    "--train-size",
    1024,
    "--epochs",
    3,
    "--batch-size",
    128,
    "--seed",
    5,
    "--device",
    "cpu",
    "--log-every",
    2,
    *SMALL_MODEL,
]
STEPS = [1, *range(2, 25, 2)]  # 922 training images over 2 processes: 8 global steps an epoch, every 2nd logged


def torchrun(nproc, *launch):
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), *launch]


def history(out):
    [path] = glob.glob(os.path.join(out, "*", "history.json"))
    with open(path) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    """An uninterrupted two-process launch of the same flags (no tracker): what a restarted one must equal."""
    out = tmp_path_factory.mktemp("two-processes")
    result = subprocess.run(
        [
            *torchrun(2, "--standalone"),
            "wandb_setup_script.py",
            *map(str, ARGS),
            "--mode",
            "disabled",
            "--out-dir",
            out,
        ],
        cwd=ROOT,
        env=clean_env(out),
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return history(out)


def assert_one_run_equal_to(tool, out, want, outputs):
    epochs, steps, finals, test_acc, versions = record(tool, out)
    assert (epochs, steps, versions, finals) == ([1, 2, 3], STEPS, best_epochs(want), 1)
    assert test_acc == [want["summary"]["test/acc"]]  # exact: the restart continued the same computation
    assert len([d for d in os.listdir(out) if d[0].isdigit()]) == 1  # one run folder: no second run begun
    for text in outputs:
        assert "Traceback" not in text, text[-3000:]


@EACH_TOOL
def test_a_torchrun_restart_continues_the_same_tracked_run(tool, two_processes, tmp_path):
    script = tool.script
    out = tmp_path / "D"
    launch = subprocess.Popen(
        [
            *torchrun(2, "--standalone", "--max-restarts", "1"),
            script,
            *map(str, ARGS),
            "--resume",
            "auto",
            "--out-dir",
            out,
        ],
        cwd=ROOT,
        env=clean_env(tmp_path, **TOKENS),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    kill_in_epoch_2(out, [launch])
    stdout, stderr = launch.communicate(timeout=600)
    assert launch.returncode == 0, stderr[-3000:]
    assert "rank 0: lost a peer; torchrun will restart from the resume state" in stderr, stderr[-3000:]
    assert "resuming run" in stdout and "from step 8 (epoch 2)" in stdout, stdout[-3000:]
    assert_one_run_equal_to(tool, out, two_processes, [stdout, stderr])


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_restart_on_two_nodes_continues_the_same_tracked_run(two_processes, tmp_path):
    """Two launches of one process each on 127.0.0.1 stand in for two machines; the worker of rank 0
    (the one holding the tracker's run) is killed, and both launches start again and go on."""
    tool, out = trackers.get("wandb"), tmp_path / "D"
    script = tool.script
    nodes = [
        "--nnodes",
        "2",
        "--rdzv_backend",
        "c10d",
        "--rdzv_endpoint",
        f"127.0.0.1:{free_port()}",
        "--rdzv_id",
        "job",
        "--max-restarts",
        "1",
    ]
    # One thread a process, as torchrun sets for the two-process launch it is compared with (it leaves
    # a single process per launch to the machine's count, and other rounding takes another course).
    env = clean_env(tmp_path, OMP_NUM_THREADS="1", **TOKENS)
    launches = [
        subprocess.Popen(
            [*torchrun(1, *nodes), script, *map(str, ARGS), "--resume", "auto", "--out-dir", out],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        for _ in range(2)
    ]
    try:
        kill_in_epoch_2(out, launches, rank=0)
        outputs = [text for launch in launches for text in launch.communicate(timeout=600)]
    finally:  # a launch left waiting for the other would keep its workers: end both whole
        for launch in launches:
            if launch.poll() is None:
                os.killpg(launch.pid, signal.SIGKILL)
    assert [launch.returncode for launch in launches] == [0, 0], outputs
    assert "rank 1: lost a peer; torchrun will restart from the resume state" in "".join(outputs)
    assert_one_run_equal_to(tool, out, two_processes, outputs)


def test_sigterm_saves_the_state_and_the_same_command_continues(tmp_path):
    """What Slurm and Kubernetes send before a kill: the resume state is saved, exit 143 (128 + 15),
    and the same command line (--resume auto) continues the run."""
    tool, out = trackers.get("mlflow"), tmp_path / "D"
    script = tool.script
    argv = [*map(str, ARGS), "--resume", "auto", "--out-dir", str(out)]
    plain = run_script(script, [*ARGS, "--out-dir", tmp_path / "plain"], tmp_path)
    assert plain.returncode == 0, plain.stderr[-2000:]
    proc = warm.Popen(
        [sys.executable, script, *argv],
        cwd=ROOT,
        env=clean_env(tmp_path),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    for line in proc.stdout:
        if line.startswith("epoch 1/3"):
            time.sleep(1)  # mid-epoch 2
            proc.send_signal(signal.SIGTERM)
            break
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 143 and "Traceback" not in stderr, stderr[-2000:]
    [state] = glob.glob(str(out / "*" / "resume.pt"))
    again = run_script(script, argv, tmp_path)
    assert again.returncode == 0 and "resuming run" in again.stdout, again.stderr[-2000:]
    assert not os.path.exists(state)
    epochs, steps, finals, test_acc, _ = record(tool, out)
    assert (epochs, steps, finals) == ([1, 2, 3], STEPS, 1)
    assert test_acc == record(tool, tmp_path / "plain")[3]


def test_auto_starts_a_new_run_where_none_is_unfinished(tmp_path):
    first = run_script(
        "wandb_setup_script.py",
        [*ARGS, "--mode", "disabled", "--epochs", 1, "--resume", "auto", "--out-dir", tmp_path / "D"],
        tmp_path,
    )
    assert first.returncode == 0 and "resuming" not in first.stdout, first.stderr[-2000:]
    second = run_script(
        "wandb_setup_script.py",
        [*ARGS, "--mode", "disabled", "--epochs", 1, "--resume", "auto", "--out-dir", tmp_path / "D"],
        tmp_path,
    )
    assert second.returncode == 0 and "resuming" not in second.stdout  # the first finished: a new run
    assert len([d for d in os.listdir(tmp_path / "D") if d[0].isdigit()]) == 2


def test_resume_alone_brings_back_the_runs_own_flags(tmp_path):
    """Started with its flags, stopped after epoch 1, continued with only --mode offline --resume
    RUN_DIR: it finishes with its own settings, recording what an uninterrupted run records."""
    tool, out = trackers.get("neptune"), tmp_path / "D"
    script = tool.script
    plain = run_script(script, [*ARGS, "--out-dir", tmp_path / "plain"], tmp_path)
    assert plain.returncode == 0, plain.stderr[-2000:]
    proc = warm.Popen(
        [sys.executable, script, *map(str, ARGS), "--out-dir", str(out)],
        cwd=ROOT,
        env=clean_env(tmp_path),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    for line in proc.stdout:
        if line.startswith("epoch 1/3"):
            proc.send_signal(signal.SIGINT)
            break
    proc.communicate(timeout=300)
    assert proc.returncode == 130
    [run] = [d for d in os.listdir(out) if d[0].isdigit()]
    resumed = run_script(script, ["--mode", "offline", "--resume", out / run], tmp_path)
    assert resumed.returncode == 0 and "resuming run" in resumed.stdout, resumed.stderr[-2000:]
    assert record(tool, out) == record(tool, tmp_path / "plain")


def requeue_decision(last):
    """What docs/clusters.md's Slurm script does after torchrun, given `.last-exit` (None: no file):
    its own lines, run by bash with scontrol stubbed; (its exit status, whether it requeued)."""
    with open(os.path.join(ROOT, "docs", "clusters.md")) as f:
        page = f.read()
    script = page.split("# requeue: begin\n", 1)[1].split("# requeue: end", 1)[0]
    script = "\n".join(line[4:] for line in script.splitlines())  # the doc's indentation
    with tempfile.TemporaryDirectory() as out:
        if last is not None:
            with open(os.path.join(out, ".last-exit"), "w") as f:
                f.write(f"{last}\n")
        stub = f"scontrol() {{ echo requeued >> {out}/requeued; }}\nout={out}\nSLURM_JOB_ID=1\n"
        result = subprocess.run(["bash", "-c", stub + script], capture_output=True, text=True)
        return result.returncode, os.path.exists(os.path.join(out, "requeued"))


@pytest.mark.parametrize(
    "last,requeued",
    [
        ("0", False),
        ("143", True),
        ("130", True),
        ("75", True),
        ("running", True),
        ("1", False),
        ("2", False),
        (None, False),
    ],
)
def test_the_documented_job_script_requeues_exactly_what_can_continue(last, requeued):
    code, did = requeue_decision(last)
    assert did == requeued and (code == 0) == (last == "0")


def test_sigterm_to_torchrun_itself_then_the_requeued_job_finishes_the_run(tmp_path):
    """Slurm signals the job step: torchrun gets SIGTERM, passes it on, and exits with a status of
    its own; `.last-exit` says 143 (continue), and the requeued job's same command line finishes the
    run, recording each epoch and model version once."""
    tool, out = trackers.get("neptune"), tmp_path / "D"
    command = [*torchrun(1, "--standalone"), tool.script, *map(str, ARGS), "--resume", "auto", "--out-dir", str(out)]
    launch = subprocess.Popen(
        command,
        cwd=ROOT,
        env=clean_env(tmp_path),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        for line in launch.stdout:
            if line.startswith("epoch 1/3"):
                launch.send_signal(signal.SIGTERM)  # to torchrun alone
                break
        _, stderr = launch.communicate(timeout=300)
    finally:
        if launch.poll() is None:
            os.killpg(launch.pid, signal.SIGKILL)
    assert launch.returncode != 0, stderr[-3000:]  # torchrun's own status: 1 on 2.14, not the workers' 143
    assert (out / ".last-exit").read_text() == "143\n", stderr[-3000:]
    assert requeue_decision("143") == (1, True)
    again = subprocess.run(
        command,
        cwd=ROOT,
        env=clean_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
    )
    assert again.returncode == 0 and "resuming run" in again.stdout, again.stderr[-3000:]
    assert (out / ".last-exit").read_text() == "0\n"
    epochs, steps, finals, _, versions = record(tool, out)
    assert (epochs, steps, finals) == ([1, 2, 3], STEPS, 1) and len(versions) == len(set(versions))
