"""Real MLflow runs read back with MlflowClient: offline from the local SQLite store, online from
real `mlflow server`s (one with basic auth); an interrupted run resumes as the same MLflow run;
a wrong password, no credentials, a closed port or a web server that is not MLflow end in one line."""

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from conftest import (
    NEPTUNE_TOKEN,
    TOOLS,
    answer_prompt,
    best_epochs,
    files_containing,
    mistakes_shown,
    quick_args,
    run_script,
)
from test_cli import assert_one_line_error
from test_resume import args as resume_args
from test_resume import interrupt_in_epoch_2

import alexnet
from trackers import mlflow_record, neptune_record

EPOCH_KEYS = ["epoch", "train/loss", "train/acc", "val/loss", "val/acc", "lr", "epoch_time_s", "throughput_img_s"]
ADMIN, PASSWORD = "admin", "correct-horse-battery-staple"
# Servers reached directly (the runs' environment routes everything else to a dead proxy); system
# metrics every second, so even a short run has them.
LOCAL = {
    "no_proxy": "127.0.0.1,localhost",
    "NO_PROXY": "127.0.0.1,localhost",
    "MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL": "1",
}
MLFLOW = os.path.join(os.path.dirname(sys.executable), "mlflow")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(command, folder, **env):
    """A server in its own process group (so all its workers stop together), logging to folder/log."""
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "log"), "w") as log:
        return subprocess.Popen(
            command,
            cwd=folder,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "HOME": str(folder), **env},
        )


def wait_until_up(proc, url, timeout=180):
    start_time = time.time()
    while time.time() - start_time < timeout:
        assert proc.poll() is None, f"the server for {url} exited ({proc.returncode})"
        with contextlib.suppress(OSError):
            urllib.request.urlopen(url, timeout=2)
            return
        time.sleep(0.5)
    raise TimeoutError(url)


def stop(proc):
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """Two real MLflow servers started side by side: one open, one with basic auth."""
    folder = tmp_path_factory.mktemp("servers")
    # auth_cache_ttl_seconds: a checked password is remembered, not hashed again (PBKDF2) on every request
    (folder / "auth.ini").write_text(
        f"[mlflow]\ndefault_permission = READ\nadmin_username = {ADMIN}\n"
        f"admin_password = {PASSWORD}\ndatabase_uri = sqlite:///{folder}/users.sqlite\n"
        "auth_cache_ttl_seconds = 300\n"
    )
    ports, procs = {"plain": free_port(), "auth": free_port()}, {}
    try:
        for kind, extra, env in (
            ("plain", [], {}),
            (
                "auth",
                ["--app-name", "basic-auth"],
                {
                    "MLFLOW_AUTH_CONFIG_PATH": str(folder / "auth.ini"),
                    "MLFLOW_FLASK_SERVER_SECRET_KEY": "test-only-secret",
                },
            ),
        ):
            procs[kind] = start(
                [
                    MLFLOW,
                    "server",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(ports[kind]),
                    "--workers",
                    "1",
                    "--backend-store-uri",
                    f"sqlite:///{folder}/{kind}/db.sqlite",
                    "--artifacts-destination",
                    str(folder / kind / "artifacts"),
                    *extra,
                ],
                folder / kind,
                MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false",
                **env,
            )  # no job runners
        for kind, proc in procs.items():
            wait_until_up(proc, f"http://127.0.0.1:{ports[kind]}/health")
        yield {kind: f"http://127.0.0.1:{port}" for kind, port in ports.items()}
    finally:
        for proc in procs.values():
            stop(proc)


def our_run_id(out):
    [run_id] = [d for d in os.listdir(out) if d[0].isdigit()]
    return run_id


def read_back(uri, out):
    """The MLflow record of the run in `out` (the only MLflow run with its run id), and a client on the store."""
    from mlflow import MlflowClient  # here: the pytest process imports mlflow only under a running test

    client = MlflowClient(uri, uri)
    experiment = client.get_experiment_by_name("alexnet-cifar10")
    [run] = client.search_runs([experiment.experiment_id], f"tags.run_id = '{our_run_id(out)}'")
    return dict(client=client, run=run, model="alexnet-cifar10")  # one registered model: the experiment's


def engine_history(out):
    with open(out / our_run_id(out) / "history.json") as f:
        return json.load(f)


def series(record, key):
    return [(m.step, m.value) for m in record["client"].get_metric_history(record["run"].info.run_id, key)]


