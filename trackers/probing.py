"""What a probe of a tracker's installed client is made of (trackers/<key>_probe.py): each probe calls
the client offline, or inspects the command line or modules it installed, and keeps what it answered,
in one line; nothing reaches a network and nothing is written outside the folder it is given.
"""

import contextlib
import importlib
import importlib.util
import io
import pkgutil

from trackers.base import first_line


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


# A tool's own viewer on a real run, captured for the report (each probe module's optional `show`).
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1000",
    "--virtual-time-budget=15000",
]


def free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(command, url, log_path, env, wait_s=120):
    """Start a viewer's server (a process group of its own) and wait until `url` answers; the process.
    A server that exits first is a RuntimeError with the end of its log."""
    import subprocess
    import time
    import urllib.request

    with open(log_path, "w") as log:
        server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            with open(log_path) as log:
                raise RuntimeError(f"{log.read()[-3000:]}\n{command[0]} exited ({server.returncode})")
        with contextlib.suppress(OSError):
            urllib.request.urlopen(url, timeout=2)
            return server
        time.sleep(0.5)
    stop(server)
    raise RuntimeError(f"{command[0]} did not answer at {url} within {wait_s} s")


def stop(server):
    import os
    import signal

    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pid, signal.SIGTERM)
    server.wait(30)


def screenshot(url, png, scratch, env):
    """A PNG of the page at `url`, taken by Debian's headless Chromium (installed with apt-get if missing)."""
    import os
    import shutil
    import subprocess
    import sys

    if not shutil.which("chromium"):
        print("installing Debian's chromium (apt-get)", file=sys.stderr)
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], check=True)
    os.makedirs(os.path.dirname(os.path.abspath(png)), exist_ok=True)
    subprocess.run(
        [
            shutil.which("chromium"),
            *CHROMIUM_FLAGS,
            f"--user-data-dir={os.path.join(scratch, 'chromium')}",
            f"--screenshot={os.path.abspath(png)}",
            url,
        ],
        env={**env, "XDG_CACHE_HOME": scratch},
        check=True,
        capture_output=True,
        timeout=180,
    )
