"""Every user mistake ends in one clear line and a non-zero exit, never a traceback, for every script."""

import importlib
import os
import re
import subprocess

import pytest
import torch
from conftest import EACH_TOOL, ROOT, TOOLS, run_script

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


@EACH_TOOL
@pytest.mark.parametrize("flags,needle", BAD_FLAGS)
def test_bad_flag_exits_2(tool, flags, needle, capsys):
    """In-process: the script's own main() with a bad flag (the subprocess cases below cover the rest)."""
    script = tool.script
    module = importlib.import_module(script[:-3])
    with pytest.raises(SystemExit) as stop:
        module.main(["--mode", "offline", "--dataset", "synthetic", *flags])
    err = capsys.readouterr().err
    assert_one_line_error(subprocess.CompletedProcess([], stop.value.code, "", err), 2, needle)


@EACH_TOOL
def test_cuda_requested_but_absent(tool, tmp_path):
    script = tool.script
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    result = run_script(script, ["--mode", "offline", "--dataset", "synthetic", "--device", "cuda"], tmp_path)
    assert_one_line_error(result, 2, "--device cuda")


@EACH_TOOL
def test_unwritable_out_dir(tool, tmp_path):
    script = tool.script
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = run_script(
        script, ["--mode", "offline", "--dataset", "synthetic", "--out-dir", blocker / "runs"], tmp_path
    )
    assert_one_line_error(result, 2, "--out-dir", "not writable")


@EACH_TOOL
def test_empty_data_dir_without_network(tool, tmp_path):
    script = tool.script
    empty = tmp_path / "data"
    empty.mkdir()
    result = run_script(
        script, ["--mode", "offline", "--data-dir", empty, "--out-dir", tmp_path / "runs"], tmp_path, timeout=120
    )
    assert_one_line_error(result, 2, "cifar-10-python.tar.gz", "--dataset synthetic")
    records = {p for t in TOOLS for p in t.reader.RECORD_PATHS}  # no run folder, no tracker run: it never started
    assert [d for d in os.listdir(tmp_path / "runs") if d[0].isdigit() or d in records] == []


@EACH_TOOL
def test_unverified_copy_names_skip_checksum(tool, cifar_dir, tmp_path):
    script = tool.script
    result = run_script(
        script, ["--mode", "offline", "--data-dir", cifar_dir, "--out-dir", tmp_path / "runs"], tmp_path
    )
    assert_one_line_error(result, 2, "--skip-checksum")


@pytest.mark.parametrize(
    "script,needles",
    [
        ("wandb_setup_script.py", ["WANDB_API_KEY", "--mode offline"]),
        ("neptune_integration.py", ["NEPTUNE_API_TOKEN", "--mode offline"]),
    ],
)
def test_online_without_token_or_terminal(script, needles, tmp_path):
    """Credentials are checked before the data is loaded: no data here, and the key is what is missing."""
    result = run_script(
        script,
        [
            "--mode",
            "online",
            "--project",
            "ws/proj",
            "--data-dir",
            tmp_path / "no-data",
            "--out-dir",
            tmp_path / "runs",
        ],
        tmp_path,
    )
    assert_one_line_error(result, 2, *needles)


def test_neptune_malformed_project(tmp_path):
    result = run_script(
        "neptune_integration.py",
        ["--mode", "online", "--project", "no-slash", "--dataset", "synthetic", "--out-dir", tmp_path / "runs"],
        tmp_path,
        NEPTUNE_API_TOKEN="x",
    )
    assert_one_line_error(result, 2, "workspace/project", "no-slash")


def test_every_script_has_exactly_the_flags_the_docs_document(tmp_path):
    with open(os.path.join(ROOT, "docs", "flags-and-recipes.md")) as f:
        page = f.read()
    table = page[page.index("\n## Flags") :].split("\n## ")[1]
    documented = {
        flag for line in table.splitlines() if line.startswith("|") for flag in re.findall(r"`(--[a-z-]+)", line)
    }
    own = {  # a tool's own flags: documented with its name ("W&B only")
        flag for line in table.splitlines() if " only" in line for flag in re.findall(r"`(--[a-z-]+)", line)
    }
    seen = set()
    for tool in TOOLS:
        result = run_script(tool.script, ["--help"], tmp_path)
        flags = set(re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", result.stdout)) - {"--help"}
        assert result.returncode == 0 and documented - own <= flags <= documented, (tool.key, flags ^ documented)
        for flag in flags & own:  # said as this tool's
            assert re.search(rf"`{flag}[^|]*\| {re.escape(tool.name)} only", table), (tool.key, flag)
        seen |= flags
    assert seen == documented
