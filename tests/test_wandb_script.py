"""A real offline W&B run, read back with W&B's own reader (`wandb leet inspect --json`)."""

import glob
import json
import os
import subprocess
import sys

import pytest
from conftest import ROOT, WANDB_KEY, answer_prompt, files_containing, quick_args, record, run_script

import alexnet
import trackers
from trackers import base, wandb_record


@pytest.fixture(scope="module")
def offline_run(cifar_dir, tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    out = tmp_path_factory.mktemp("runs")
    result = run_script(
        "wandb_setup_script.py", quick_args(cifar_dir, out, epochs=3), home, WANDB_API_KEY=WANDB_KEY, fresh=True
    )
    assert result.returncode == 0, result.stderr[-3000:]
    [run_dir] = [d for d in os.listdir(out) if d[0].isdigit()]
    with open(out / run_dir / "history.json") as f:
        history = json.load(f)
    return dict(result=result, home=home, out=out, records=wandb_record.records(str(out)), history=history)


def of_type(records, kind):
    return [r[kind] for r in records if r["type"] == kind]


def wandb_epochs(records):
    """The history rows that hold an epoch's metrics."""
    return [r["history"]["item"] for r in records if r["type"] == "history" and "epoch" in r["history"]["item"]]


def test_every_epoch_equals_the_engine_history(offline_run):
    logged = wandb_epochs(offline_run["records"])
    engine = offline_run["history"]["epochs"]
    assert len(logged) == len(engine) == 3
    for got, want in zip(logged, engine, strict=True):
        for key, value in want.items():
            assert got[key] == pytest.approx(value, rel=1e-12), key


def test_per_step_series_against_global_step(offline_run):
    steps = [
        r["history"]["item"]
        for r in offline_run["records"]
        if r["type"] == "history" and "train/batch_loss" in r["history"]["item"]
    ]
    assert [s["global_step"] for s in steps] == [1, *range(2, 3 * 6 + 1, 2)]  # 360 images / 64: 6 steps an epoch
    assert all(0 <= s["train/batch_acc"] <= 1 for s in steps)
    metrics = {m.get("name") or m.get("glob_name"): m for m in of_type(offline_run["records"], "metric")}
    assert metrics["train/batch_*"]["step_metric"] == "global_step"
    assert metrics["val/loss"]["step_metric"] == "epoch" and metrics["val/acc"]["step_metric"] == "epoch"


def test_weight_histograms_every_epoch(offline_run):
    """What wandb.watch would record, once per epoch, of a fixed sample of each tensor's values:
    checked against the same sample of the best checkpoint's weights."""
    import numpy as np

    from trackers import run_files

    logged = wandb_epochs(offline_run["records"])
    names = [n for n, _ in alexnet.AlexNet().named_parameters()]
    for row in logged:
        for kind in ("parameters", "gradients"):
            for name in names:
                counts, edges = row[f"{kind}/{name}.values"], row[f"{kind}/{name}.bins"]
                assert row[f"{kind}/{name}._type"] == "histogram" and len(edges) == len(counts) + 1 == 65
                assert edges == sorted(edges)
    best = offline_run["history"]["summary"]["best/epoch"]
    [run_dir] = [d for d in os.listdir(offline_run["out"]) if d[0].isdigit()]
    model = alexnet.AlexNet()
    alexnet.load_checkpoint(str(offline_run["out"] / run_dir / "checkpoints" / f"epoch_{best}.pt"), model)
    sample = run_files.weight_sample(model)  # no gradients in a checkpoint: the parameters' sample
    for name, size in (("features.0.weight", 1728), ("classifier.4.weight", run_files.HISTOGRAM_SAMPLE)):
        row = logged[best - 1]
        values = sample[f"parameters/{name}"].numpy()
        want, _ = np.histogram(values, bins=np.array(row[f"parameters/{name}.bins"]))
        got = np.array(row[f"parameters/{name}.values"])
        # histc bins in float32: a few values on bin edges may fall on the other side
        assert len(values) == size and got.sum() == size and np.abs(got - want).sum() <= 2 + 1e-5 * size, name


def test_config_holds_hyperparameters_and_environment(offline_run):
    config = of_type(offline_run["records"], "run")[0]["config"]["update"]
    recipe = alexnet.RECIPES["default"]  # a given batch size: the recipe is not fitted to the data
    for key, value in {
        "epochs": 3,
        "batch_size": 64,
        "lr": 3e-4,
        "optimizer": "adam",
        "weight_decay": 0,
        "warmup_epochs": recipe["warmup_epochs"],
        "seed": 5,
        "val_fraction": 0.1,
        "log_every": 2,
        "recipe": "default",
        "model_params": 23_272_266,
        "device": "cpu",
    }.items():
        assert config[key] == value, key
    assert config["dataset_version"] == offline_run["history"]["config"]["dataset_version"]
    assert {"torch_version", "torchvision_version"} <= config.keys()
    assert not any(WANDB_KEY in json.dumps(v) for v in config.values())


def test_dataset_and_model_artifacts_with_aliases(offline_run):
    artifacts = of_type(offline_run["records"], "artifact")
    [dataset] = [a for a in artifacts if a["type"] == "dataset"]
    meta = json.loads(dataset["metadata"])
    assert meta["version"] == offline_run["history"]["config"]["dataset_version"]
    assert meta["train_size"] == 360 and meta["classes"][0] == "airplane"
    refs = [e for e in dataset["manifest"]["contents"] if e.get("ref", "").startswith("file://")]
    assert sorted(os.path.basename(e["ref"]) for e in refs) == sorted(
        [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    )
    models = [a for a in artifacts if a["type"] == "model"]
    final = models[-1]
    assert {"best", "latest", "final"} <= set(final["aliases"])
    assert json.loads(final["metadata"])["test_acc"] == pytest.approx(offline_run["history"]["summary"]["test/acc"])
    for m in models[:-1]:
        epoch = json.loads(m["metadata"])["epoch"]
        assert {"best", "latest", f"epoch-{epoch}"} <= set(m["aliases"])
    paths = [m["manifest"]["contents"][0]["local_path"] for m in models]
    assert len(set(paths)) == len(paths) and all(os.path.isfile(p) for p in paths)


def test_summary_and_evaluation(offline_run):
    items = {}
    for r in offline_run["records"]:
        if r["type"] == "history":
            items.update(r["history"]["item"])
    assert any(k.startswith("test/confusion_matrix") for k in items)
    assert any(k.startswith("test/most_confident_mistakes") for k in items)
    assert any(k.startswith("test/per_class_table") for k in items)
    files = [f["path"] for r in of_type(offline_run["records"], "files") for f in r["files"]]
    assert "architecture.txt" in files
    [exit_record] = of_type(offline_run["records"], "exit")
    assert exit_record.get("exit_code", 0) == 0


def test_final_state_with_summary_reader(offline_run):
    [log] = [
        os.path.join(dp, f) for dp, _, fs in os.walk(offline_run["out"] / "wandb") for f in fs if f.endswith(".wandb")
    ]
    state = json.loads(wandb_record.leet("--summary", log))  # W&B's own reader of the run's final state
    assert state["state"] == "finished"
    for key, value in offline_run["history"]["summary"].items():  # test/* and best/*
        assert state["summary"][key] == pytest.approx(value), key
    # the histograms' thousands of bins stay out of the summary: `wandb leet` shows test/acc on its first screen
    keys = list(state["summary"])
    assert not any(k.startswith(("gradients/", "parameters/")) for k in keys) and "test/acc" in keys[:18], keys


def test_key_never_stored_and_home_untouched(offline_run):
    assert files_containing(offline_run["out"], WANDB_KEY) == []
    assert os.listdir(offline_run["home"]) == []
    assert WANDB_KEY not in offline_run["result"].stdout + offline_run["result"].stderr
    assert "wandb sync" in offline_run["result"].stdout and "wandb leet" in offline_run["result"].stdout


def test_prompt_on_a_terminal_hides_the_key_and_rejects_an_unverifiable_one(tmp_path):
    code, text, seconds = answer_prompt(
        ["wandb_setup_script.py", "--mode", "online", "--dataset", "synthetic", "--out-dir", tmp_path / "runs"],
        tmp_path,
        "API key",
        WANDB_KEY,
        WANDB_BASE_URL="http://127.0.0.1:9",
    )
    assert "wandb.ai/authorize" in text
    assert WANDB_KEY not in text  # not echoed, not printed back
    assert code == 2 and "Traceback" not in text and "--mode offline" in text
    assert seconds < 90


@pytest.mark.parametrize("content", [None, b"not a W&B log"])
def test_a_record_that_cannot_be_read_back_is_an_error_not_an_empty_record(content, tmp_path):
    """A resumed run reads its earlier segments through `wandb leet inspect`: a read that fails (a
    missing or damaged log) raises, so nothing recorded before is logged again."""
    log = tmp_path / "run-x.wandb"
    if content:
        log.write_bytes(content)
    with pytest.raises(base.RecordError, match=rf"cannot read W&B's record of the earlier segment {log}"):
        wandb_record.leet_records(str(log))


def test_a_log_read_once_is_known_until_it_changes(offline_run, tmp_path):
    """A resume keeps what each earlier log holds in the run folder (wandb-segments.json) and reads a
    log again only when its size or modification time changed."""
    import shutil

    [log] = glob.glob(str(offline_run["out"] / "wandb" / "offline-run-*" / "*.wandb"))
    copy = tmp_path / os.path.basename(os.path.dirname(log)) / os.path.basename(log)
    copy.parent.mkdir()
    shutil.copy2(log, copy)  # its own modification time changes below, not the module's run's
    read = wandb_record.SegmentsRead(str(tmp_path))
    held = read.holds(str(copy))
    assert (sorted(held.epochs), held.final, held.results) == ([1, 2, 3], True, True)
    read.save()
    with open(tmp_path / "wandb-segments.json") as f:
        known = json.load(f)
    assert list(known) == [copy.parent.name] and known[copy.parent.name]["epochs"] == [1, 2, 3]
    known[copy.parent.name]["epochs"] = [7]  # what only the kept entry says: proves it is what is used
    with open(tmp_path / "wandb-segments.json", "w") as f:
        json.dump(known, f)
    assert wandb_record.SegmentsRead(str(tmp_path)).holds(str(copy)).epochs == {7}
    stat = os.stat(copy)
    os.utime(copy, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1000))  # the log changed: read again
    assert wandb_record.SegmentsRead(str(tmp_path)).holds(str(copy)).epochs == {1, 2, 3}
    for other_shape in ([], {copy.parent.name: []}, {copy.parent.name: {"mark": known[copy.parent.name]["mark"]}}):
        with open(tmp_path / "wandb-segments.json", "w") as f:  # JSON of another shape: read as if none
            json.dump(other_shape, f)
        assert wandb_record.SegmentsRead(str(tmp_path)).holds(str(copy)).epochs == {1, 2, 3}


def test_a_segment_begun_in_the_same_second_as_another_is_read_on_resume(tmp_path):
    """wandb.init adds -1 to a segment's folder name when a segment of the same run began in the same
    second (set_sync_dir_suffix: a restart straight after a failed start). A resume reads that
    segment's log too: every step and epoch recorded once."""
    from test_resume import CHAIN_ARGS, TOKENS

    out, script = tmp_path / "D", "wandb_setup_script.py"
    stopped = run_script(script, [*CHAIN_ARGS, "--out-dir", out], tmp_path, fault=("step:6", "INT"), **TOKENS)
    assert stopped.returncode == 130, stopped.stderr[-2000:]
    [folder] = glob.glob(str(out / "wandb" / "offline-run-*"))
    os.rename(folder, folder + "-1")  # the name wandb.init gives it after a same-second segment
    again = run_script(script, [*CHAIN_ARGS, "--out-dir", out, "--resume"], tmp_path, **TOKENS)
    assert again.returncode == 0 and "its record holds steps to 6, epochs [1]" in again.stdout, again.stdout
    epochs, steps, finals, _, _ = record(trackers.get("wandb"), out)
    assert (epochs, steps, finals) == ([1, 2, 3], list(range(1, 13)), 1)


def test_each_earlier_segment_is_read_once_then_known(tmp_path):
    """A resume reads each earlier segment's log with `wandb leet inspect` once and keeps what it holds
    in the run folder (wandb-segments.json): after three segments, the first is known by its size and
    modification time; the second only if its writer had finished when it was read (a kill -9 can
    leave wandb-core flushing it)."""
    from test_resume import CHAIN_ARGS, TOKENS

    out, script = tmp_path / "D", "wandb_setup_script.py"
    for i, fault in enumerate((("step:6", "INT"), ("epoch:2", "KILL"))):
        argv = [*CHAIN_ARGS, "--out-dir", out, *(["--resume"] if i else [])]
        stopped = run_script(script, argv, tmp_path, fault=fault, **TOKENS)
        assert stopped.returncode in (130, -9), stopped.stderr[-2000:]
    again = run_script(script, [*CHAIN_ARGS, "--out-dir", out, "--resume"], tmp_path, **TOKENS)
    assert again.returncode == 0, again.stderr[-2000:]
    [run] = [d for d in os.listdir(out) if d[0].isdigit()]
    with open(out / run / "wandb-segments.json") as f:
        known = json.load(f)
    logs = wandb_record.logs(str(out))
    names = [os.path.basename(os.path.dirname(log)) for log in logs]
    assert len(logs) == 3
    # every log but the last is known; the one before it only if its writer had finished when read
    assert set(names[:-2]) <= set(known) <= set(names[:-1])
    for log, name in zip(logs[:-2], names[:-2], strict=True):
        assert known[name]["mark"] == [os.stat(log).st_size, os.stat(log).st_mtime_ns]
    assert record(trackers.get("wandb"), out)[:3] == ([1, 2, 3], list(range(1, 13)), 1)


PRESS_TWICE = """
import os, signal, sys
from wandb.sdk.lib import console_capture  # patches sys.stdout.write as `wandb.init` does
import alexnet

stop, pressed = alexnet.StopRequest(), []

def press_again(data, written):  # the second press lands while W&B handles a print
    if not pressed:
        pressed.append(True)
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(1000):  # Python bytecodes: the handler runs between them
            pass

with stop.deferred():
    os.kill(os.getpid(), signal.SIGINT)  # the first press: noted
    console_capture.capture_stdout(press_again)
    try:
        with stop.impatient():
            print("closing the run")
    except alexnet.Abandoned:
        sys.exit(130 if pressed else 1)
sys.exit(0)
"""


def test_a_second_signal_during_a_print_wandb_captures_still_stops_waiting(tmp_path):
    """W&B's console capture runs its callbacks inside every print and suppresses any Exception
    raised there: a second Ctrl-C landing in one must still stop the wait on the tracker."""
    result = subprocess.run([sys.executable, "-c", PRESS_TWICE], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 130, result.stdout + result.stderr[-2000:]
