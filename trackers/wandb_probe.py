"""W&B's probe: what the installed client does offline, for the report's rubric (trackers/probing.py)."""

import os

from trackers import probing
from trackers.wandb_tracker import local_folders


def probe(work):
    os.environ.update(WANDB_MODE="offline")
    os.environ.pop("WANDB_API_KEY", None)
    os.environ.update(local_folders(work))
    import wandb
    from wandb.cli.cli import cli

    found = {"version": wandb.__version__, "cli": "wandb"}
    run = wandb.init(mode="offline", dir=work, project="probe", settings=wandb.Settings(silent=True))
    found["dataset_input_offline"] = probing.outcome(lambda: run.use_artifact("dataset:latest"))
    model = wandb.Artifact("probe-model", type="model")
    with model.new_file("model.txt") as f:
        f.write("probe")
    run.log_artifact(model)
    found["registry_offline"] = probing.outcome(lambda: run.link_artifact(model, "wandb-registry-model/probe"))
    found["histogram_type"] = probing.outcome(lambda: wandb.Histogram([1.0, 2.0]) and "wandb.Histogram")
    run.finish()
    sweep = probing.outcome(
        lambda: wandb.sweep({"method": "random", "parameters": {"lr": {"values": [1, 2]}}}, project="probe")
    )
    found["sweep_offline"] = sweep
    found["search_driver_offline"] = {**sweep, "said": f"wandb.sweep offline: {sweep['said']}"}
    found["sweep_driver"] = probing.attribute(wandb, ["sweep"], "hyperparameter search")

    def optuna_callback():
        import warnings

        from optuna_integration.wandb import WeightsAndBiasesCallback

        with warnings.catch_warnings(record=True) as said:
            warnings.simplefilter("always")
            callback = WeightsAndBiasesCallback(wandb_kwargs=dict(mode="offline", dir=work, project="probe"))
        probing.optuna_study([callback])
        wandb.finish()
        deprecated = [str(w.message).split(". ")[0] for w in said if issubclass(w.category, FutureWarning)]
        return (
            "optuna-integration's WeightsAndBiasesCallback recorded 3 trials (complete, pruned, failed) in an "
            "offline run" + (f"; {deprecated[0]}" if deprecated else "")
        )

    found["optuna_study"] = probing.outcome(optuna_callback)
    found["dataset_input_online"] = probing.attribute(
        wandb.Run, ["use_artifact"], "call that marks an artifact as a run's input"
    )
    found["resume"] = probing.parameter(wandb.init, "resume", "continues a run under its id")
    found["commands"], found["resolves"] = probing.cli_answers(cli)
    found["cli_needs_pkg_resources"] = probing.needs_pkg_resources("wandb.cli.cli")
    found["report_api"] = probing.present("wandb.apis.reports")
    found["report_api_extra"] = probing.importable("wandb_workspaces")
    found["integrations"] = probing.frameworks("wandb.integration")
    found["pytorch_module"] = probing.present("wandb.integration.torch")
    found["pytorch_integration"] = probing.importable("wandb.integration.torch")
    return found


def show(out_dir, evidence, width=150, height=44):
    """The screen of `wandb leet` (W&B's terminal UI) on the run's last segment, captured as text with
    tmux: evidence/leet_screen.txt; the file's name."""
    import subprocess
    import sys
    import time

    from trackers import wandb_record

    folder = os.path.dirname(wandb_record.logs(out_dir)[-1])
    wandb_cli = os.path.join(os.path.dirname(sys.executable), "wandb")
    session = f"leet-{os.getpid()}"
    subprocess.run(
        ["tmux", "new-session", "-d", "-s", session, "-x", str(width), "-y", str(height), f"{wandb_cli} leet {folder}"],
        check=True,
    )
    try:
        time.sleep(8)  # it reads the whole log before it draws
        screen = subprocess.run(
            ["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True, check=True
        ).stdout
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
    with open(os.path.join(evidence, "leet_screen.txt"), "w") as f:
        f.write("\n".join(line.rstrip() for line in screen.splitlines()).strip("\n") + "\n")
    return "leet_screen.txt"
