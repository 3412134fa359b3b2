"""A finished run's --out-dir copied to another path and the original deleted: after `--moved-from`,
the official readers read it, nothing in the records points at the old path, and every file the
records point to (what `wandb sync` / `neptune sync` would upload) is there."""

import glob
import os
import shutil

from conftest import EACH_TOOL, NEPTUNE_TOKEN, SMALL_MODEL, WANDB_KEY, quick_args, run_script

TOKENS = {"WANDB_API_KEY": WANDB_KEY, "NEPTUNE_API_TOKEN": NEPTUNE_TOKEN}


@EACH_TOOL
def test_a_copied_out_dir_keeps_every_referenced_file(tool, cifar_dir, tmp_path):
    script = tool.script
    old, new = tmp_path / "old", tmp_path / "elsewhere" / "new"
    result = run_script(script, quick_args(cifar_dir, old, epochs=2, extra=SMALL_MODEL), tmp_path, **TOKENS)
    assert result.returncode == 0, result.stderr[-2000:]
    shutil.copytree(old, new, symlinks=True)
    shutil.rmtree(old)
    moved = run_script(script, ["--out-dir", new, "--moved-from", old], tmp_path)
    assert moved.returncode == 0 and "re-pointed 1" in moved.stdout, moved.stdout + moved.stderr
    text, files = tool.reader.referenced(str(new))  # the record's text and every file it points to
    assert str(old) not in text
    assert len(files) >= 8 and [f for f in files if not glob.glob(f)] == []
    # everything the record points to is under the new folder (model versions included), but the data,
    # which did not move
    assert [f for f in files if not f.startswith((str(new), str(cifar_dir)))] == []
    links = [
        os.path.join(d, n)
        for d, dirs, names in os.walk(new)
        for n in dirs + names
        if os.path.islink(os.path.join(d, n))
    ]
    assert all(os.path.exists(link) for link in links), links


def test_a_damaged_wandb_log_is_left_as_it_is_and_said(cifar_dir, tmp_path):
    """Our reader of a .wandb log stops where a record is damaged: that log is not rewritten (a
    rewrite would drop what follows), the move says so in one line and exits 1."""
    old, new = tmp_path / "old", tmp_path / "new"
    result = run_script(
        "wandb_setup_script.py", quick_args(cifar_dir, old, epochs=1, extra=SMALL_MODEL), tmp_path, **TOKENS
    )
    assert result.returncode == 0, result.stderr[-2000:]
    shutil.copytree(old, new, symlinks=True)
    [log] = glob.glob(str(new / "wandb" / "offline-run-*" / "*.wandb"))
    damaged = bytearray(open(log, "rb").read())
    damaged[len(damaged) // 2] ^= 0xFF
    with open(log, "wb") as f:
        f.write(damaged)
    moved = run_script("wandb_setup_script.py", ["--out-dir", new, "--moved-from", old], tmp_path)
    assert moved.returncode == 1 and "Traceback" not in moved.stderr, moved.stderr[-2000:]
    [line] = moved.stderr.strip().splitlines()
    assert line.startswith("error: re-pointed 0 W&B run log(s)") and "not re-pointed" in line and log in line, line
    assert open(log, "rb").read() == damaged  # untouched
