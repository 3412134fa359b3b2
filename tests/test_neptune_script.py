"""A real offline Neptune run, read back from its operation log (JSON lines under .neptune/)."""

import hashlib
import json
import os

import pytest
from conftest import (
    NEPTUNE_TOKEN,
    WANDB_KEY,
    answer_prompt,
    best_epochs,
    files_containing,
    mistakes_shown,
    quick_args,
    read_run,
    run_script,
)

import alexnet
import trackers
from trackers.neptune_record import assigned as neptune_assigned
from trackers.neptune_record import folders, run_operations
from trackers.neptune_record import series as neptune_series

EPOCH_KEYS = ["epoch", "train/loss", "train/acc", "val/loss", "val/acc", "lr", "epoch_time_s", "throughput_img_s"]


@pytest.fixture(scope="module")
def offline_run(cifar_dir, tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    out = tmp_path_factory.mktemp("runs")
    result = run_script(
        "neptune_integration.py",
        quick_args(cifar_dir, out, epochs=3),
        home,
        fresh=True,
        NEPTUNE_API_TOKEN=NEPTUNE_TOKEN,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    [run_dir] = [d for d in os.listdir(out) if d[0].isdigit()]
    with open(out / run_dir / "history.json") as f:
        history = json.load(f)
    assert len(folders(str(out))) == 1  # one segment
    return dict(result=result, home=home, out=out, ops=run_operations(str(out)), history=history)


def test_every_epoch_equals_the_engine_history(offline_run):
    engine = offline_run["history"]["epochs"]
    for key in EPOCH_KEYS:
        assert neptune_series(offline_run["ops"], key) == [
            (e["epoch"], pytest.approx(e[key], rel=1e-12)) for e in engine
        ], key
    steps = neptune_series(offline_run["ops"], "train/batch_loss")
    assert [s for s, _ in steps] == [1, *range(2, 3 * 6 + 1, 2)]


def test_parameters_dataset_and_model_info(offline_run):
    ops, cfg = offline_run["ops"], offline_run["history"]["config"]
    for key in ("epochs", "batch_size", "lr", "seed", "val_fraction", "log_every", "recipe", "model_params"):
        assert neptune_assigned(ops, f"parameters/{key}") == cfg[key], key
    assert neptune_assigned(ops, "parameters/tags") == "[]"  # lists are stringified
    assert neptune_assigned(ops, "dataset/version") == cfg["dataset_version"]
    assert neptune_assigned(ops, "model/params") == 23_272_266
    tracked = [op for op in ops if op["type"] == "TrackFilesToArtifact"]
    assert {"/".join(op["path"]) for op in tracked} == {"dataset/files"}
    assert sorted(os.path.basename(path) for op in tracked for path, _ in op["entries"]) == sorted(
        [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    )
    uploads = {"/".join(op["path"]): op for op in ops if op["type"] == "UploadFile"}
    assert uploads["model/architecture"]["file_path"].endswith("architecture.txt")


def test_checkpoint_versions_are_distinct_files_that_later_ones_leave_alone(offline_run):
    ops = offline_run["ops"]
    versions = {
        "/".join(op["path"]): op["file_path"]
        for op in ops
        if op["type"] == "UploadFile" and op["path"][:2] == ["model", "checkpoints"]
    }
    bests = best_epochs(offline_run["history"])  # a version per new best epoch, and the final one
    assert set(versions) == {f"model/checkpoints/epoch_{e}" for e in bests} | {"model/checkpoints/final"}
    assert len(set(versions.values())) == len(versions)
    digests = set()
    for name, path in versions.items():
        ckpt = alexnet.load_checkpoint(path)
        if name != "model/checkpoints/final":  # each file still holds the epoch it was uploaded for
            assert name == f"model/checkpoints/epoch_{ckpt['epoch']}"
        with open(path, "rb") as f:
            digests.add(hashlib.sha256(f.read()).hexdigest())
    assert len(digests) == len(versions)
    best = offline_run["history"]["summary"]
    assert neptune_assigned(ops, "model/best/epoch") == best["best/epoch"]
    assert neptune_assigned(ops, "model/final/test_acc") == pytest.approx(best["test/acc"])


def test_evaluation_and_summary(offline_run):
    ops, summary = offline_run["ops"], offline_run["history"]["summary"]
    for key, value in summary.items():
        assert neptune_assigned(ops, key) == pytest.approx(value), key
    images = [op for op in ops if op["type"] == "LogImages" and "/".join(op["path"]) == "test/most_confident_mistakes"]
    described = [v for op in images for v in op["values"]]
    assert len(described) == mistakes_shown(summary, 100)
    assert all("predicted:" in v["value"]["description"] for v in described)
    assert any(op["type"] == "UploadFile" and "/".join(op["path"]) == "test/confusion_matrix" for op in ops)
    per_class = [neptune_assigned(ops, f"test/per_class_acc/{c}") for c in ("airplane", "truck")]
    assert all(p is not None and 0 <= p <= 1 for p in per_class)
    assert neptune_assigned(ops, "sys/failed") is False and neptune_assigned(ops, "status") == "completed"


def test_token_never_stored_and_home_untouched(offline_run):
    assert files_containing(offline_run["out"], NEPTUNE_TOKEN) == []
    assert os.listdir(offline_run["home"]) == []
    assert "neptune sync --path" in offline_run["result"].stdout


def test_prompt_on_a_terminal_hides_the_token(tmp_path):
    code, text, _ = answer_prompt(
        [
            "neptune_integration.py",
            "--mode",
            "online",
            "--project",
            "ws/proj",
            "--dataset",
            "synthetic",
            "--out-dir",
            tmp_path / "runs",
        ],
        tmp_path,
        "API token",
        NEPTUNE_TOKEN,
    )
    assert "Get your API token" in text
    assert NEPTUNE_TOKEN not in text
    assert code == 2 and "Traceback" not in text
    assert "token is invalid" in text and "--mode offline" in text


def test_both_trackers_record_the_same_epochs_on_the_same_seed(offline_run, cifar_dir, tmp_path):
    result = run_script(
        "wandb_setup_script.py", quick_args(cifar_dir, tmp_path / "runs", epochs=3), tmp_path, WANDB_API_KEY=WANDB_KEY
    )
    assert result.returncode == 0, result.stderr[-3000:]
    wandb_vals = [
        (e["epoch"], e["val/acc"], e["train/loss"])
        for e in read_run(trackers.get("wandb"), tmp_path / "runs")["epochs"]
    ]
    ops = offline_run["ops"]
    neptune_vals = [
        (s, v, loss)
        for (s, v), (_, loss) in zip(neptune_series(ops, "val/acc"), neptune_series(ops, "train/loss"), strict=True)
    ]
    assert wandb_vals == neptune_vals
