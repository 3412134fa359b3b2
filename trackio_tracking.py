"""Train AlexNet on CIFAR-10 and track it with Trackio (client 0.43, Hugging Face).

    python trackio_tracking.py --mode offline     # a local store under --out-dir; `trackio show` on it
    TRACKIO_SPACE_ID=user/space python trackio_tracking.py --mode online   # a Hugging Face Space

Free and local-first: everything stays in a SQLite store on disk unless a Space or a Trackio server
is named. The same flags, metrics, artifacts and order as the other tools' scripts: only the tracker
differs (its adapter: trackers/trackio_tracker.py).
"""

import sys

import cli


def main(argv=None):
    return cli.main("trackio", argv)


if __name__ == "__main__":
    sys.exit(main())
