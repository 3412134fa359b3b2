"""benchmarks/recipes.py trains what it is asked and reports it; its variants parse strictly."""

import argparse
import json
import os
import subprocess
import sys

import pytest
from conftest import ROOT, clean_env

sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
import recipes  # noqa: E402


def test_variant_takes_recipe_keys_with_their_types():
    name, changes = recipes.variant("fast:optimizer=adamw,lr=2e-3,epochs=3,compile=1", "default")
    assert name == "fast" and changes == {"optimizer": "adamw", "lr": 0.002, "epochs": 3, "compile": True}
    with pytest.raises(argparse.ArgumentTypeError, match="momentum is not a recipe key"):
        recipes.variant("x:momentum=0.8", "default")


def test_recipes_trains_each_entry_to_the_end(cifar_dir, tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            os.path.join(ROOT, "benchmarks", "recipes.py"),
            "--data-dir",
            cifar_dir,
            "--skip-checksum",
            "--device",
            "cpu",
            "--epochs",
            "2",
            "--recipes",
            "study",
            "--try",
            "adamw:optimizer=adamw,weight_decay=0.05",
            "--json",
        ],
        cwd=ROOT,
        env=clean_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    out = json.loads(result.stdout.splitlines()[-1])
    assert [e["name"] for e in out["entries"]] == ["study", "adamw"]
    study, adamw = out["entries"]
    assert study["config"]["optimizer"] == "adam" and study["config"]["warmup_epochs"] == 0
    assert adamw["config"]["optimizer"] == "adamw" and adamw["config"]["weight_decay"] == 0.05
    # The default recipe's variant is fitted to the 360 training images as a script fits it; the study's is not.
    assert (adamw["config"]["batch_size"], adamw["config"]["warmup_epochs"]) == (32, 0.16)
    assert study["config"]["batch_size"] == 256
    for e in out["entries"]:
        assert len(e["val_acc"]) == 2 and abs(e["best_val_acc"] - max(e["val_acc"])) < 1e-4  # rounded to 4 places
        assert 0 <= e["test_acc"] <= 1 and e["run_s"] > 0
    assert out["hardware"]["device"] == "cpu"
    assert "study" in result.stderr and "adamw" in result.stderr  # the table


def test_recipes_bad_data_dir_is_one_line(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            os.path.join(ROOT, "benchmarks", "recipes.py"),
            "--data-dir",
            str(tmp_path / "none"),
            "--device",
            "cpu",
        ],
        cwd=ROOT,
        env=clean_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0 and result.stderr.startswith("error:")