def artifacts(record, path=None):
    """Every artifact file of the run, recursively."""
    return mlflow_record.artifact_paths(record["client"], record["run"].info.run_id, path)


@pytest.fixture(scope="module")
def offline_run(cifar_dir, tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    out = tmp_path_factory.mktemp("runs")
    result = run_script("mlflow_tracking.py", quick_args(cifar_dir, out, epochs=3), home, **LOCAL, fresh=True)
    assert result.returncode == 0, result.stderr[-3000:]
    return dict(
        result=result, home=home, out=out, history=engine_history(out), **read_back(f"sqlite:///{out}/mlflow.db", out)
    )


@pytest.fixture(scope="module")
def online_run(cifar_dir, servers, tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    out = tmp_path_factory.mktemp("runs")
    result = run_script(
        "mlflow_tracking.py",
        [
            "--mode",
            "online",
            *quick_args(cifar_dir, out, epochs=3)[2:],
            "--name",
            "online-run",
            "--tags",
            "smoke",
            "--notes",
            "a note",
        ],
        home,
        MLFLOW_TRACKING_URI=servers["plain"],
        **LOCAL,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return dict(result=result, home=home, out=out, history=engine_history(out), **read_back(servers["plain"], out))


RECORDS = ["offline_run", "online_run"]


@pytest.mark.parametrize("which", RECORDS)
def test_every_epoch_and_step_equals_the_engine_history(which, request):
    record = request.getfixturevalue(which)
    engine = record["history"]["epochs"]
    for key in EPOCH_KEYS:
        assert series(record, key) == [(e["epoch"], pytest.approx(e[key], rel=1e-12)) for e in engine], key
    assert [step for step, _ in series(record, "train/batch_loss")] == [1, *range(2, 3 * 6 + 1, 2)]
    assert all(0 <= acc <= 1 for _, acc in series(record, "train/batch_acc"))


@pytest.mark.parametrize("which", RECORDS)
def test_params_dataset_and_run_state(which, request):
    record = request.getfixturevalue(which)
    run, cfg = record["run"], record["history"]["config"]
    for key in (
        "epochs",
        "batch_size",
        "lr",
        "optimizer",
        "seed",
        "log_every",
        "recipe",
        "model_params",
        "dataset_version",
        "torch_version",
    ):
        assert run.data.params[key] == str(cfg[key]), key
    assert run.data.params["tags"] == str(cfg["tags"])
    [dataset_input] = run.inputs.dataset_inputs
    assert dataset_input.dataset.digest == cfg["dataset_version"] and dataset_input.dataset.name == "cifar10"
    assert json.loads(dataset_input.dataset.source)["uri"].endswith("cifar-10-batches-py")
    assert {t.key: t.value for t in dataset_input.tags}["mlflow.data.context"] == "training"
    assert run.info.status == "FINISHED" and run.data.tags["results"] == "recorded"
    assert any(key.startswith("system/cpu_utilization") for key in run.data.metrics)  # MLflow's own monitor
    if which == "online_run":
        assert run.info.run_name == "online-run" and "smoke" in run.data.tags
        assert run.data.tags["mlflow.note.content"] == "a note"


@pytest.mark.parametrize("which", RECORDS)
def test_model_versions_in_the_registry(which, request, tmp_path):
    record = request.getfixturevalue(which)
    client, summary = record["client"], record["history"]["summary"]
    rid = record["run"].info.run_id
    versions = sorted(client.search_model_versions(f"run_id = '{rid}'"), key=lambda v: int(v.version))
    bests = best_epochs(record["history"])  # a version per new best epoch, then the final one
    assert len(versions) == len(bests) + 1 and {v.name for v in versions} == {record["model"]}
    assert {v.tags["run_id"] for v in versions} == {our_run_id(record["out"])}
    final = versions[-1]  # this run's newest
    finals = [v for v in client.search_model_versions(f"name = '{record['model']}'") if "test_acc" in v.tags]
    champion = client.get_model_version_by_alias(record["model"], "champion")  # the best final of every run
    assert float(champion.tags["test_acc"]) == max(float(v.tags["test_acc"]) for v in finals)
    assert final.tags["test_acc"] == str(summary["test/acc"]) and final.tags["epoch"] == str(summary["best/epoch"])
    epochs = [int(v.tags["epoch"]) for v in versions[:-1]]
    assert epochs == bests  # one version per new best epoch
    for v in versions:  # each version's file holds the epoch it was registered for
        if v.source.startswith("file://"):  # offline: the checkpoint where the engine wrote it
            path = v.source[len("file://") :]
            assert path.startswith(str(record["out"])) and "/checkpoints/" in path
        else:  # online: uploaded into the run's artifacts
            path = client.download_artifacts(v.run_id, f"checkpoints/{v.source.rsplit('/', 1)[1]}", str(tmp_path))
        assert alexnet.load_checkpoint(path)["epoch"] == int(v.tags["epoch"])
        assert float(v.tags["val_acc"]) == pytest.approx(alexnet.load_checkpoint(path)["val_acc"])


def test_the_champion_returns_to_the_best_final_version_after_a_stale_run_moved_it(tmp_path):
    """Runs that end together each set the alias champion: one that read the versions before the
    best final one was registered can set it last, on a worse one. The next run's final version
    moves it back to the best final version of all, not to itself."""
    from trackers.mlflow_tracker import champion, register_version

    client = mlflow_record.client(tmp_path)
    model = "alexnet-cifar10"

    def final(test_acc):
        return register_version(client, model, f"file:///{test_acc}.pt", None, {"test_acc": test_acc}, [])

    best, stale = final(0.6), final(0.5)
    client.set_registered_model_alias(model, "champion", stale)  # set by the run that read too early
    assert not champion(client, model, final(0.4))
    assert client.get_model_version_by_alias(model, "champion").version == best
    equal = final(0.6)
    assert champion(client, model, equal)  # the newest of equals
    assert client.get_model_version_by_alias(model, "champion").version == equal


@pytest.mark.parametrize("which", RECORDS)
def test_evaluation_and_summary(which, request, tmp_path):
    record = request.getfixturevalue(which)
    files = artifacts(record)
    assert {"architecture.txt", "dataset.json", "test/confusion_matrix.png", "test/confusion_matrix.json"} <= set(files)
    mistakes = [f for f in files if f.startswith("test/most_confident_mistakes/")]
    assert len(mistakes) == mistakes_shown(record["history"]["summary"], 100)
    assert all("_true-" in f and "_predicted-" in f for f in mistakes)
    counts = record["client"].download_artifacts(record["run"].info.run_id, "test/confusion_matrix.json", str(tmp_path))
    with open(counts) as f:
        assert sum(map(sum, json.load(f)["counts"])) == 100  # the fixture's test images
    metrics = record["run"].data.metrics
    for key, value in record["history"]["summary"].items():
        assert metrics[key] == pytest.approx(value), key
    assert 0 <= metrics["test/per_class_acc/airplane"] <= 1


def test_offline_home_untouched_and_where(offline_run):
    assert os.listdir(offline_run["home"]) == []
    assert "mlflow ui --backend-store-uri sqlite:///" in offline_run["result"].stdout


def test_online_where_names_the_run_page(online_run, servers):
    assert f"{servers['plain']}/#/experiments/" in online_run["result"].stdout


def test_interrupt_then_resume_continues_the_same_mlflow_run(tmp_path):
    out = tmp_path / "D"
    code, err = interrupt_in_epoch_2("mlflow_tracking.py", out, signal.SIGINT, tmp_path)
    assert code == 130, err[-2000:]
    interrupted = read_back(f"sqlite:///{out}/mlflow.db", out)
    assert interrupted["run"].info.status == "KILLED"
    resumed = run_script("mlflow_tracking.py", resume_args(out, extra=["--resume"]), tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    record = read_back(f"sqlite:///{out}/mlflow.db", out)  # still one run with our run id
    assert record["run"].info.run_id == interrupted["run"].info.run_id and record["run"].info.status == "FINISHED"
    assert len(record["run"].inputs.dataset_inputs) == 1
    engine = engine_history(out)["epochs"]
    assert series(record, "val/acc") == [(e["epoch"], pytest.approx(e["val/acc"])) for e in engine]
    assert [step for step, _ in series(record, "epoch")] == [1, 2, 3]  # each epoch once
    assert [step for step, _ in series(record, "train/batch_loss")] == [1, *range(3, 3 * 9 + 1, 3)]  # 576 images / 64
    versions = record["client"].search_model_versions(f"run_id = '{record['run'].info.run_id}'")
    assert [v.tags["epoch"] for v in versions if "test_acc" in v.tags] == [str(record_best(engine))]  # one final
    assert record["client"].get_model_version_by_alias(record["model"], "champion").run_id == record["run"].info.run_id


def record_best(epochs):
    return max(epochs, key=lambda e: e["val/acc"])["epoch"]


def online(tmp_path):
    """Flags of a run that never trains: each stops where the tracker opens."""
    return [
        "--mode",
        "online",
        "--dataset",
        "synthetic",
        "--train-size",
        128,
        "--device",
        "cpu",
        "--out-dir",
        tmp_path / "runs",
    ]


def test_prompt_hides_the_password_and_a_wrong_one_is_one_line(servers, tmp_path):
    code, text, _ = answer_prompt(
        ["mlflow_tracking.py", *online(tmp_path)],
        tmp_path,
        "MLflow username",
        ADMIN,
        more=[("password", "not-the-password")],
        MLFLOW_TRACKING_URI=servers["auth"],
        **LOCAL,
    )
    assert "not-the-password" not in text  # not echoed, not printed back
    assert code == 2 and "Traceback" not in text
    assert "rejected the credentials" in text and "--mode offline" in text


def test_right_password_records_the_run_and_is_never_stored(servers, cifar_dir, tmp_path, monkeypatch):
    out = tmp_path / "runs"
    result = run_script(
        "mlflow_tracking.py",
        ["--mode", "online", *quick_args(cifar_dir, out, epochs=1)[2:]],
        tmp_path,
        MLFLOW_TRACKING_URI=servers["auth"],
        MLFLOW_TRACKING_USERNAME=ADMIN,
        MLFLOW_TRACKING_PASSWORD=PASSWORD,
        **LOCAL,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", ADMIN)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", PASSWORD)
    record = read_back(servers["auth"], out)
    assert record["run"].info.status == "FINISHED" and len(series(record, "val/acc")) == 1
    assert files_containing(tmp_path, PASSWORD) == []
    assert not any(PASSWORD in v for v in {**record["run"].data.params, **record["run"].data.tags}.values())


def test_no_credentials_and_no_terminal(servers, tmp_path):
    result = run_script("mlflow_tracking.py", online(tmp_path), tmp_path, MLFLOW_TRACKING_URI=servers["auth"], **LOCAL)
    assert_one_line_error(result, 2, "MLFLOW_TRACKING_USERNAME", "--mode offline")


def test_no_tracking_uri(tmp_path):
    result = run_script("mlflow_tracking.py", online(tmp_path), tmp_path)
    assert_one_line_error(result, 2, "MLFLOW_TRACKING_URI", "--mode offline")


def test_unreachable_server_answers_fast(tmp_path):
    started = time.time()
    result = run_script(
        "mlflow_tracking.py", online(tmp_path), tmp_path, MLFLOW_TRACKING_URI=f"http://127.0.0.1:{free_port()}", **LOCAL
    )
    assert_one_line_error(result, 2, "cannot reach", "Connection refused")
    assert time.time() - started < 60


def test_a_web_server_that_is_not_mlflow(tmp_path):
    port = free_port()
    proc = start([sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)], tmp_path / "web")
    try:
        wait_until_up(proc, f"http://127.0.0.1:{port}/")
        result = run_script(
            "mlflow_tracking.py", online(tmp_path), tmp_path, MLFLOW_TRACKING_URI=f"http://127.0.0.1:{port}", **LOCAL
        )
    finally:
        stop(proc)
    assert_one_line_error(result, 2, "does not answer as an MLflow tracking server", "HTTP 404")


def test_same_flags_as_the_other_scripts(capsys):
    """Every script has the shared flags; besides them, only the flags its adapter adds (add_arguments)."""
    import argparse
    import importlib

    shared = []
    for tool in TOOLS:
        with pytest.raises(SystemExit):
            importlib.import_module(tool.script[: -len(".py")]).main(["--help"])
        flags = {w.strip("[],") for w in capsys.readouterr().out.split() if w.startswith(("--", "[--"))}
        own = argparse.ArgumentParser(add_help=False)
        tool.tracker.add_arguments(own)
        own_flags = {o for action in own._actions for o in action.option_strings}
        assert own_flags <= flags, tool.name
        shared.append(sorted(flags - own_flags))
    assert all(f == shared[0] for f in shared) and "--resume" in shared[0]


def test_mlflow_and_neptune_record_the_same_epochs_on_the_same_seed(offline_run, cifar_dir, tmp_path):
    result = run_script(
        "neptune_integration.py",
        quick_args(cifar_dir, tmp_path / "runs", epochs=3),
        tmp_path,
        NEPTUNE_API_TOKEN=NEPTUNE_TOKEN,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    ops = neptune_record.run_operations(str(tmp_path / "runs"))
    for key in ("val/acc", "train/loss"):
        assert series(offline_run, key) == neptune_record.series(ops, key), key
