"""What the installed clients do, asked now in offline mode: the facts the rubric takes from a probe.

Each probe calls the client (or inspects the command line or modules it installed) and keeps what it
answered, in one line; nothing reaches a network and nothing is written outside a temporary folder.
"""

import contextlib
import importlib
import importlib.util
import io
import os
import pkgutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tracking import first_line  # noqa: E402


def outcome(fn):
    """("accepted", value) or ("refused", the client's first line)."""
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            value = fn()
        return {"accepted": True, "said": str(value) if value is not None else "accepted"}
    except Exception as e:  # the client's own refusal, whatever its type
        return {"accepted": False, "said": f"{type(e).__name__}: {first_line(e)}" if str(e) else type(e).__name__}


def importable(name):
    return outcome(lambda: importlib.import_module(name) and "imports")


def parameter(fn, name, what):
    """Whether a client call takes a parameter (how it resumes a run, say)."""
    import inspect

    def find():
        if name not in inspect.signature(fn).parameters:
            raise LookupError(f"{fn.__module__}.{fn.__qualname__} takes no {name}")
        return f"{fn.__qualname__}({name}=...): {what}"

    return outcome(find)


def needs_pkg_resources(module):
    """Whether the module behind a client's command line imports pkg_resources (removed in setuptools 81)."""
    with open(importlib.util.find_spec(module).origin) as f:
        return "import pkg_resources" in f.read()


def frameworks(package):
    """The training frameworks a client ships a module for."""
    return [n for n in modules(package) if n in FRAMEWORKS]


def present(name):
    """Whether the client ships a module (without importing it: some need extra packages)."""

    def find():
        if importlib.util.find_spec(name) is None:
            raise ModuleNotFoundError(f"the installed client has no module {name}")
        return name

    return outcome(find)


def attribute(module, words, what):
    """The first public name of `module` that contains one of `words`, or a refusal naming what is missing."""

    def find():
        names = [n for n in dir(module) if not n.startswith("_") and any(w in n.lower() for w in words)]
        if not names:
            raise LookupError(f"no {what} in {module.__name__}'s API")
        return f"{module.__name__}.{names[0]}"

    return outcome(find)


def optuna_objective(trial):
    """The integration probes' objective: trial 0 completes, trial 1 is pruned, trial 2 fails."""
    import optuna

    x = trial.suggest_float("x", 0.0, 1.0)
    trial.report(x, 1)
    if trial.number == 1:
        raise optuna.TrialPruned()
    if trial.number == 2:
        raise ValueError("a failed trial")
    return x


def optuna_study(callbacks=(), storage=None):
    """Three trials, one of each ending, through a vendor's Optuna integration (a callback or a storage)."""
    import warnings

    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        study = optuna.create_study(storage=storage, direction="maximize", sampler=optuna.samplers.RandomSampler(0))
        study.optimize(optuna_objective, n_trials=3, callbacks=list(callbacks), catch=(ValueError,))
    return study


ASKED = ("sync", "leet", "ui", "server")  # the commands the rubric asks each CLI about


def cli_answers(cli):
    """Each command the CLI lists, and what it resolves each asked name to (MLflow's `ui` is `server`)."""
    import click

    ctx = click.Context(cli)
    resolved = {}
    for name in ASKED:
        with contextlib.redirect_stderr(io.StringIO()):
            try:
                command = cli.get_command(ctx, name)
            except (click.UsageError, SystemExit):
                command = None
        resolved[name] = command.name if command else None
    return sorted(cli.list_commands(ctx)), resolved


def modules(package):
    """The submodules a client ships for other frameworks, and how many import with nothing else installed."""
    pkg = importlib.import_module(package)
    names = sorted(m.name for m in pkgutil.iter_modules(pkg.__path__) if not m.name.startswith("_"))
    return names


