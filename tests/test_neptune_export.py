"""neptune_export.py moves a Neptune run's local data into W&B and MLflow equal to the native runs of
the same job: read back with `wandb leet inspect --json` and `MlflowClient`, the official readers.

On a CPU the three scripts record the same metrics on the same flags and seed, so a Neptune run
exported to W&B must equal the W&B script's own run of those flags, value for value.
CIFAR10_DIR=<a CIFAR-10 copy> runs the same checks on real data (docs/quickstart.md: the shared copy).
"""

import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys

import pytest
import warm
from conftest import LEARNS_QUICKLY, NEPTUNE_TOKEN, ROOT, SMALL_MODEL, WANDB_KEY, clean_env, run_script

import trackers
from trackers import mlflow_record, neptune_record, wandb_record

PER_EPOCH = ["epoch", "train/loss", "train/acc", "val/loss", "val/acc", "lr"]  # epoch_time_s differs run to run
PER_STEP = ["train/batch_loss", "train/batch_acc"]
FINAL = ["test/loss", "test/acc", "best/val_acc", "best/epoch"]
TOKENS = {"WANDB_API_KEY": WANDB_KEY, "NEPTUNE_API_TOKEN": NEPTUNE_TOKEN}


def job_args(data_dir, out, extra=()):
    if os.environ.get("CIFAR10_DIR"):  # the real-data check: 2 epochs of 2,048 images, batch 128
        sizes = ["--train-size", 2048, "--batch-size", 128, "--log-every", 4]
    else:
        sizes = ["--batch-size", 64, "--log-every", 2, *LEARNS_QUICKLY]
    return [
        "--mode",
        "offline",
        "--data-dir",
        os.environ.get("CIFAR10_DIR", data_dir),
        "--skip-checksum",
        "--epochs",
        2,
        "--seed",
        5,
        "--device",
        "cpu",
        "--out-dir",
        out,
        *sizes,
        *SMALL_MODEL,
        *extra,
    ]


