"""Train AlexNet on CIFAR-10 and track it with MLflow (client 3.17).

    python mlflow_tracking.py --mode offline                        # a local store; `mlflow ui` on it
    MLFLOW_TRACKING_URI=http://host:5000 python mlflow_tracking.py  # online: an MLflow tracking server

Online, a server that asks for credentials gets MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD,
MLFLOW_TRACKING_TOKEN, or a prompt. The same flags, metrics, artifacts and order as the other tools'
scripts: only the tracker differs (its adapter: trackers/mlflow_tracker.py).
"""

import sys

import cli


def main(argv=None):
    return cli.main("mlflow", argv)


if __name__ == "__main__":
    sys.exit(main())
