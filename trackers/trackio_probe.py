"""Trackio's probe: what the installed client does offline, for the report's rubric (trackers/probing.py)."""

import os
import re
import subprocess
import sys

from trackers import probing


def _commands():
    """The subcommands of Trackio's command line (argparse, not click: read from its --help)."""
    trackio_cli = os.path.join(os.path.dirname(sys.executable), "trackio")
    shown = subprocess.run([trackio_cli, "--help"], capture_output=True, text=True, timeout=120).stdout
    choices = re.search(r"\{([\w,-]+)\}", shown)
    return sorted(choices.group(1).split(",")) if choices else []


def probe(work):
    os.environ["TRACKIO_DIR"] = os.path.join(work, "trackio")  # read when trackio is imported
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    for key in ("TRACKIO_SPACE_ID", "TRACKIO_SERVER_URL"):
        os.environ.pop(key, None)
    import trackio

    found = {"version": trackio.__version__, "cli": "trackio"}
    commands = _commands()
    found["commands"] = commands
    # What the rubric asks of a command line: its upload, its viewers (Trackio's UI is `show`), a server.
    found["resolves"] = {
        "sync": "sync" if "sync" in commands else None,
        "leet": None,
        "ui": "show" if "show" in commands else None,
        "server": None,
    }
    found["server_here"] = {
        "accepted": "show" in commands,
        "said": "`trackio show` serves the local store's dashboard and its HTTP API to others (the test suite "
        "starts it and reads a run back over HTTP)",
    }
    found["cli_needs_pkg_resources"] = probing.needs_pkg_resources("trackio.cli")
    run = trackio.init(project="probe", name="probe", embed=False, auto_log_cpu=False)
    trackio.log({"x": 1.0}, step=1)
    data = os.path.join(work, "data.txt")
    with open(data, "w") as f:
        f.write("probe")
    dataset = trackio.Artifact("probe-data", type="dataset")
    dataset.add_reference(f"file://{data}")
    trackio.log_artifact(dataset)
    found["dataset_input_offline"] = found["dataset_input_online"] = probing.outcome(
        lambda: run.use_artifact("probe-data") and "trackio.use_artifact records a dataset version as the run's input"
    )
    model = trackio.Artifact("probe-model", type="model")
    model.add_file(data)
    logged = trackio.log_artifact(model, aliases=["best"])

    def registry():
        trackio.Api().create_registry("probe")
        logged.link("registry-probe/model", aliases=["best"])
        return "a model version linked into a local registry (trackio.Api().create_registry, Artifact.link)"

    found["registry_offline"] = probing.outcome(registry)
    found["histogram_type"] = probing.outcome(lambda: trackio.Histogram([1.0, 2.0]) and "trackio.Histogram")
    trackio.finish()
    found["resume"] = probing.parameter(trackio.init, "resume", "reopens a run of the same name")
    # Trackio's reports are markdown that runs log (trackio.Markdown); `trackio show` lists them
    found["report_api"] = probing.attribute(trackio, ["markdown"], "report type")
    found["reports_here"] = {
        "accepted": False,
        "said": "`trackio show` shows the markdown reports runs log (trackio.Markdown); it builds none from runs",
    }
    found["integrations"] = probing.frameworks("trackio")
    found["pytorch_module"] = probing.present("trackio.integrations.torch")
    found["pytorch_integration"] = probing.importable("trackio.integrations.torch")
    found["sweep_driver"] = found["search_driver_offline"] = probing.attribute(
        trackio, ["sweep", "tune", "hyperopt"], "hyperparameter search"
    )
    found["optuna_study"] = probing.outcome(_optuna_callback)
    return found


def _optuna_callback():
    import importlib.util

    if importlib.util.find_spec("optuna_integration.trackio") is None:
        raise ModuleNotFoundError("optuna-integration has no Trackio callback (optuna_integration.trackio)")
    return "optuna-integration's Trackio callback"


def show(out_dir, evidence):
    """The run's dashboard (`trackio show` on the run's store, on a free port, stopped at the end), as
    headless Chromium shows it: evidence/trackio_dashboard.png; the file's name."""
    import tempfile

    from trackers import trackio_record

    folder = os.path.abspath(trackio_record.store(out_dir))
    with tempfile.TemporaryDirectory(prefix="trackio-show-") as scratch:
        port = probing.free_port()
        env = {
            **os.environ,
            "TRACKIO_DIR": folder,
            "GRADIO_SERVER_PORT": str(port),
            "BROWSER": "true",  # `trackio show` opens a browser: none
            "NO_PROXY": "127.0.0.1,localhost",
            "HF_HUB_OFFLINE": "1",
        }
        server = probing.serve(
            [os.path.join(os.path.dirname(sys.executable), "trackio"), "show", "--project", trackio_record.PROJECT],
            f"http://127.0.0.1:{port}/version",
            os.path.join(scratch, "show.log"),
            env,
        )
        try:
            probing.screenshot(
                f"http://127.0.0.1:{port}/", os.path.join(evidence, "trackio_dashboard.png"), scratch, env
            )
        finally:
            probing.stop(server)
    return "trackio_dashboard.png"
