"""The tools' own settings, as their users set them in a profile or a job script: each variable, when
set, wins over the scripts' defaults (which keep everything under --out-dir), and is said at the
start; the tool's own mode setting decides --mode when it is not given; on resume, a flag given
again is refused if it names the run and applied (and said) otherwise; the printed sync commands
cover every segment; MLflow's registry holds one model whose versions accumulate across runs."""

import os
import re
import shutil

import pytest
from conftest import EACH_TOOL, SMALL_MODEL, TOOLS, quick_args, read_run, run_script

import trackers

WANDB_FOLDERS = ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR")
STOPPED_AFTER_EPOCH_1 = ("state:1", "TERM")  # as a scheduler's SIGTERM once epoch 1 is saved: exit 143
WANDB = trackers.get("wandb")
NEPTUNE = trackers.get("neptune")
MLFLOW = trackers.get("mlflow")
TRACKIO = trackers.get("trackio")

# (tool, the environment the user set, the mode it decides); the last of each tool: nothing set.
MODES = [
    (WANDB, {"WANDB_MODE": "offline"}, "offline"),
    (WANDB, {"WANDB_MODE": "dryrun"}, "offline"),
    (WANDB, {"WANDB_MODE": "disabled"}, "disabled"),
    (WANDB, {}, "online"),
    (NEPTUNE, {"NEPTUNE_MODE": "offline"}, "offline"),
    (NEPTUNE, {"NEPTUNE_MODE": "debug"}, "disabled"),
    (NEPTUNE, {"NEPTUNE_MODE": "async"}, "online"),
    (NEPTUNE, {}, "online"),
    (MLFLOW, {"MLFLOW_TRACKING_URI": "http://127.0.0.1:5000"}, "online"),
    (MLFLOW, {}, "offline"),
    (TRACKIO, {"TRACKIO_SPACE_ID": "someone/space"}, "online"),
    (TRACKIO, {}, "offline"),
]


@pytest.mark.parametrize(
    "tool,env,mode", MODES, ids=[f"{t.key}-{next(iter(e.items()), ('unset',))[-1]}" for t, e, _ in MODES]
)
def test_the_tools_own_mode_setting_decides_when_mode_is_not_given(tool, env, mode, monkeypatch):
    for t in TOOLS:
        for var in os.environ:
            if var.startswith(f"{t.key.upper()}_"):
                monkeypatch.delenv(var)
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    chosen, setting = tool.tracker.default_mode()
    assert chosen == mode and (setting == (f"{next(iter(env))}={next(iter(env.values()))}" if env else None))


def run(tool, cifar_dir, out, home, *extra, epochs=1, fault=(), **env):
    args = quick_args(cifar_dir, out, epochs=epochs, extra=[*SMALL_MODEL, *extra])
    return run_script(tool.script, args, home, fault=fault, **env)


def test_wandb_mode_offline_in_the_environment_runs_offline_without_mode(cifar_dir, tmp_path):
    """A bare script in a job script that sets WANDB_MODE=offline: no key asked for, an offline run."""
    args = quick_args(cifar_dir, tmp_path / "runs", epochs=1, extra=SMALL_MODEL)[2:]  # no --mode
    result = run_script(WANDB.script, args, tmp_path, WANDB_MODE="offline")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "W&B: --mode offline, from WANDB_MODE=offline" in result.stdout
    assert read_run(WANDB, tmp_path / "runs", segments=1)["epochs"]


