"""A real offline Trackio run, read back three ways: by its record reader (the store), by Trackio's own
reader (`trackio get run`), and over HTTP from its dashboard's server (`trackio show`); with what
Trackio has no counterpart for said at the end, and the user's TRACKIO_DIR honoured."""

import json
import os
import subprocess
import sys
import urllib.request

import pytest
from conftest import best_epochs, quick_args, read_run, run_script

import trackers
from trackers import probing, trackio_record

TOOL = trackers.get("trackio")
TRACKIO = os.path.join(os.path.dirname(sys.executable), "trackio")


@pytest.fixture(scope="module")
def offline_run(cifar_dir, tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    out = tmp_path_factory.mktemp("runs")
    result = run_script(TOOL.script, quick_args(cifar_dir, out, epochs=3), home, fresh=True)
    assert result.returncode == 0, result.stderr[-3000:]
    [run_dir] = [d for d in os.listdir(out) if d[0].isdigit()]
    with open(out / run_dir / "history.json") as f:
        history = json.load(f)
    return dict(result=result, home=home, out=out, run_id=run_dir, history=history, record=read_run(TOOL, out, 1))


def official(out, *args):
    """Trackio's own command-line reader on the run's store, as JSON."""
    read = subprocess.run(
        [TRACKIO, "get", *args, "--project", trackio_record.PROJECT, "--json"],
        env={**os.environ, "TRACKIO_DIR": str(out / "trackio"), "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert read.returncode == 0, read.stderr[-2000:]
    return json.loads(read.stdout)


def test_every_epoch_and_step_equals_the_engine_history(offline_run):
    record, engine = offline_run["record"], offline_run["history"]
    assert record["runs"] == 1 and record["ended"] == "completed"
    assert len(record["epochs"]) == len(engine["epochs"]) == 3
    for got, want in zip(record["epochs"], engine["epochs"], strict=True):
        for key, value in want.items():
            assert got[key] == pytest.approx(value, rel=1e-12), key
    assert [s for s, _ in record["steps"]] == [1, *range(2, 3 * 6 + 1, 2)]  # 360 images / 64: 6 steps an epoch
    assert record["summary"] == pytest.approx(engine["summary"])
    assert record["config"]["run_id"] == offline_run["run_id"] and record["config"]["epochs"] == 3


def test_trackios_own_reader_reads_the_same_run(offline_run):
    run = official(offline_run["out"], "run", "--run", offline_run["run_id"])
    rows = trackio_record.rows(str(offline_run["out"] / "trackio"), trackio_record.PROJECT, offline_run["run_id"])
    assert run["num_logs"] == len(rows) and run["last_step"] == rows[-1]["step"]
    assert {"train/batch_loss", "val/acc", "test/acc", "run/status"} <= set(run["metrics"])
    assert run["config"]["run_id"] == offline_run["run_id"]
    for key in ("val/acc", "train/batch_loss"):
        metric = official(offline_run["out"], "metric", "--run", offline_run["run_id"], "--metric", key)
        ours = [(r["step"], r[key]) for r in rows if key in r]
        assert [(p["step"], p["value"]) for p in metric["values"]] == ours, key


def test_the_dashboard_serves_the_run_over_http(offline_run, tmp_path):
    """`trackio show` on the run's store: a real server, read back through its HTTP API."""
    port = probing.free_port()
    env = {
        **os.environ,
        "TRACKIO_DIR": str(offline_run["out"] / "trackio"),
        "GRADIO_SERVER_PORT": str(port),
        "BROWSER": "true",
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
        "HF_HUB_OFFLINE": "1",
        "HOME": str(tmp_path),
    }
    server = probing.serve(
        [TRACKIO, "show", "--project", trackio_record.PROJECT],
        f"http://127.0.0.1:{port}/version",
        str(tmp_path / "show.log"),
        env,
    )
    try:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

        def api(name, **body):
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/api/{name}",
                data=json.dumps(body).encode(),
                headers={"Content-Type": "application/json"},
            )
            with opener.open(request, timeout=60) as answer:
                return json.load(answer)["data"]

        runs = api("get_runs_for_project", project=trackio_record.PROJECT)
        assert [r["name"] for r in runs] == [offline_run["run_id"]]
        logs = api("get_logs", project=trackio_record.PROJECT, run=offline_run["run_id"])
        epochs = [row for row in logs if "val/acc" in row]
        assert [row["val/acc"] for row in epochs] == pytest.approx(
            [e["val/acc"] for e in offline_run["history"]["epochs"]]
        )
    finally:
        probing.stop(server)


def test_model_versions_dataset_and_evaluation(offline_run):
    record, history = offline_run["record"], offline_run["history"]
    bests = best_epochs(history)  # a version per new best epoch, then the final one
    assert [m["epoch"] for m in record["models"] if not m["final"]] == bests
    [final] = [m for m in record["models"] if m["final"]]
    assert {"final", "best"} <= set(final["aliases"]) and final["metadata"]["test_acc"] == pytest.approx(
        history["summary"]["test/acc"]
    )
    assert record["dataset"]["recorded"] and record["dataset"]["files"] == 6  # the six batch files, by reference
    assert record["dataset"]["hashed_by_tool"] == 6
    assert record["confusion"].sum() == 100 and len(record["classes"]) == 10  # the fixture's test images
    assert record["mistakes"] and all(os.path.isfile(m["image"]) for m in record["mistakes"])
    assert set(record["histograms"]) and all(len(v) == 3 for v in record["histograms"].values())  # every epoch


def test_what_trackio_lacks_is_said_and_the_home_folder_is_untouched(offline_run):
    out = offline_run["result"].stdout
    assert "trackio show" in out and "no run summary, status or console output" in out
    assert os.listdir(offline_run["home"]) == []  # nothing in the home folder: Trackio's store is under --out-dir
    assert "alexnet-cifar10.db" in os.listdir(offline_run["out"] / "trackio")


def test_a_users_trackio_dir_is_honoured(cifar_dir, tmp_path):
    own = tmp_path / "own-trackio"
    result = run_script(TOOL.script, quick_args(cifar_dir, tmp_path / "runs", epochs=1), tmp_path, TRACKIO_DIR=str(own))
    assert result.returncode == 0, result.stderr[-2000:]
    assert os.path.isfile(own / "alexnet-cifar10.db") and not os.path.exists(tmp_path / "runs" / "trackio")
    assert f"saved offline in {own}" in result.stdout
    [run_id] = [d for d in os.listdir(tmp_path / "runs") if d[0].isdigit()]
    assert trackio_record.recorded(str(own), trackio_record.PROJECT, run_id).epochs == {1}


def test_online_without_a_space_or_server_is_one_line(tmp_path):
    result = run_script(TOOL.script, ["--mode", "online", "--dataset", "synthetic", "--out-dir", tmp_path], tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    [line] = result.stderr.strip().splitlines()
    assert "TRACKIO_SPACE_ID" in line and "--mode offline" in line, line


def test_the_same_epochs_as_wandb_on_the_same_flags(offline_run, cifar_dir, tmp_path):
    result = run_script("wandb_setup_script.py", quick_args(cifar_dir, tmp_path / "runs", epochs=3), tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    wandb = read_run(trackers.get("wandb"), tmp_path / "runs")
    keys = ("epoch", "train/loss", "train/acc", "val/loss", "val/acc", "lr")
    assert [{k: e[k] for k in keys} for e in offline_run["record"]["epochs"]] == [
        {k: e[k] for k in keys} for e in wandb["epochs"]
    ]
