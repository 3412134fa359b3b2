"""MLflow's adapter (client 3.17): one run per job, reopened on resume (offline: a SQLite store and
an artifact folder under --out-dir), metrics on explicit steps (per-step ones through MLflow's
background queue), a dataset input, Model Registry versions with aliases, figures and images for
the test evaluation, and a search's trials as child runs of the study's run.

Online, a server that asks for credentials gets MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD,
MLFLOW_TRACKING_TOKEN, or a prompt. `mlflow` is imported by the adapter's constructor, once the
folders it writes to at import are set (`local_folders`), and inside the methods after that.
"""

import collections
import contextlib
import getpass
import json
import logging
import os
import re
import sys
import time
import warnings
from pathlib import Path

import durable
from trackers import base, mlflow_record, run_files, studies

EXPERIMENT = "alexnet-cifar10"
CHAMPION = "champion"  # the alias of the best final version across runs, as MLflow's docs name it
CREDENTIALS = "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (or MLFLOW_TRACKING_TOKEN)"


def local_folders(out_dir):
    """Importing mlflow writes its telemetry installation id under $XDG_CONFIG_HOME (else ~/.config),
    and matplotlib its cache under MPLCONFIGDIR: both under `out_dir` unless the user set them (set
    before mlflow is imported). The variables left to us, with our values; as in Tracker.keep_or_set, a
    value set for an earlier run of this process is ours, not the user's."""
    ours = {
        var: os.path.join(out_dir, sub)
        for var, sub in (("XDG_CONFIG_HOME", ".mlflow-config"), ("MPLCONFIGDIR", ".matplotlib"))
        if not base.USER_ENVIRONMENT.get(var)
    }
    os.environ.update(ours)
    return ours


def write_errors():
    """What MLflow raises when it cannot write its record: a full disk under the SQLite store, the
    store's or server's refusal, SQLAlchemy's own error where a new store's migrations fail."""
    import mlflow
    import sqlalchemy

    return (OSError, mlflow.exceptions.MlflowException, sqlalchemy.exc.SQLAlchemyError)


def create_store(path):
    """A new SQLite store at `path`, made whole or not at all: MLflow's migrations run on a temporary
    file renamed into place when done, so a full disk or a kill during them never leaves a half-made
    store (which MLflow then cannot open: "table _alembic_tmp_... already exists")."""
    if os.path.exists(path):
        return
    import mlflow

    def migrate(tmp):
        if os.path.exists(tmp):  # a try cut short before
            os.remove(tmp)
        uri = f"sqlite:///{tmp}"
        mlflow.MlflowClient(uri, uri).search_registered_models(max_results=1)  # the tracking and registry tables

    durable.write_atomically(path, migrate)


def experiment_id(client, name, artifact_location=None):
    """The id of the experiment `name`, made if there is none (artifacts at `artifact_location`, a
    local store's folder; None online: the server's)."""
    experiment = client.get_experiment_by_name(name)
    return (
        experiment.experiment_id if experiment else client.create_experiment(name, artifact_location=artifact_location)
    )


def register_version(client, model, source, run_id, tags, aliases, model_tags=None, description=None):
    """A new version of the registered model `model` (made, with `model_tags`, if there is none) from
    the file at `source`, with `aliases` pointing at it. MLflow reserves "latest" for the newest version
    (models:/NAME/latest): it is never set as an alias."""
    if not client.search_registered_models(f"name = '{model}'"):
        from mlflow.exceptions import MlflowException

        try:
            client.create_registered_model(model, tags=model_tags, description=description)
        except MlflowException as e:  # runs started together: another made it since the search
            if e.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
    version = client.create_model_version(model, source, run_id=run_id, tags=tags).version
    for alias in aliases:
        if alias != "latest":
            client.set_registered_model_alias(model, alias, version)
    return version


