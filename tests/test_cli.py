"""Every user mistake ends in one clear line and a non-zero exit, never a traceback, for both scripts."""
import errno
import importlib
import os
import re
import subprocess

import pytest
import torch

import tracking
from conftest import ROOT, SCRIPTS, run_script

BAD_FLAGS = [
    (["--epochs", "0"], "--epochs"),
    (["--batch-size", "-4"], "--batch-size"),
    (["--lr", "0"], "--lr"),
    (["--val-fraction", "1.5"], "--val-fraction"),
    (["--val-fraction", "0"], "--val-fraction"),
    (["--device", "tpu"], "--device"),
    (["--dataset", "imagenet"], "--dataset"),
    (["--mode", "cloud"], "--mode"),
    (["--epochs", "many"], "--epochs"),
    (["--optimizer", "lamb"], "--optimizer"),
    (["--weight-decay", "-0.1"], "--weight-decay"),
]


def assert_one_line_error(result, code, *needles):
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if "error" in line.lower()]
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.mark.parametrize("script", SCRIPTS)
@pytest.mark.parametrize("flags,needle", BAD_FLAGS)
def test_bad_flag_exits_2(script, flags, needle, capsys):
    """In-process: the script's own main() with a bad flag (the subprocess cases below cover the rest)."""
    module = importlib.import_module(script[:-3])
    with pytest.raises(SystemExit) as stop:
        module.main(["--mode", "offline", "--dataset", "synthetic", *flags])
    err = capsys.readouterr().err
    assert_one_line_error(subprocess.CompletedProcess([], stop.value.code, "", err), 2, needle)


@pytest.mark.parametrize("script", SCRIPTS)
def test_cuda_requested_but_absent(script, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    result = run_script(script, ["--mode", "offline", "--dataset", "synthetic", "--device", "cuda"], tmp_path)
    assert_one_line_error(result, 2, "--device cuda")


@pytest.mark.parametrize("script", SCRIPTS)
def test_unwritable_out_dir(script, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = run_script(script, ["--mode", "offline", "--dataset", "synthetic", "--out-dir", blocker / "runs"],
                        tmp_path)
    assert_one_line_error(result, 2, "--out-dir", "not writable")


@pytest.mark.parametrize("script", SCRIPTS)
def test_empty_data_dir_without_network(script, tmp_path):
    empty = tmp_path / "data"
    empty.mkdir()
    result = run_script(script, ["--mode", "offline", "--data-dir", empty, "--out-dir", tmp_path / "runs"],
                        tmp_path, timeout=120)
    assert_one_line_error(result, 2, "cifar-10-python.tar.gz", "--dataset synthetic")
    records = {"wandb", ".neptune", "mlflow.db", "mlartifacts"}  # no run folder, no tracker run for a run that never started
    assert [d for d in os.listdir(tmp_path / "runs") if d[0].isdigit() or d in records] == []


@pytest.mark.parametrize("script", SCRIPTS)
def test_unverified_copy_names_skip_checksum(script, cifar_dir, tmp_path):
    result = run_script(script, ["--mode", "offline", "--data-dir", cifar_dir, "--out-dir", tmp_path / "runs"],
                        tmp_path)
    assert_one_line_error(result, 2, "--skip-checksum")


@pytest.mark.parametrize("script,needles", [
    ("wandb_setup_script.py", ["WANDB_API_KEY", "--mode offline"]),
    ("neptune_integration.py", ["NEPTUNE_API_TOKEN", "--mode offline"]),
])
def test_online_without_token_or_terminal(script, needles, tmp_path):
    """Credentials are checked before the data is loaded: no data here, and the key is what is missing."""
    result = run_script(script, ["--mode", "online", "--project", "ws/proj", "--data-dir", tmp_path / "no-data",
                                 "--out-dir", tmp_path / "runs"], tmp_path)
    assert_one_line_error(result, 2, *needles)


def test_neptune_malformed_project(tmp_path):
    result = run_script("neptune_integration.py", ["--mode", "online", "--project", "no-slash",
                                                   "--dataset", "synthetic", "--out-dir", tmp_path / "runs"],
                        tmp_path, NEPTUNE_API_TOKEN="x")
    assert_one_line_error(result, 2, "workspace/project", "no-slash")


def test_every_script_has_exactly_the_flags_the_readme_documents(tmp_path):
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    table = readme[readme.index("\n## Flags"):].split("\n## ")[1]
    documented = {flag for line in table.splitlines() if line.startswith("|") for flag in re.findall(r"`(--[a-z-]+)", line)}
    for script in SCRIPTS:
        result = run_script(script, ["--help"], tmp_path)
        flags = set(re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", result.stdout)) - {"--help"}
        assert result.returncode == 0 and flags == documented, (script, flags ^ documented)


@pytest.fixture
def small_disk(tmp_path):
    """A 300 MB file system for --out-dir: it fills while a run writes its checkpoints."""
    mount = tmp_path / "disk"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=300m", "tmpfs", str(mount)], capture_output=True)
    if made.returncode != 0:
        pytest.skip("cannot mount a small file system here (needs root)")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_full_disk_is_one_line(script, small_disk, tmp_path):
    result = run_script(script, ["--mode", "offline", "--dataset", "synthetic", "--train-size", 640, "--epochs", 8,
                                 "--batch-size", 64, "--device", "cpu", "--out-dir", small_disk / "runs",
                                 "--optimizer", "adam", "--lr", "3e-4", "--weight-decay", "0"], tmp_path)
    assert "Traceback" not in result.stderr + result.stdout
    assert result.returncode == 1, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and re.search(r"cannot write|could not write", last), last
    assert "disk" in last or "space" in last, last


def test_a_tracker_that_cannot_write_is_one_line_last(tmp_path, capsys):
    """Where no small disk can be mounted: a tracker whose record write fails as on a full disk."""
    class FullDisk(tracking.Tracker):
        name = "FullDisk"

        def log_epoch(self, metrics, step, checkpoint):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), os.path.join(self.run_dir, "record"))

    import alexnet
    import data
    cfg = dict(alexnet.RECIPES["default"], epochs=2, batch_size=64, log_every=5, seed=0)
    ds = data.load("synthetic", None, train_size=256, val_fraction=0.1, seed=0)
    run_dir = str(tmp_path / "run")
    engine = alexnet.Engine(cfg, ds, FullDisk(None, run_dir), torch.device("cpu"), run_dir)
    os.makedirs(run_dir)
    engine.save_state()  # as after the first minute of a run: the line says how to continue
    code = tracking.train(engine, engine.tracker, False)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and "Traceback" not in "\n".join(err)
    assert err[-1].startswith("error: FullDisk could not write its record: No space left on device (")
    assert "continue with:" in err[-1] and "--resume" in err[-1]
    assert os.path.exists(engine.state_path)  # the resume state is kept