def probe_wandb(work):
    import wandb
    from wandb.cli.cli import cli

    found = {"version": wandb.__version__}
    run = wandb.init(mode="offline", dir=work, project="probe", settings=wandb.Settings(silent=True))
    found["use_artifact_offline"] = outcome(lambda: run.use_artifact("dataset:latest"))
    model = wandb.Artifact("probe-model", type="model")
    with model.new_file("model.txt") as f:
        f.write("probe")
    run.log_artifact(model)
    found["registry_link_offline"] = outcome(lambda: run.link_artifact(model, "wandb-registry-model/probe"))
    found["histogram_type"] = outcome(lambda: wandb.Histogram([1.0, 2.0]) and "wandb.Histogram")
    run.finish()
    found["sweep_offline"] = outcome(
        lambda: wandb.sweep({"method": "random", "parameters": {"lr": {"values": [1, 2]}}}, project="probe")
    )
    found["sweep_driver"] = attribute(wandb, ["sweep"], "hyperparameter search")

    def optuna_callback():
        import warnings

        from optuna_integration.wandb import WeightsAndBiasesCallback

        with warnings.catch_warnings(record=True) as said:
            warnings.simplefilter("always")
            callback = WeightsAndBiasesCallback(wandb_kwargs=dict(mode="offline", dir=work, project="probe"))
        optuna_study([callback])
        wandb.finish()
        deprecated = [str(w.message).split(". ")[0] for w in said if issubclass(w.category, FutureWarning)]
        return (
            "optuna-integration's WeightsAndBiasesCallback recorded 3 trials (complete, pruned, failed) in an "
            "offline run" + (f"; {deprecated[0]}" if deprecated else "")
        )

    found["optuna_study"] = outcome(optuna_callback)
    found["dataset_input"] = attribute(wandb.Run, ["use_artifact"], "call that marks an artifact as a run's input")
    found["resume"] = parameter(wandb.init, "resume", "continues a run under its id")
    found["commands"], found["resolves"] = cli_answers(cli)
    found["cli_needs_pkg_resources"] = needs_pkg_resources("wandb.cli.cli")
    found["report_api"] = present("wandb.apis.reports")
    found["report_api_extra"] = importable("wandb_workspaces")
    found["integrations"] = frameworks("wandb.integration")
    found["pytorch_module"] = present("wandb.integration.torch")
    found["pytorch_integration"] = importable("wandb.integration.torch")
    return found


def probe_neptune(work):
    import neptune

    found = {"version": neptune.__version__}
    found["registry_offline"] = outcome(lambda: neptune.init_model(key="PROBE", project="probe/probe", mode="offline"))
    found["histogram_type"] = attribute(neptune.types, ["histogram"], "histogram type")
    found["dataset_input"] = attribute(
        neptune.Run, ["use_artifact", "log_input"], "call that marks a dataset version as a run's input"
    )
    found["resume"] = parameter(neptune.init_run, "custom_run_id", "continues a run under its id, on a server")
    found["cli_needs_pkg_resources"] = needs_pkg_resources("neptune.cli.__main__")
    try:
        from neptune.cli.__main__ import main as cli

        found["commands"], found["resolves"] = cli_answers(cli)
    except ImportError:  # its command line does not start without pkg_resources
        found["commands"], found["resolves"] = [], dict.fromkeys(ASKED)
    found["integrations"] = frameworks("neptune.integrations")
    found["pytorch_module"] = present("neptune.integrations.pytorch")
    found["pytorch_integration"] = importable("neptune.integrations.pytorch")
    found["sweep_driver"] = attribute(neptune, ["sweep", "tune", "hyperopt"], "hyperparameter search")
    found["optuna_module"] = present("neptune.integrations.optuna")
    found["optuna_integration"] = importable("neptune.integrations.optuna")

    def optuna_callback():
        from neptune_optuna import NeptuneCallback

        run = neptune.init_run(project="probe/probe", mode="offline")
        try:
            optuna_study([NeptuneCallback(run)])
        finally:
            run.stop()
        return "neptune-optuna's NeptuneCallback recorded 3 trials (complete, pruned, failed) in an offline run"

    found["optuna_study"] = outcome(optuna_callback)
    found["report_api"] = attribute(neptune, ["report"], "report API")
    return found