def champion(client, model, version, tries=5):
    """The alias "champion" moved to the best final version of all the runs that registered into
    `model` (the highest tag test_acc, the newest of equals); whether `version` holds it.

    Runs that end together each read the versions and set the alias: one that read before another's
    final version was registered may set it last, on a worse one, and two setting it at once can
    collide in the store. So each run reads the versions again after it sets the alias and sets it
    again while they name another: the last run to set it has read every final version."""
    from mlflow.exceptions import MlflowException

    def best():
        finals = client.search_model_versions(f"name = '{model}'")
        return max((float(v.tags["test_acc"]), int(v.version)) for v in finals if "test_acc" in v.tags)[1]

    chosen = best()
    for attempt in range(tries):
        try:
            client.set_registered_model_alias(model, CHAMPION, chosen)
        except MlflowException:  # another run set it at the same moment
            if attempt == tries - 1:
                raise
            chosen = best()
            continue
        latest = best()
        if latest == chosen:
            break
        chosen = latest
    return int(client.get_model_version_by_alias(model, CHAMPION).version) == int(version)


class MlflowTracker(base.Tracker):
    name = "MLflow"
    project_help = f"MLflow experiment (default: MLFLOW_EXPERIMENT_NAME, else '{EXPERIMENT}')"
    mode_help = "online if MLFLOW_TRACKING_URI names a server, else offline"

    @classmethod
    def add_arguments(cls, parser):
        parser.add_argument(
            "--registered-model",
            default=None,
            metavar="NAME",
            help="the Model Registry's model each run adds its versions to (default: the experiment's name)",
        )

    @staticmethod
    def default_mode():
        """MLflow has no mode setting: a tracking server named in MLFLOW_TRACKING_URI means online; without
        one MLflow records locally, and so does the script."""
        uri = os.environ.get("MLFLOW_TRACKING_URI")
        return ("online", f"MLFLOW_TRACKING_URI={uri}") if uri else ("offline", None)

    def __init__(self, args, run_dir):
        super().__init__(args, run_dir)
        self.queued = collections.deque()  # (metrics, step, timestamp, MLflow's operation) per queued call
        ours = local_folders(args.out_dir)
        self.settings += [f"{var}={os.environ[var]}" for var in ("XDG_CONFIG_HOME", "MPLCONFIGDIR") if var not in ours]
        if not args.project:  # the experiment MLflow's own settings name, online (offline: a new store)
            names = (
                ("MLFLOW_EXPERIMENT_NAME",)
                if args.mode == "offline"
                else ("MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME")
            )
            self.settings += [f"{var}={os.environ[var]}" for var in names if os.environ.get(var)][:1]
        import mlflow
        import mlflow.data.code_dataset_source
        import mlflow.data.dataset_source_registry
        import mlflow.data.meta_dataset

        self.write_errors = write_errors()
        logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)  # said in one line instead
        if args.mode == "offline":
            # A SQLite store holds runs and the Model Registry alike; the artifacts lie beside it.
            self.store = os.path.join(args.out_dir, "mlflow.db")
            self.artifacts = os.path.join(args.out_dir, "mlartifacts")
            mlflow.set_tracking_uri(f"sqlite:///{self.store}")
        else:
            self.uri = os.environ.get("MLFLOW_TRACKING_URI")
            if not self.uri:
                raise base.UsageError(
                    "--mode online needs the MLflow server's address in MLFLOW_TRACKING_URI "
                    "(e.g. http://127.0.0.1:5000), or run with --mode offline"
                )
            if self.uri.startswith(("http://", "https://")):
                self._authenticate()

    def _authenticate(self):
        """Check that the server is MLflow and lets us in; ask for a username and password if it wants them."""
        from mlflow.utils.credentials import read_mlflow_creds

        status, creds = self._probe(), read_mlflow_creds()
        if status == 401 and not (creds.password or os.environ.get("MLFLOW_TRACKING_TOKEN")):
            if not sys.stdin.isatty():
                raise base.UsageError(
                    f"the MLflow server at {self.uri} asks for credentials: set {CREDENTIALS}, "
                    "or run with --mode offline"
                )
            user = creds.username or input(f"MLflow username at {self.uri}: ").strip()
            password = getpass.getpass(f"MLflow password for {user} (input hidden): ")
            # This process only, where MLflow's client reads them; never saved.
            os.environ.update(MLFLOW_TRACKING_USERNAME=user, MLFLOW_TRACKING_PASSWORD=password)
            status = self._probe()
        if status == 401:
            raise base.UsageError(
                f"the MLflow server at {self.uri} rejected the credentials: check {CREDENTIALS}, "
                "or run with --mode offline"
            )
        if status == 403:
            raise base.UsageError(
                f"the MLflow server at {self.uri} lets this user in but not read experiments; "
                "ask its admin for access, or run with --mode offline"
            )

    def _probe(self, timeout_s=45):
        """The HTTP status of one REST call (200, 401 or 403), with no retries: MLflow's client
        retries an unreachable server for minutes, and a user deserves a verdict sooner."""
        import mlflow
        from mlflow.utils.credentials import get_default_host_creds
        from mlflow.utils.rest_utils import http_request

        try:
            response = base.call_with_timeout(
                lambda: http_request(
                    get_default_host_creds(self.uri),
                    "/api/2.0/mlflow/experiments/search",
                    "GET",
                    max_retries=0,
                    timeout=timeout_s,
                    params={"max_results": 1},
                ),
                timeout_s,
            )
        except TimeoutError:
            raise base.UsageError(
                f"no answer from the MLflow server at {self.uri} within {timeout_s} s; "
                "check MLFLOW_TRACKING_URI or run with --mode offline"
            ) from None
        except mlflow.exceptions.MlflowException as e:
            reason = re.search(r"\[Errno -?\d+\] ([^'\"()]+)", str(e))
            raise base.UsageError(
                f"cannot reach an MLflow server at {self.uri} "
                f"({reason.group(1).strip() if reason else base.first_line(e)}); "
                "check MLFLOW_TRACKING_URI or run with --mode offline"
            ) from None
        if response.status_code in (401, 403):
            return response.status_code
        try:
            if response.status_code == 200 and isinstance(response.json(), dict):
                return 200
        except ValueError:  # an HTML page: some other web server
            pass
        raise base.UsageError(
            f"{self.uri} does not answer as an MLflow tracking server (HTTP "
            f"{response.status_code} from its REST API); check MLFLOW_TRACKING_URI "
            "or run with --mode offline"
        )

    def start(self, config, model):
        import mlflow

        a = self.args
        try:
            experiment, parent = self._open_experiment(config.get("study"))
            # A resumed run is found by our run id, kept as a tag: the same MLflow run continues.
            earlier = self.client.search_runs([experiment], f"tags.run_id = '{self.run_id}'", max_results=1)
            tags = {"run_id": self.run_id, **dict.fromkeys(a.tags, "")}
            if parent:
                tags.update(study=config["study"], trial=str(config["trial"]))
            self.run = mlflow.start_run(
                run_id=earlier[0].info.run_id if earlier else None,
                experiment_id=experiment,
                run_name=a.name,
                description=a.notes,
                tags=tags,
                log_system_metrics=True,
                parent_run_id=None if earlier else parent,
            )
        except mlflow.exceptions.MlflowException as e:
            raise base.UsageError(
                f"MLflow could not open the run: {base.first_line(e)}; run with --mode offline to track locally"
            ) from None
        # A param cannot change once logged: a resumed run logs only those it lacks.
        logged = self.run.data.params
        mlflow.log_params({key: value for key, value in config.items() if key not in logged})
        mlflow.log_artifact(run_files.architecture_file(self.run_dir, model, config["model_params"]))
        # One registered model for the experiment's runs, each adding its versions (tagged with its run id).
        self.model_name = a.registered_model or self.client.get_experiment(experiment).name

    def _open_experiment(self, study=None):
        """The experiment's id, and the run of the search `study` if this run is one of its trials:
        the trials' parent, as MLflow nests a search's runs (mlflow.optuna's storage does the same)."""
        import mlflow

        a = self.args
        name = a.project or os.environ.get("MLFLOW_EXPERIMENT_NAME", EXPERIMENT)
        # MLflow's own setting, an experiment's id on the user's server: online only (offline is a new store).
        chosen = None if a.project or a.mode == "offline" else os.environ.get("MLFLOW_EXPERIMENT_ID")
        # Runs started together into a new folder: one creates the store (its migrations race), the
        # experiment and the study's run, the others wait for it.
        with (
            durable.exclusive(os.path.join(a.out_dir, ".mlflow-store.lock"))
            if a.mode == "offline"
            else contextlib.nullcontext()
        ):
            if a.mode == "offline":
                create_store(self.store)
            self.client = mlflow.MlflowClient()
            if chosen:
                try:
                    experiment = self.client.get_experiment(chosen).experiment_id
                except mlflow.exceptions.MlflowException:
                    raise base.UsageError(
                        f"MLFLOW_EXPERIMENT_ID={chosen}: no such experiment in {mlflow.get_tracking_uri()}; "
                        "unset it or give --project"
                    ) from None
            else:
                experiment = experiment_id(
                    self.client, name, Path(self.artifacts).as_uri() if a.mode == "offline" else None
                )
            if not study:
                return experiment, None
            found = self.client.search_runs([experiment], f"tags.run_id = '{study}-study'", max_results=1)
            parent = (
                found[0].info.run_id
                if found
                else self.client.create_run(
                    experiment, run_name=study, tags={"run_id": f"{study}-study", "study": study}
                ).info.run_id
            )
        return experiment, parent

    def open_study(self, name):
        import mlflow

        try:  # the study's run, the trials' parent, made once (the search holds its lock)
            self._open_experiment(name)
        except mlflow.exceptions.MlflowException as e:
            raise base.UsageError(
                f"MLflow could not open the study's run: {base.first_line(e)}; run with --mode offline to track locally"
            ) from None

    def log_trial(self, outcome):
        import mlflow

        mlflow.set_tag("trial_state", outcome["state"])
        mlflow.log_metrics(
            {f"trial/{key}": outcome[key] for key in ("value", "duration_s") if outcome[key] is not None}
        )

    def log_study(self, study):
        """The study's run, the trials' parent (made by the first trial): the search space, the
        trials as a table, the best trial; then closed. MLflow's Compare view shows the children."""
        import mlflow

        try:
            _, parent = self._open_experiment(study.study_name)
            columns, rows = studies.trials_table(study)
            with mlflow.start_run(run_id=parent):
                mlflow.log_params(
                    {"search_space": json.dumps(study.user_attrs.get("search_space")), "direction": "maximize"}
                )
                mlflow.log_table({c: [row[i] for row in rows] for i, c in enumerate(columns)}, "trials.json")
                mlflow.set_tags(studies.best_values(study))
        except mlflow.exceptions.MlflowException as e:
            raise base.UsageError(f"MLflow could not record the study: {base.first_line(e)}") from None
        return []

    def recorded(self):
        return mlflow_record.held(self.client, self.run.info.run_id)

    def log_dataset(self, info, files):
        import mlflow

        if files:
            with warnings.catch_warnings():  # MLflow 3.17 registers its local source twice and warns of it
                warnings.simplefilter("ignore")
                source = mlflow.data.dataset_source_registry.resolve_dataset_source(os.path.dirname(files[0]))
        else:
            source = mlflow.data.code_dataset_source.CodeDatasetSource({"generator": info["source"]})
        dataset = mlflow.data.meta_dataset.MetaDataset(source, name=info["name"], digest=info["version"])
        try:
            mlflow.log_input(dataset, context="training")
        except mlflow.exceptions.MlflowException:
            # Runs started together into one experiment: each looks the dataset up, finds none and
            # adds it, and the store keeps the first (UNIQUE experiment, name, digest); the others'
            # inputs are refused. Once more, the store's copy is found and this run's input links it.
            mlflow.log_input(dataset, context="training")
        mlflow.log_dict(info, "dataset.json")

    # Explicit steps: a resumed run continues the same axis. Per-step metrics go through MLflow's
    # background queue (flushed by end_run): a synchronous call costs about 7 ms on SQLite (2 CPU
    # cores), a round trip online; queued, under 1 ms.
    def log_metrics(self, metrics, step):
        import mlflow

        timestamp = int(time.time() * 1000)  # kept, so that writing it again stores the same point once
        operation = mlflow.log_metrics(metrics, step=step, timestamp=timestamp, synchronous=False)
        while self.queued and mlflow_record.stored(self.queued[0][3]):  # kept only until the queue has stored it
            self.queued.popleft()
        self.queued.append((metrics, step, timestamp, operation))

    def _store_queued(self):
        """Wait for the queue to store the step metrics logged so far. A batch it could not write (a
        locked or full store, a server's error) it only reports in a log line: written again here,
        where a failure stops the run and its resume logs the steps its record lacks."""
        import mlflow

        queued, self.queued = self.queued, collections.deque()
        for metrics, step, timestamp, operation in queued:
            try:
                operation.wait()
            except mlflow.exceptions.MlflowException:
                mlflow.log_metrics(metrics, step=step, timestamp=timestamp)

    def log_epoch(self, metrics, step, checkpoint=None, state=None):
        import mlflow

        # First what an epoch on record implies is recorded too: its steps and its model version.
        self._store_queued()
        if checkpoint:
            self.log_model(checkpoint)
        mlflow.log_metrics(metrics, step=metrics["epoch"])

    def log_model(self, checkpoint):
        import mlflow

        if self.args.mode == "offline":  # the file where it lies, as the other tools reference it: never rewritten
            source = Path(checkpoint.path).as_uri()
        else:  # a server cannot read this machine's disk: the file is uploaded into the run's artifacts
            mlflow.log_artifact(checkpoint.path, "checkpoints")
            source = f"{self.run.info.artifact_uri}/checkpoints/{os.path.basename(checkpoint.path)}"
        tags = {"run_id": self.run_id, "epoch": checkpoint.epoch, "val_acc": checkpoint.val_acc}
        if checkpoint.final:
            tags["test_acc"] = checkpoint.test_acc
        version = register_version(
            self.client,
            self.model_name,
            source,
            self.run.info.run_id,
            tags,
            [],
            description="AlexNet on CIFAR-10: each run's new best versions and its final one (tag run_id)",
        )
        if checkpoint.final and champion(self.client, self.model_name, version):
            self.champion = version

    def log_results(self, evaluation, checkpoint, summary, step):
        import mlflow
        from matplotlib import pyplot as plt

        fig = run_files.confusion_figure(evaluation)
        mlflow.log_figure(fig, "test/confusion_matrix.png")
        plt.close(fig)
        mlflow.log_dict(
            {"classes": evaluation.classes, "counts": evaluation.confusion.tolist()}, "test/confusion_matrix.json"
        )
        mlflow.log_metrics(
            {f"test/per_class_acc/{c}": a for c, a in zip(evaluation.classes, evaluation.per_class_acc, strict=True)},
            step=step,
        )
        for rank, m in enumerate(evaluation.mistakes):
            mlflow.log_image(
                m["image"],
                f"test/most_confident_mistakes/{rank:02d}_image{m['index']}_true-{m['true']}"
                f"_predicted-{m['predicted']}_p{m['probability']:.3f}.png",
            )
        if checkpoint:
            self.log_model(checkpoint)
        mlflow.log_metrics(summary, step=step)
        mlflow.set_tag("results", "recorded")  # last: the reader trusts it to mean all of the above

    def finish(self, status, exit_code):
        import mlflow

        if not hasattr(self, "run"):
            return
        try:
            self._store_queued()
        finally:
            mlflow.end_run(mlflow_record.STATUS[status])

    def where(self):
        run = self.run.info
        try:  # a search's trial registers no model
            versions = [str(v.version) for v in mlflow_record.versions_of(self.client, run.run_id)]
        except self.write_errors:  # a store that failed: say what a run normally has
            versions = []
        registry = (
            f"\n  registered model {self.model_name}: this run's versions {', '.join(versions)} (tag run_id); "
            f"models:/{self.model_name}@{CHAMPION} is the best final version of every run, "
            f"models:/{self.model_name}/latest the newest"
            + (" (this run's final version is the champion)" if getattr(self, "champion", None) else "")
            if versions
            else ""
        )
        if self.args.mode == "online":
            page = f"{self.uri.rstrip('/')}/#/experiments/{run.experiment_id}/runs/{run.run_id}"
            return f"MLflow run: {page if self.uri.startswith('http') else f'{run.run_id} in {self.uri}'}" + registry
        return (
            f"MLflow run {run.run_id} saved offline in {self.store} (artifacts in {self.artifacts})" + registry + "\n"
            f"  look at it: mlflow ui --backend-store-uri sqlite:///{self.store} "
            f"--default-artifact-root {self.artifacts}\n"
            "  share it:   MLflow has no sync command; run the same flags with --mode online and "
            "MLFLOW_TRACKING_URI set, or copy the run with mlflow-export-import (export-run, import-run)"
        )

    relocate = staticmethod(mlflow_record.repoint_store)  # --moved-from


Tracker = MlflowTracker
