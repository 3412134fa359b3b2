"""A screenshot of a finished offline MLflow run's page in the MLflow UI, taken by headless Chromium.

    python benchmarks/mlflow_ui_screenshot.py --out-dir runs/mlflow report/evidence/mlflow_ui.png

Starts `mlflow ui` on the local store that `mlflow_tracking.py --mode offline --out-dir DIR` wrote
(on a free port, stopped at the end), opens the run's page (the newest run, or --run-id) in
Debian's chromium, installed with apt-get if missing, and saves the PNG. Not part of the tests.
"""

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

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


def newest_run(store_uri, run_id):
    """(experiment id, run id) of the given run, or of the newest one in the store."""
    from mlflow import MlflowClient

    client = MlflowClient(store_uri)
    if run_id:
        return client.get_run(run_id).info.experiment_id, run_id
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments, order_by=["attributes.start_time DESC"], max_results=1)
    if not runs:
        sys.exit(f"error: no MLflow run in {store_uri}")
    return runs[0].info.experiment_id, runs[0].info.run_id


def chromium():
    if not shutil.which("chromium"):
        print("installing Debian's chromium (apt-get)", file=sys.stderr)
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], check=True)
    return shutil.which("chromium")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    p = argparse.ArgumentParser(description="Screenshot an offline MLflow run's page in the MLflow UI.")
    p.add_argument("png", help="where to save the screenshot (e.g. report/evidence/mlflow_ui.png)")
    p.add_argument("--out-dir", required=True, help="the --out-dir of the offline run (holds mlflow.db)")
    p.add_argument("--run-id", help="the MLflow run id (default: the newest run in the store)")
    a = p.parse_args()
    out_dir = os.path.abspath(a.out_dir)
    store = os.path.join(out_dir, "mlflow.db")
    if not os.path.isfile(store):
        sys.exit(f"error: {store} not found: give the --out-dir of a `mlflow_tracking.py --mode offline` run")
    with tempfile.TemporaryDirectory(prefix="mlflow-ui-") as scratch:
        # MLflow (here and in the server) writes its telemetry id under XDG_CONFIG_HOME, chromium its
        # disk cache under XDG_CACHE_HOME: both in the scratch folder, not home. No job runners.
        env = {
            **os.environ,
            "XDG_CONFIG_HOME": scratch,
            "XDG_CACHE_HOME": scratch,
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        }
        os.environ["XDG_CONFIG_HOME"] = scratch
        experiment_id, run_id = newest_run(f"sqlite:///{store}", a.run_id)
        browser = chromium()
        port = free_port()
        with open(os.path.join(scratch, "ui.log"), "w") as log:
            ui = subprocess.Popen(
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
                    f"sqlite:///{store}",
                    "--default-artifact-root",
                    os.path.join(out_dir, "mlartifacts"),
                ],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            for _ in range(240):
                if ui.poll() is not None:
                    with open(os.path.join(scratch, "ui.log")) as log:
                        sys.exit(f"{log.read()[-3000:]}\nerror: mlflow ui exited ({ui.returncode})")
                with contextlib.suppress(OSError):
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
                    break
                time.sleep(0.5)
            # workflowType: the UI's model-training view (it opens in its GenAI view otherwise)
            url = f"http://127.0.0.1:{port}/#/experiments/{experiment_id}/runs/{run_id}?workflowType=machine_learning"
            os.makedirs(os.path.dirname(os.path.abspath(a.png)), exist_ok=True)
            subprocess.run(
                [
                    browser,
                    *CHROMIUM_FLAGS,
                    f"--user-data-dir={os.path.join(scratch, 'chromium')}",
                    f"--screenshot={os.path.abspath(a.png)}",
                    url,
                ],
                env=env,
                check=True,
                capture_output=True,
                timeout=180,
            )
        finally:
            os.killpg(ui.pid, signal.SIGTERM)
            ui.wait(30)
    print(f"{a.png}: {url}")


if __name__ == "__main__":
    main()
