"""Neptune's probe: what the installed client does offline, for the report's rubric (trackers/probing.py)."""

import os

from trackers import probing


def probe(work):
    os.environ["NEPTUNE_DATA_DIRECTORY"] = os.path.join(work, ".neptune")
    os.environ.pop("NEPTUNE_API_TOKEN", None)
    import neptune

    found = {"version": neptune.__version__, "cli": "neptune"}
    found["registry_offline"] = probing.outcome(
        lambda: neptune.init_model(key="PROBE", project="probe/probe", mode="offline")
    )
    found["histogram_type"] = probing.attribute(neptune.types, ["histogram"], "histogram type")
    found["dataset_input_offline"] = found["dataset_input_online"] = probing.attribute(
        neptune.Run, ["use_artifact", "log_input"], "call that marks a dataset version as a run's input"
    )
    found["resume"] = probing.parameter(neptune.init_run, "custom_run_id", "continues a run under its id, on a server")
    found["cli_needs_pkg_resources"] = probing.needs_pkg_resources("neptune.cli.__main__")
    try:
        from neptune.cli.__main__ import main as cli

        found["commands"], found["resolves"] = probing.cli_answers(cli)
    except ImportError:  # its command line does not start without pkg_resources
        found["commands"], found["resolves"] = [], dict.fromkeys(probing.ASKED)
    found["integrations"] = probing.frameworks("neptune.integrations")
    found["pytorch_module"] = probing.present("neptune.integrations.pytorch")
    found["pytorch_integration"] = probing.importable("neptune.integrations.pytorch")
    found["sweep_driver"] = found["search_driver_offline"] = probing.attribute(
        neptune, ["sweep", "tune", "hyperopt"], "hyperparameter search"
    )
    found["optuna_module"] = probing.present("neptune.integrations.optuna")
    found["optuna_integration"] = probing.importable("neptune.integrations.optuna")

    def optuna_callback():
        from neptune_optuna import NeptuneCallback

        run = neptune.init_run(project="probe/probe", mode="offline")
        try:
            probing.optuna_study([NeptuneCallback(run)])
        finally:
            run.stop()
        return "neptune-optuna's NeptuneCallback recorded 3 trials (complete, pruned, failed) in an offline run"

    found["optuna_study"] = probing.outcome(optuna_callback)
    found["report_api"] = probing.attribute(neptune, ["report"], "report API")
    return found