def export(source, target, out, home, *extra):
    result = warm.run(
        [
            sys.executable,
            os.path.join(ROOT, "neptune_export.py"),
            str(source),
            "--to",
            target,
            "--out-dir",
            str(out),
            *extra,
        ],
        cwd=ROOT,
        env=clean_env(home),
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def native(cifar_dir, tmp_path_factory):
    """The same job through each script: the Neptune run to export and the runs to compare with."""
    root = tmp_path_factory.mktemp("native")
    for tool in [trackers.get("neptune"), *(t for t in trackers.TOOLS if t.exports)]:
        result = run_script(tool.script, job_args(cifar_dir, root / tool.key), root, **TOKENS)
        assert result.returncode == 0, result.stderr[-2000:]
    return root


def mlflow_run(out_dir):
    """MLflow's client on the store in out_dir, and its one run."""
    client = mlflow_record.client(out_dir)
    [run] = client.search_runs([e.experiment_id for e in client.search_experiments()])
    return client, run


def tree_digest(root):
    digests = {}
    for folder, _, names in os.walk(root):
        for name in names:
            with open(os.path.join(folder, name), "rb") as f:
                digests[os.path.relpath(os.path.join(folder, name), root)] = hashlib.sha256(f.read()).hexdigest()
    return digests


def wandb_view(out_dir):
    """Each series as (step, value) on its own step axis (define_metric), the summary, the artifacts."""
    rs = wandb_record.records(str(out_dir))
    axis = {}
    for r in rs:
        if r["type"] == "metric" and r["metric"].get("step_metric"):
            axis[r["metric"].get("name") or r["metric"].get("glob_name")] = r["metric"]["step_metric"]

    def step_of(key):  # a series with no step metric of its own is an axis ("epoch")
        return next(
            (a for pattern, a in axis.items() if re.fullmatch(re.escape(pattern).replace(r"\*", ".*"), key)), key
        )

    series = {}
    for r in rs:
        if r["type"] == "history":
            item = r["history"]["item"]
            for key in PER_EPOCH + PER_STEP:
                if key in item:
                    series.setdefault(key, []).append((item[step_of(key)], item[key]))
    summary = json.loads(wandb_record.leet("--summary", wandb_record.logs(str(out_dir))[-1]))["summary"]
    artifacts = [r["artifact"] for r in rs if r["type"] == "artifact"]
    models = [
        (json.loads(a["metadata"]), {x for x in a["aliases"] if not x.startswith("epoch-")})
        for a in artifacts
        if a["type"] == "model"
    ]
    return series, summary, models, [a for a in artifacts if a["type"] == "dataset"]


def mlflow_view(client, run):
    rid = run.info.run_id
    series = {k: [(m.step, m.value) for m in client.get_metric_history(rid, k)] for k in PER_EPOCH + PER_STEP}
    [model] = client.search_registered_models()
    versions = sorted(client.search_model_versions(f"name = '{model.name}'"), key=lambda v: int(v.version))
    tags = [{k: v for k, v in version.tags.items() if k in ("epoch", "val_acc", "test_acc")} for version in versions]
    aliases = {alias: int(version) for alias, version in model.aliases.items()}
    return series, {k: run.data.metrics[k] for k in FINAL}, tags, aliases, run.inputs.dataset_inputs


def test_a_neptune_run_exported_to_wandb_equals_the_native_wandb_run(native, tmp_path):
    before = tree_digest(native / "neptune")
    result = export(native / "neptune", "wandb", tmp_path / "export", tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr[-2000:]
    assert re.search(r"read (\d+) operations .*: \1 applied, 0 skipped", result.stdout), result.stdout
    assert "wandb sync " in result.stdout and not glob.glob(str(tmp_path / ".*"))  # nothing in the home folder
    got_series, got_summary, got_models, got_datasets = wandb_view(tmp_path / "export")
    want_series, want_summary, want_models, _ = wandb_view(native / "wandb")
    for key in PER_EPOCH + PER_STEP:  # point for point, on the same steps
        assert got_series[key] == want_series[key], key
    assert len(want_series["val/acc"]) == 2 and len(want_series["train/batch_loss"]) >= 4
    assert {k: got_summary[k] for k in FINAL} == {k: want_summary[k] for k in FINAL}
    assert got_models == want_models and len(want_models) >= 2  # each version's metadata and aliases
    assert {"best", "latest", "final"} <= got_models[-1][1] and "test_acc" in got_models[-1][0]
    [dataset] = got_datasets
    assert sum(bool(e.get("ref")) for e in dataset["manifest"]["contents"]) == 6  # the six batch files, by reference
    assert tree_digest(native / "neptune") == before  # the input is only read

    again = export(native / "neptune", "wandb", tmp_path / "export", tmp_path)
    assert again.returncode == 0 and "already moved" in again.stdout, again.stdout
    assert len(wandb_record.logs(str(tmp_path / "export"))) == 1  # nothing duplicated
    [marker] = glob.glob(str(tmp_path / "export" / "wandb" / "offline-run-*" / "neptune-export.json"))
    os.remove(marker)  # as if the export had been cut short
    redo = export(native / "neptune", "wandb", tmp_path / "export", tmp_path)
    assert "replacing an incomplete export" in redo.stdout and len(wandb_record.logs(str(tmp_path / "export"))) == 1


def test_a_neptune_run_exported_to_mlflow_equals_the_native_mlflow_run(native, tmp_path):
    before = tree_digest(native / "neptune")
    result = export(native / "neptune", "mlflow", tmp_path / "export", tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr[-2000:]
    got = mlflow_view(*mlflow_run(tmp_path / "export"))
    want = mlflow_view(*mlflow_run(native / "mlflow"))
    for key in PER_EPOCH + PER_STEP:
        assert got[0][key] == want[0][key], key
    assert got[1] == want[1]  # final values
    assert got[2] == want[2] and len(want[2]) >= 2  # one registry version per model version, same tags
    assert got[3] == want[3] and set(want[3]) == {"champion"}  # the alias of the best final version
    assert len(got[4]) == 1 and got[4][0].dataset.digest
    client, run = mlflow_run(tmp_path / "export")
    _, native_run = mlflow_run(native / "mlflow")
    assert run.info.status == native_run.info.status == "FINISHED"
    for key in ("optimizer", "lr", "epochs", "batch_size", "seed", "train_size"):
        assert run.data.params[key] == native_run.data.params[key], key
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "neptune/test")}
    assert "neptune/test/confusion_matrix.png" in artifacts
    assert tree_digest(native / "neptune") == before

    again = export(native / "neptune", "mlflow", tmp_path / "export", tmp_path)
    assert "already moved" in again.stdout and len(client.search_runs([run.info.experiment_id])) == 1


def test_an_interrupted_and_resumed_run_exports_as_one_run(native, cifar_dir, tmp_path):
    out = tmp_path / "neptune"
    stopped = run_script(
        "neptune_integration.py", job_args(cifar_dir, out), tmp_path, fault=("epoch:1", "INT"), **TOKENS
    )
    assert stopped.returncode == 130, stopped.stderr[-2000:]
    resumed = run_script("neptune_integration.py", job_args(cifar_dir, out, ["--resume"]), tmp_path, **TOKENS)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert len(neptune_record.folders(str(out))) == 2  # two segments on disk
    result = export(out, "wandb", tmp_path / "export", tmp_path)
    assert "2 queue(s) (1 run(s))" in result.stdout, result.stdout
    assert len(wandb_record.logs(str(tmp_path / "export"))) == 1  # one W&B run of one segment
    got_series, got_summary, _, _ = wandb_view(tmp_path / "export")
    want_series, want_summary, _, _ = wandb_view(native / "wandb")
    for key in PER_EPOCH + PER_STEP:
        assert got_series[key] == want_series[key], key
    assert {k: got_summary[k] for k in FINAL} == {k: want_summary[k] for k in FINAL}


def test_a_missing_or_changed_file_is_reported_by_name_and_strict_fails(native, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(native / "neptune", copy, symlinks=True)
    moved = run_script("neptune_integration.py", ["--out-dir", copy, "--moved-from", native / "neptune"], tmp_path)
    assert moved.returncode == 0, moved.stderr
    [run] = [d for d in os.listdir(copy) if d[0].isdigit()]
    os.remove(copy / run / "checkpoints" / "epoch_1.pt")
    os.utime(copy / run / "checkpoints" / "final.pt")  # rewritten after it was logged, as far as anyone can tell
    lenient = export(copy, "mlflow", tmp_path / "lenient", tmp_path)
    assert lenient.returncode == 0 and "epoch_1.pt is missing" in lenient.stdout, lenient.stdout
    strict = export(copy, "wandb", tmp_path / "strict", tmp_path, "--strict")
    assert strict.returncode == 1 and "model/checkpoints/epoch_1" in strict.stdout, strict.stdout + strict.stderr
    assert "model/checkpoints/final: " in strict.stdout and "changed after it was logged" in strict.stdout


# Field types neptune_integration.py does not use, written by the real client in offline mode.
FOREIGN_RUN = r"""
import os, sys
import neptune
from neptune.types import File
from PIL import Image
here = sys.argv[1]
with open(os.path.join(here, "notes.txt"), "w") as f:
    f.write("a file uploaded by path")
with open(os.path.join(here, "tracked.csv"), "w") as f:
    f.write("a,b\n1,2\n")
run = neptune.init_run(mode="offline", name="foreign", tags=["x", "y"], description="not ours")
run["config"] = {"depth": 3, "nested": {"width": 0.5, "label": "wide"}, "flag": True}
run["labels"].add(["red", "green"])
run["labels"].remove("green")
run["metrics/no_steps"].append(1.5)
run["metrics/no_steps"].append(2.5)
run["metrics/stepped"].append(7.0, step=10)
run["logs/text"].append("first line")
run["images"].append(File.as_image(Image.new("RGB", (8, 8), "red")), name="red square", description="a test image")
run["files/notes"].upload(os.path.join(here, "notes.txt"))
run["files/content"].upload(File.from_content("made in memory"))
run["files/set"].upload_files([os.path.join(here, "*.txt")])
run["data"].track_files(os.path.join(here, "tracked.csv"))
run["doomed"] = "deleted before the end"
del run["doomed"]
run["copy/of_depth"] = run["config/depth"]
run["config/depth"] = 4
other = neptune.init_run(mode="offline", name="other")
other["borrowed"] = run["config/flag"]  # a field of another run: only a server could resolve it
other.stop()
run.stop()
"""


def test_field_types_beyond_our_scripts_land_or_are_reported(tmp_path):
    source = tmp_path / "source"
    source.mkdir()
    env = clean_env(tmp_path, NEPTUNE_DATA_DIRECTORY=str(source / ".neptune"))
    made = subprocess.run(
        [sys.executable, "-c", FOREIGN_RUN, str(source)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert made.returncode == 0, made.stderr[-2000:]
    before = tree_digest(source)
    ops = sum(1 for log in glob.glob(str(source / ".neptune" / "offline" / "*" / "data-*.log")) for _ in open(log))
    result = export(source, "wandb", tmp_path / "export", tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr[-2000:]
    assert f"read {ops} operations in 2 queue(s) (2 run(s)): {ops - 1} applied, 1 skipped" in result.stdout, (
        result.stdout
    )
    assert "skipped: CopyAttribute x 1 (copies a field of another Neptune run" in result.stdout
    assert "deleted in Neptune before the export (not moved): doomed" in result.stdout
    strict = export(source, "wandb", tmp_path / "strict", tmp_path, "--strict")
    assert strict.returncode == 1 and "--strict" in strict.stderr
    [log] = [
        log
        for log in wandb_record.logs(str(tmp_path / "export"))
        if any(r["type"] == "run" and r["run"]["display_name"] == "foreign" for r in wandb_record.leet_records(log))
    ]
    rs = wandb_record.leet_records(log)
    [run] = [r["run"] for r in rs if r["type"] == "run"]
    config = run["config"]["update"]
    assert run["display_name"] == "foreign" and sorted(run["tags"]) == ["x", "y"] and run["notes"] == "not ours"
    summary = json.loads(wandb_record.leet("--summary", log))["summary"]
    assert summary["copy/of_depth"] == 3  # copied within the run when it was 3
    assert summary["config/depth"] == 4 and summary["config/nested/width"] == 0.5 and summary["config/flag"] is True
    assert summary["config/nested/label"] == "wide" and "doomed" not in summary
    assert config["labels"] == ["red"]
    items = [r["history"]["item"] for r in rs if r["type"] == "history"]
    assert [(i["metrics/no_steps_step"], i["metrics/no_steps"]) for i in items if "metrics/no_steps" in i] == [
        (0, 1.5),
        (1, 2.5),
    ]  # no step given: 0, 1, ... as Neptune's server counts
    assert [(i["metrics/stepped_step"], i["metrics/stepped"]) for i in items if "metrics/stepped" in i] == [(10, 7.0)]
    assert [i["images.caption"] for i in items if "images_step" in i] == ["red square - a test image"]
    saved = {f["path"] for r in rs if r["type"] == "files" for f in r["files"]["files"]}
    assert {
        "neptune/logs/text.txt",
        "neptune/files/notes.txt",
        "neptune/files/content.txt",
        "neptune/files/set/notes.txt",
    } <= saved, saved
    [dataset] = [r["artifact"] for r in rs if r["type"] == "artifact" and r["artifact"]["type"] == "dataset"]
    assert [e["ref"] for e in dataset["manifest"]["contents"]] == [f"file://{source}/tracked.csv"]
    assert tree_digest(source) == before


# Two small runs written by the real client offline: the input the bad-input tests damage.
TWO_RUNS = r"""
import os, sys
import neptune
here = sys.argv[1]
with open(os.path.join(here, "weights.pt"), "wb") as f:
    f.write(os.urandom(2 << 20))
for name in ("first", "second"):
    run = neptune.init_run(mode="offline", name=name)
    run["run_id"] = name
    run["parameters"] = {"lr": 0.1, "depth": 3}
    for step in range(1, 6):
        run["metrics/acc@1"].append(step / 10, step=step)  # a name MLflow rejects
        run["train/loss"].append(1 / step, step=step)
    run["model/checkpoints/final"].upload(os.path.join(here, "weights.pt"))
    run["test/acc"] = 0.5
    run.stop()
"""


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    source = tmp_path_factory.mktemp("two-runs")
    env = clean_env(source, NEPTUNE_DATA_DIRECTORY=str(source / ".neptune"))
    made = subprocess.run(
        [sys.executable, "-c", TWO_RUNS, str(source)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert made.returncode == 0, made.stderr[-2000:]
    return source


WANDB_MARKER = "neptune-export.json"


def queue_of(source, name):
    """The offline queue folder of the run named `name`, and its operation log."""
    for log in glob.glob(str(source / ".neptune" / "offline" / "*" / "data-1.log")):
        if f'"value": "{name}"' in open(log).read():
            return os.path.dirname(log), log
    raise AssertionError(f"no queue of {name}")


def exported_runs(out):
    """{run_id tag: {metric: [(step, value)]}} of every whole export in the MLflow store under `out`."""
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{out}/mlflow.db")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    return {
        r.data.tags["run_id"]: {
            k: [(m.step, m.value) for m in client.get_metric_history(r.info.run_id, k)] for k in r.data.metrics
        }
        for r in runs
        if "neptune.export_key" in r.data.tags
    }


def damage_metadata(queue, log):
    with open(os.path.join(queue, "metadata.json"), "w") as f:
        f.write('{"containerType": "run", "containerId": ')
    return "metadata.json: line 1: cannot be read"


def damage_line(queue, log):
    lines = open(log).read().splitlines(keepends=True)
    lines.insert(2, '{"obj": {"no type": 1}, "version": 3}\n')
    lines.insert(4, "[1, 2, 3]\n")
    open(log, "w").writelines(lines)
    return "data-1.log: line 3 is not a Neptune operation; not read", "data-1.log: line 5 is not a Neptune operation"


def damage_operation(queue, log):
    lines = open(log).read().splitlines(keepends=True)
    lines.insert(2, json.dumps({"obj": {"type": "LogFloats", "path": ["train", "loss"]}, "version": 3}) + "\n")
    open(log, "w").writelines(lines)
    return "data-1.log: line 3: a LogFloats operation that cannot be applied (KeyError: 'values'); not applied"


def damage_file_name(queue, log):
    shutil.copy(log, os.path.join(queue, "data-x.log"))
    return "data-x.log: not a queue log's name (data-N.log); not read"


@pytest.mark.parametrize("damage", [damage_metadata, damage_line, damage_operation, damage_file_name])
def test_a_bad_input_is_one_line_and_the_rest_is_exported(damage, two_runs, tmp_path):
    """Each bad part of the input is named (file and line) in one line of its own, exit 1; what
    follows it in the same log, and the other run's queue, are exported all the same."""
    source = tmp_path / "source"
    shutil.copytree(two_runs, source)
    queue, log = queue_of(source, "first")
    said = damage(queue, log)
    said = list(said) if isinstance(said, tuple) else [said]
    result = export(source, "mlflow", tmp_path / "out", tmp_path)
    errors = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(errors) == len(said), result.stderr
    for line, want in zip(errors, said, strict=True):
        assert line.startswith("error: ") and want in line, (line, want)
    assert "each named below; the rest was exported" in result.stdout, result.stdout
    runs = exported_runs(tmp_path / "out")
    assert sorted(runs) == ["first", "second"]
    for name in runs:  # every point of both runs, the damaged one's after its bad line too
        assert runs[name]["train/loss"] == [(s, 1 / s) for s in range(1, 6)], runs[name]


def test_a_name_mlflow_rejects_is_moved_under_a_name_it_takes_and_said(two_runs, tmp_path):
    result = export(two_runs, "mlflow", tmp_path / "out", tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "problem: metrics/acc@1: MLflow rejects the name; moved as metrics/acc_1" in result.stdout, result.stdout
    for name, metrics in exported_runs(tmp_path / "out").items():
        assert metrics["metrics/acc_1"] == [(s, s / 10) for s in range(1, 6)], (name, metrics)


def test_two_exports_into_one_folder_the_second_is_refused(two_runs, tmp_path):
    import durable

    out = tmp_path / "out"
    held = durable.FolderLock(str(out), "the export folder")  # an export in progress: this process
    result = export(two_runs, "mlflow", out, tmp_path)
    [line] = result.stderr.strip().splitlines()
    assert result.returncode == 2 and f"the export folder {out} is in use by pid {os.getpid()} on host " in line, line
    assert os.listdir(out) == [".lock"]  # nothing written, nothing replaced
    held.release()


@pytest.mark.parametrize("to", ["mlflow", "wandb"])
@pytest.mark.parametrize("free_kb", [3072, 160])
def test_a_full_disk_is_one_line_a_run_and_a_second_try_completes(to, free_kb, two_runs, tmp_path):
    """A disk that fills during an export (3 MB: the store fits, the 2 MB model files do not) or
    before it (160 KB left): one line each, exit non-zero; with room made, the same command completes."""
    mount = tmp_path / "disk"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True)
    if made.returncode != 0:
        pytest.skip("cannot mount a small file system here (needs root)")
    try:
        filler = mount / "filler"
        filler.write_bytes(b"\0" * ((4096 - free_kb) << 10))
        full = export(two_runs, to, mount / "out", tmp_path)
        errors = full.stderr.strip().splitlines()
        assert full.returncode != 0 and errors and all(e.startswith("error: ") for e in errors), (
            full.stdout + full.stderr
        )
        assert "No space left on device" in full.stderr or "disk is full" in full.stderr, full.stderr
        filler.unlink()
        subprocess.run(["mount", "-o", "remount,size=200m", str(mount)], check=True)  # room made
        again = export(two_runs, to, mount / "out", tmp_path)
        assert again.returncode == 0 and "read 0 operations" not in again.stdout, again.stdout + again.stderr
        if to == "mlflow":
            assert sorted(exported_runs(mount / "out")) == ["first", "second"]
        else:
            assert len(glob.glob(str(mount / "out" / "wandb" / "offline-run-*" / WANDB_MARKER))) == 2
    finally:
        subprocess.run(["umount", "--lazy", str(mount)], check=True)  # this process may still hold the store open
