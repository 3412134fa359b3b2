"""A finished run's --out-dir copied to another path and the original deleted: after `--moved-from`,
the official readers read it, nothing in the records points at the old path, and every file the
records point to (what `wandb sync` / `neptune sync` would upload) is there."""

import glob
import json
import os
import shutil

import pytest
import records
from conftest import NEPTUNE_TOKEN, SCRIPTS, SMALL_MODEL, WANDB_KEY, mlflow_record, quick_args, run_script

TOKENS = {"WANDB_API_KEY": WANDB_KEY, "NEPTUNE_API_TOKEN": NEPTUNE_TOKEN}


def artifacts(client, run_id, path=None):
    return [
        f
        for e in client.list_artifacts(run_id, path)
        for f in (artifacts(client, run_id, e.path) if e.is_dir else [e.path])
    ]


def referenced(script, out):
    """The records' text and every file (or glob) they point to."""
    if script == "wandb_setup_script.py":
        rs = records.wandb_records(str(out))
        [log] = records.wandb_logs(str(out))
        files = [
            os.path.join(os.path.dirname(log), "files", f["path"])
            for r in rs
            if r["type"] == "files"
            for f in r["files"]["files"]
        ]
        manifests = [e for r in rs if r["type"] == "artifact" for e in r["artifact"]["manifest"]["contents"]]
        files += [e["local_path"] for e in manifests if e.get("local_path")]
        files += [e["ref"][len("file://") :] for e in manifests if e.get("ref", "").startswith("file://")]
        return json.dumps(rs), files
    if script == "mlflow_tracking.py":  # the store's text (every location it records) and the run's artifacts
        import sqlite3

        client, run = mlflow_record(out)
        with sqlite3.connect(out / "mlflow.db") as db:
            text = json.dumps(
                [
                    row
                    for (table,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'").fetchall()
                    for row in db.execute(f'SELECT * FROM "{table}"').fetchall()
                ],
                default=str,
            )
        local = run.info.artifact_uri[len("file://") :]
        files = [os.path.join(local, a) for a in artifacts(client, run.info.run_id)]
        files += [v.source[len("file://") :] for v in client.search_model_versions()]
        return text, files
    ops = records.neptune_ops(str(out))
    files = [op["file_path"] for op in ops if op["type"] == "UploadFile" and op.get("file_path")]
    files += [g for op in ops if op["type"] == "UploadFileSet" for g in op["file_globs"]]
    files += [path for op in ops if op["type"] == "TrackFilesToArtifact" for path, _ in op["entries"]]
    return json.dumps(ops), files


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_copied_out_dir_keeps_every_referenced_file(script, cifar_dir, tmp_path):
    old, new = tmp_path / "old", tmp_path / "elsewhere" / "new"
    result = run_script(script, quick_args(cifar_dir, old, epochs=2, extra=SMALL_MODEL), tmp_path, **TOKENS)
    assert result.returncode == 0, result.stderr[-2000:]
    shutil.copytree(old, new, symlinks=True)
    shutil.rmtree(old)
    moved = run_script(script, ["--out-dir", new, "--moved-from", old], tmp_path)
    assert moved.returncode == 0 and "re-pointed 1" in moved.stdout, moved.stdout + moved.stderr
    text, files = referenced(script, new)
    assert str(old) not in text
    assert len(files) >= 8 and [f for f in files if not glob.glob(f)] == []
    if script == "wandb_setup_script.py":  # model versions point at checkpoints under the new folder
        assert sum(f.startswith(str(new)) and f.endswith(".pt") for f in files) >= 2
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
