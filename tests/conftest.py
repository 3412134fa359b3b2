"""Shared fixtures: a CIFAR-10 copy in the official on-disk format, script runners, and each tool's
record read the same way, through its record reader (the registry's)."""

import math
import os
import pickle
import pty
import signal
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "report"))

import torch  # noqa: E402
import warm  # noqa: E402

import data  # noqa: E402
import trackers  # noqa: E402

torch.set_num_threads(1)  # the engine trained inside a worker: one thread each, as the scripts' processes

TOOLS = trackers.TOOLS
SCRIPTS = [tool.script for tool in TOOLS]
EACH_TOOL = pytest.mark.parametrize("tool", TOOLS, ids=[tool.key for tool in TOOLS])
WANDB_KEY = "wandbfakekey" + "0123456789abcdef" * 3  # W&B wants 40+ characters
NEPTUNE_TOKEN = "neptunefaketoken" + "fedcba9876543210" * 3
NO_NETWORK = {
    "http_proxy": "http://127.0.0.1:9",
    "https_proxy": "http://127.0.0.1:9",
    "HTTP_PROXY": "http://127.0.0.1:9",
    "HTTPS_PROXY": "http://127.0.0.1:9",
    "no_proxy": "",
}


def write_cifar_batches(folder, per_batch=80, test_size=100, seed=0):
    """Learnable synthetic images written exactly as the official cifar-10-batches-py files."""
    (x, y), (xt, yt), _ = data.synthetic(5 * per_batch, test_size, seed=seed)
    dst = os.path.join(folder, data.BATCH_DIR)
    os.makedirs(dst, exist_ok=True)

    def dump(name, images, labels):
        with open(os.path.join(dst, name), "wb") as f:
            pickle.dump(
                {
                    "batch_label": name,
                    "labels": labels.tolist(),
                    "data": images.reshape(len(images), 3072).numpy(),
                    "filenames": [f"{i}.png" for i in range(len(labels))],
                },
                f,
                protocol=2,
            )

    for i in range(5):
        s = slice(i * per_batch, (i + 1) * per_batch)
        dump(f"data_batch_{i + 1}", x[s], y[s])
    dump("test_batch", xt, yt)
    return folder


@pytest.fixture(scope="session")
def cifar_dir(tmp_path_factory):
    return write_cifar_batches(str(tmp_path_factory.mktemp("cifar")))