def probe_mlflow(work):
    import mlflow
    from mlflow.cli import cli
    from mlflow.server.handlers import get_endpoints

    found = {"version": mlflow.__version__}
    uri = f"sqlite:///{os.path.join(work, 'probe.db')}"
    client = mlflow.MlflowClient(uri, uri)

    def registry():
        client.create_registered_model("probe")
        experiment = client.create_experiment("probe", artifact_location=f"file://{work}/artifacts")
        run = client.create_run(experiment)
        version = client.create_model_version("probe", f"file://{work}/artifacts/model", run_id=run.info.run_id)
        client.set_registered_model_alias("probe", "best", version.version)
        return f"version {version.version} with alias best, on a SQLite store"

    found["registry_local"] = outcome(registry)
    found["latest_alias"] = outcome(lambda: client.set_registered_model_alias("probe", "latest", "1"))

    def dataset_input():
        from mlflow.data.code_dataset_source import CodeDatasetSource
        from mlflow.data.meta_dataset import MetaDataset

        mlflow.set_tracking_uri(uri)
        with mlflow.start_run(experiment_id=client.get_experiment_by_name("probe").experiment_id):
            mlflow.log_input(MetaDataset(CodeDatasetSource({"probe": "probe"}), name="probe", digest="0"), "training")
            with mlflow.start_run(nested=True):
                pass
        return "mlflow.log_input and a nested run, on a SQLite store"

    found["dataset_input_local"] = outcome(dataset_input)
    found["histogram_type"] = attribute(mlflow, ["histogram"], "histogram logging call")
    found["commands"], found["resolves"] = cli_answers(cli)
    found["cli_needs_pkg_resources"] = needs_pkg_resources("mlflow.cli")
    found["resume"] = parameter(mlflow.start_run, "run_id", "reopens a run")
    found["report_api"] = attribute(mlflow, ["report"], "report API")
    found["report_endpoints"] = sorted({str(path) for path, _, _ in get_endpoints() if "report" in str(path).lower()})
    found["integrations"] = frameworks("mlflow")
    found["pytorch_module"] = present("mlflow.pytorch")
    found["pytorch_integration"] = importable("mlflow.pytorch")
    found["optuna_module"] = present("mlflow.optuna")
    found["optuna_integration"] = importable("mlflow.optuna")

    def optuna_storage():
        from mlflow.optuna.storage import MlflowStorage

        mlflow.set_tracking_uri(uri)
        experiment = client.create_experiment("optuna-probe", artifact_location=f"file://{work}/artifacts")
        storage = MlflowStorage(experiment)
        optuna_study(storage=storage)
        storage.flush_all_batches()
        runs = client.search_runs([experiment])
        children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
        if len(children) != 3:
            raise AssertionError(f"MlflowStorage left {len(children)} child runs of 3 trials")
        return (
            f"mlflow.optuna's MlflowStorage recorded 3 trials as child runs of the study's run on a SQLite "
            f"store ({', '.join(sorted(r.info.status for r in children))})"
        )

    found["optuna_study"] = outcome(optuna_storage)
    found["sweep_driver"] = attribute(mlflow, ["sweep", "tune", "hyperopt", "search_space"], "hyperparameter search")
    return found


# Training frameworks (not LLM services) a tracker's client may ship a module for.
FRAMEWORKS = {
    "catboost",
    "fastai",
    "h2o",
    "keras",
    "lightgbm",
    "lightning",
    "onnx",
    "paddle",
    "pmdarima",
    "prophet",
    "pytorch",
    "pytorch_lightning",
    "sklearn",
    "spacy",
    "spark",
    "statsmodels",
    "tensorflow",
    "torch",
    "transformers",
    "xgboost",
    "diffusers",
    "sentence_transformers",
    "ultralytics",
    "sb3",
    "detectron2",
    "tensorflow_keras",
    "mosaicml",
    "kedro",
    "sacred",
    "huggingface",
    "tensorboard",
}


def probe_all():
    """Every probe, in a temporary folder that is removed afterwards; HOME and each client's folders point there."""
    with tempfile.TemporaryDirectory(prefix="probes-") as work:
        saved = dict(os.environ)
        os.environ.update(
            HOME=work,
            WANDB_DIR=work,
            WANDB_CONFIG_DIR=os.path.join(work, ".wandb-config"),
            WANDB_CACHE_DIR=os.path.join(work, ".wandb-cache"),
            WANDB_DATA_DIR=os.path.join(work, ".wd"),
            WANDB_ARTIFACT_DIR=os.path.join(work, ".wa"),
            WANDB_MODE="offline",
            NEPTUNE_DATA_DIRECTORY=os.path.join(work, ".neptune"),
            XDG_CONFIG_HOME=work,
            MPLCONFIGDIR=os.path.join(work, ".mpl"),
        )
        for key in ("WANDB_API_KEY", "NEPTUNE_API_TOKEN", "MLFLOW_TRACKING_URI"):
            os.environ.pop(key, None)
        try:
            return {"W&B": probe_wandb(work), "Neptune": probe_neptune(work), "MLflow": probe_mlflow(work)}
        finally:
            os.environ.clear()
            os.environ.update(saved)


if __name__ == "__main__":
    import json

    print(json.dumps(probe_all(), indent=1))