def test_mlflow_without_a_server_runs_offline_without_mode(cifar_dir, tmp_path):
    args = quick_args(cifar_dir, tmp_path / "runs", epochs=1, extra=SMALL_MODEL)[2:]
    result = run_script(MLFLOW.script, args, tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert os.path.exists(tmp_path / "runs" / "mlflow.db")


def test_mode_given_wins_over_the_tools_setting(cifar_dir, tmp_path):
    result = run(NEPTUNE, cifar_dir, tmp_path / "runs", tmp_path, NEPTUNE_MODE="debug")  # --mode offline given
    assert result.returncode == 0, result.stderr[-2000:]
    assert "from NEPTUNE_MODE" not in result.stdout and read_run(NEPTUNE, tmp_path / "runs")["epochs"]


def test_wandb_folders_set_by_the_user_are_used_and_the_resume_reads_them(cifar_dir, tmp_path):
    """WANDB_DIR and W&B's other folders, as a cluster's profile sets them: W&B writes there, nothing
    of W&B's lands under --out-dir, the start says so, and a resume finds the earlier segment there."""
    mine = {var: str(tmp_path / "scratch" / var.lower()) for var in WANDB_FOLDERS}
    out = tmp_path / "runs"
    first = run(WANDB, cifar_dir, out, tmp_path, epochs=3, fault=STOPPED_AFTER_EPOCH_1, **mine)
    assert first.returncode == 143, first.stderr[-2000:]
    assert re.search(r"your settings kept: WANDB_DIR=\S+scratch/wandb_dir, WANDB_CACHE_DIR=", first.stdout)
    resumed = run(WANDB, cifar_dir, out, tmp_path, "--resume", epochs=3, **mine)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert not {".wandb-cache", ".wandb-config", ".wandb-data", ".wandb-artifacts", "wandb"} & set(os.listdir(out))
    record = read_run(WANDB, mine["WANDB_DIR"], segments=2)  # both segments, where the user said
    assert [int(e["epoch"]) for e in record["epochs"]] == [1, 2, 3]
    assert os.listdir(mine["WANDB_DATA_DIR"])  # W&B staged its tables there
    # The printed upload command names both segments' folders.
    [sync] = [line for line in resumed.stdout.splitlines() if line.strip().startswith("upload it:  wandb sync")]
    folders = sync.split("wandb sync", 1)[1].split()
    assert len(folders) == 2 and all(f.startswith(mine["WANDB_DIR"]) and os.path.isdir(f) for f in folders)


def test_our_wandb_folders_are_under_out_dir_when_the_user_sets_none(cifar_dir, tmp_path):
    out = tmp_path / "runs"
    result = run(WANDB, cifar_dir, out, tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "your settings kept" not in result.stdout
    assert {"wandb", ".wandb-data", ".wandb-cache"} <= set(os.listdir(out))


def test_neptune_data_directory_set_by_the_user_is_used(cifar_dir, tmp_path):
    data = tmp_path / "scratch" / ".neptune"
    out = tmp_path / "runs"
    result = run(NEPTUNE, cifar_dir, out, tmp_path, NEPTUNE_DATA_DIRECTORY=str(data))
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"your settings kept: NEPTUNE_DATA_DIRECTORY={data}" in result.stdout
    assert not os.path.exists(out / ".neptune") and os.listdir(data / "offline")
    assert f"neptune sync --path {data}" in result.stdout


def test_mlflow_config_home_set_by_the_user_is_used(cifar_dir, tmp_path):
    """XDG_CONFIG_HOME (where MLflow keeps its telemetry id) and MPLCONFIGDIR (matplotlib's cache), set by
    the user: kept, said at the start, and no folder of ours made for them under --out-dir. (Telemetry is
    off under pytest and this run draws no font, so neither tool writes there in the test.)"""
    config, mpl = tmp_path / "my-config", tmp_path / "my-matplotlib"
    out = tmp_path / "runs"
    result = run(MLFLOW, cifar_dir, out, tmp_path, XDG_CONFIG_HOME=str(config), MPLCONFIGDIR=str(mpl))
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"your settings kept: XDG_CONFIG_HOME={config}, MPLCONFIGDIR={mpl}" in result.stdout
    assert not {".mlflow-config", ".matplotlib"} & set(os.listdir(out))


def test_mlflow_keeps_its_config_under_out_dir_when_the_user_sets_none(cifar_dir, tmp_path):
    out = tmp_path / "runs"
    result = run(MLFLOW, cifar_dir, out, tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "your settings kept" not in result.stdout
    assert not os.path.exists(tmp_path / ".config") and not os.path.exists(tmp_path / ".cache")  # home stays clean


def test_mlflow_runs_add_versions_to_one_registered_model_and_the_champion_moves(cifar_dir, tmp_path):
    import mlflow

    out = tmp_path / "runs"
    first = run(MLFLOW, cifar_dir, out, tmp_path, "--seed", 1, epochs=2)
    second = run(MLFLOW, cifar_dir, out, tmp_path, "--seed", 2, epochs=2)
    assert first.returncode == second.returncode == 0, first.stderr[-2000:] + second.stderr[-2000:]
    uri = f"sqlite:///{out}/mlflow.db"
    client = mlflow.MlflowClient(uri, uri)
    [model] = client.search_registered_models()
    assert model.name == "alexnet-cifar10"  # the experiment's name
    versions = client.search_model_versions(f"name = '{model.name}'")
    runs = {v.run_id for v in versions}
    assert len(runs) == 2 and len({v.tags["run_id"] for v in versions}) == 2
    finals = [v for v in versions if "test_acc" in v.tags]
    assert len(finals) == 2
    best = max(finals, key=lambda v: (float(v.tags["test_acc"]), -int(v.version)))
    assert client.get_model_version_by_alias(model.name, "champion").version == best.version
    for rid in runs:  # each run's own record holds its versions only
        mine = [v for v in versions if v.run_id == rid]
        assert len(mine) >= 2 and all(v.tags["run_id"] == mine[0].tags["run_id"] for v in mine)
    said = [line for line in second.stdout.splitlines() if "registered model alexnet-cifar10" in line]
    assert said and "champion" in said[0]


def test_mlflow_registered_model_flag_names_the_model(cifar_dir, tmp_path):
    import mlflow

    out = tmp_path / "runs"
    result = run(MLFLOW, cifar_dir, out, tmp_path, "--registered-model", "my-alexnet")
    assert result.returncode == 0, result.stderr[-2000:]
    uri = f"sqlite:///{out}/mlflow.db"
    assert [m.name for m in mlflow.MlflowClient(uri, uri).search_registered_models()] == ["my-alexnet"]


@EACH_TOOL
def test_on_resume_a_flag_naming_the_run_is_refused_and_others_are_applied(tool, cifar_dir, tmp_path):
    out = tmp_path / "runs"
    first = run(tool, cifar_dir, out, tmp_path, "--project", "first", epochs=2, fault=STOPPED_AFTER_EPOCH_1)
    assert first.returncode == 143, first.stderr[-2000:]
    refused = run(tool, cifar_dir, out, tmp_path, "--project", "other", "--resume", epochs=2)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "--project other differs from the run's --project first" in refused.stderr.strip().splitlines()[-1]
    moved = tmp_path / "data-moved"
    shutil.copytree(cifar_dir, moved)  # the data moved: a flag that says where things are is applied, and said
    applied = run(tool, moved, out, tmp_path, "--resume", epochs=2)
    assert applied.returncode == 0, applied.stderr[-2000:]
    assert f"--resume: --data-dir {moved} applied (the run had --data-dir {cifar_dir})" in applied.stdout
    assert [int(e["epoch"]) for e in read_run(tool, out)["epochs"]] == [1, 2]