def clean_env(home, **extra):
    """The environment of a user with an empty home and no tracker credentials."""
    # Without PYTEST_CURRENT_TEST: MLflow turns its telemetry (a file under home) off under pytest.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(tuple(f"{tool.key.upper()}_" for tool in TOOLS))
        and k not in ("MPLCONFIGDIR", "PYTEST_CURRENT_TEST")
    }
    # One thread a process: the suite runs two workers on two cores, and each process's default of a
    # thread per core made them contend (a run here took 28 s instead of 16 s, at twice the CPU).
    env.update(HOME=str(home), PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1", **NO_NETWORK)
    env.update(extra)
    return env


def run_script(script, args, home, timeout=300, fresh=False, fault=(), **env):
    """The script run as a user would; with fault=(PHASE, SIGNAL), under tests/faults.py."""
    command = [os.path.join(ROOT, "tests", "faults.py"), *fault, script] if fault else [os.path.join(ROOT, script)]
    return warm.run(
        [sys.executable, *command, *map(str, args)],
        cwd=ROOT,
        env=clean_env(home, **env),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        fresh=fresh,
    )


# Adam at 3e-4 learns the fixture within its 6-step epochs, so runs keep several best checkpoints.
LEARNS_QUICKLY = ["--optimizer", "adam", "--lr", "3e-4", "--weight-decay", "0"]
# The study's convolutions with a narrow classifier: 2.6 M parameters instead of 23.3 M, 10 MB
# checkpoints instead of 93 MB. Tests of what a run does (resume, faults, clusters, search, export)
# train it; tests of what the study's model records keep the full one.
SMALL_MODEL = ["--hidden", 256]


def quick_args(cifar_dir, out_dir, epochs=2, seed=5, extra=()):
    return [
        "--mode",
        "offline",
        "--data-dir",
        cifar_dir,
        "--skip-checksum",
        "--epochs",
        epochs,
        "--batch-size",
        64,
        "--seed",
        seed,
        "--device",
        "cpu",
        "--out-dir",
        out_dir,
        "--log-every",
        2,
        *LEARNS_QUICKLY,
        *extra,
    ]


def read_run(tool, out_dir, segments=None):
    """The tool's record of the run in out_dir (all its segments), read by its record reader; with
    `segments`, the record must hold that many."""
    run = tool.reader.read_run(str(out_dir))
    if segments is not None:
        assert len(run["segments"]) == segments, run["segments"]
    return run


def record(tool, out_dir):
    """Epochs, per-step steps, final model versions, test accuracy and the epochs of the other model
    versions (each as often as recorded) in the tool's record of one run, all segments."""
    run = read_run(tool, out_dir)
    assert run["runs"] == 1, run["runs"]
    return (
        [int(e["epoch"]) for e in run["epochs"]],
        [int(s) for s, _ in run["steps"]],
        sum(m["final"] for m in run["models"]),
        run["test_acc"],
        sorted(int(m["epoch"]) for m in run["models"] if not m["final"]),
    )


def best_epochs(history):
    """The epochs whose validation accuracy beat every one before (each a model version), from the
    engine's own history of the run (history.json): derived from the run, as the CPU computed it."""
    best, found = -1.0, []
    for e in history["epochs"]:
        if math.isfinite(e["train/loss"]) and e["val/acc"] > best:
            best, found = e["val/acc"], [*found, e["epoch"]]
    return found


def mistakes_shown(summary, test_images, most=25):
    """How many most confident mistakes a run shows: its wrong test predictions, at most 25."""
    return min(most, round((1 - summary["test/acc"]) * test_images))


def files_containing(root, secret):
    hits = []
    for folder, _, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            try:
                with open(path, "rb") as f:
                    if secret.encode() in f.read():
                        hits.append(path)
            except OSError:
                pass
    return hits


def answer_prompt(args, home, prompt, answer, timeout=120, more=(), **env):
    """Run a script on a pseudo-terminal, type `answer` at `prompt` (then each (prompt, answer) of
    `more` in turn); its exit code, screen, and seconds."""
    pid, fd = pty.fork()
    if pid == 0:
        os.chdir(ROOT)
        os.execve(sys.executable, [sys.executable, *map(str, args)], clean_env(home, **env))
    todo, screen, seen, start = [(prompt, answer), *more], b"", 0, time.time()
    while time.time() - start < timeout:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        screen += chunk
        if todo and todo[0][0].encode() in screen[seen:]:
            os.write(fd, todo.pop(0)[1].encode() + b"\n")
            seen = len(screen)
    while True:  # still running after the timeout: a hang is a failure, not a wait
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.time() - start > timeout:
            os.kill(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
            break
        time.sleep(0.2)
    assert not todo, screen.decode(errors="replace")
    return os.waitstatus_to_exitcode(status), screen.decode(errors="replace"), time.time() - start


# Every file, the slowest first (worker-seconds in a full run on 2 Intel Xeon cores, at a565c66):
# with one file to a worker (`--dist loadfile --no-loadscope-reorder`), the two workers then end
# close together instead of one running a slow file alone for the last minutes. A file not listed
# runs last.
SLOWEST_FIRST = [
    "test_faults.py",  # 548 s
    "test_search.py",  # 485 s
    "test_cluster.py",  # 359 s
    "test_resume.py",  # 321 s
    "test_ddp.py",  # 222 s
    "test_mlflow_script.py",  # 135 s
    "test_report.py",  # 102 s
    "test_settings.py",  # 94 s
    "test_training.py",  # 87 s
    "test_neptune_export.py",  # 84 s
    "test_wandb_script.py",  # 78 s
    "test_costs.py",  # 54 s
    "test_neptune_script.py",  # 52 s
    "test_trackio_script.py",  # 49 s
    "test_benchmarks.py",  # 36 s
    "test_docs.py",  # 31 s
    "test_portability.py",  # 29 s
    "test_cli.py",  # 19 s
    "test_model.py",
    "test_data.py",
    "test_queued.py",
    "test_registry.py",
    "test_durable.py",
]


def pytest_collection_modifyitems(items):
    def rank(item):
        name = os.path.basename(str(item.path))
        return SLOWEST_FIRST.index(name) if name in SLOWEST_FIRST else len(SLOWEST_FIRST)

    items.sort(key=rank)  # stable: each file's tests keep their order
