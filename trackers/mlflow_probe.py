"""MLflow's probe: what the installed client does offline, for the report's rubric (trackers/probing.py)."""

import os

from trackers import probing
from trackers.mlflow_tracker import local_folders


def probe(work):
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    local_folders(work)
    import mlflow
    from mlflow.cli import cli
    from mlflow.server.handlers import get_endpoints

    found = {"version": mlflow.__version__, "cli": "mlflow"}
    uri = f"sqlite:///{os.path.join(work, 'probe.db')}"
    client = mlflow.MlflowClient(uri, uri)

    def registry():
        client.create_registered_model("probe")
        experiment = client.create_experiment("probe", artifact_location=f"file://{work}/artifacts")
        run = client.create_run(experiment)
        version = client.create_model_version("probe", f"file://{work}/artifacts/model", run_id=run.info.run_id)
        client.set_registered_model_alias("probe", "best", version.version)
        return f"version {version.version} with alias best, on a SQLite store"

    # the local store is a Model Registry as a server's is
    found["registry_offline"] = found["registry_online"] = probing.outcome(registry)
    found["latest_alias"] = probing.outcome(lambda: client.set_registered_model_alias("probe", "latest", "1"))

    def dataset_input():
        from mlflow.data.code_dataset_source import CodeDatasetSource
        from mlflow.data.meta_dataset import MetaDataset

        mlflow.set_tracking_uri(uri)
        with mlflow.start_run(experiment_id=client.get_experiment_by_name("probe").experiment_id):
            mlflow.log_input(MetaDataset(CodeDatasetSource({"probe": "probe"}), name="probe", digest="0"), "training")
            with mlflow.start_run(nested=True):
                pass
        return "mlflow.log_input and a nested run, on a SQLite store"

    found["dataset_input_offline"] = found["dataset_input_online"] = probing.outcome(dataset_input)
    found["histogram_type"] = probing.attribute(mlflow, ["histogram"], "histogram logging call")
    found["commands"], found["resolves"] = probing.cli_answers(cli)
    found["server_here"] = {
        "accepted": found["resolves"]["server"] is not None,
        "said": "`mlflow server` in the installed client (the test suite starts it with SQLite and basic auth)",
    }
    found["cli_needs_pkg_resources"] = probing.needs_pkg_resources("mlflow.cli")
    found["resume"] = probing.parameter(mlflow.start_run, "run_id", "reopens a run")
    found["report_api"] = probing.attribute(mlflow, ["report"], "report API")
    endpoints = sorted({str(path) for path, _, _ in get_endpoints() if "report" in str(path).lower()})
    found["reports_here"] = {
        "accepted": bool(endpoints),
        "said": f"report endpoints in the installed server: {', '.join(endpoints)}"
        if endpoints
        else "the installed MLflow server has no report endpoint",
    }
    found["integrations"] = probing.frameworks("mlflow")
    found["pytorch_module"] = probing.present("mlflow.pytorch")
    found["pytorch_integration"] = probing.importable("mlflow.pytorch")
    found["optuna_module"] = probing.present("mlflow.optuna")
    found["optuna_integration"] = probing.importable("mlflow.optuna")

    def optuna_storage():
        from mlflow.optuna.storage import MlflowStorage

        mlflow.set_tracking_uri(uri)
        experiment = client.create_experiment("optuna-probe", artifact_location=f"file://{work}/artifacts")
        storage = MlflowStorage(experiment)
        probing.optuna_study(storage=storage)
        storage.flush_all_batches()
        runs = client.search_runs([experiment])
        children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
        if len(children) != 3:
            raise AssertionError(f"MlflowStorage left {len(children)} child runs of 3 trials")
        return (
            f"mlflow.optuna's MlflowStorage recorded 3 trials as child runs of the study's run on a SQLite "
            f"store ({', '.join(sorted(r.info.status for r in children))})"
        )

    found["optuna_study"] = probing.outcome(optuna_storage)
    found["sweep_driver"] = found["search_driver_offline"] = probing.attribute(
        mlflow, ["sweep", "tune", "hyperopt", "search_space"], "hyperparameter search"
    )
    return found


def show(out_dir, evidence):
    """The run's page in MLflow's UI (`mlflow ui` on the run's local store, on a free port, stopped at
    the end), as headless Chromium shows it: evidence/mlflow_ui.png; the file's name."""
    import sys
    import tempfile

    from trackers import mlflow_record

    out_dir = os.path.abspath(out_dir)
    with tempfile.TemporaryDirectory(prefix="mlflow-ui-") as scratch:
        # MLflow (here and in the server) writes its telemetry id under XDG_CONFIG_HOME: the scratch
        # folder, not home. No job runners.
        env = {**os.environ, "XDG_CONFIG_HOME": scratch, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        os.environ["XDG_CONFIG_HOME"] = scratch
        client = mlflow_record.client(out_dir)
        experiments = [e.experiment_id for e in client.search_experiments()]
        [run] = client.search_runs(experiments, order_by=["attributes.start_time DESC"], max_results=1)
        port = probing.free_port()
        ui = probing.serve(
            [
                os.path.join(os.path.dirname(sys.executable), "mlflow"),
                "ui",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                "1",
                "--backend-store-uri",
                mlflow_record.store_uri(out_dir),
                "--default-artifact-root",
                os.path.join(out_dir, "mlartifacts"),
            ],
            f"http://127.0.0.1:{port}/health",
            os.path.join(scratch, "ui.log"),
            env,
        )
        try:  # workflowType: the UI's model-training view (it opens in its GenAI view otherwise)
            probing.screenshot(
                f"http://127.0.0.1:{port}/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}"
                "?workflowType=machine_learning",
                os.path.join(evidence, "mlflow_ui.png"),
                scratch,
                env,
            )
        finally:
            probing.stop(ui)
    return "mlflow_ui.png"
