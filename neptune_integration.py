"""Train AlexNet on CIFAR-10 and track it with Neptune (client 1.14).

    python neptune_integration.py --mode offline     # no account needed; `neptune sync` later
    python neptune_integration.py --project ws/proj  # online: NEPTUNE_API_TOKEN or a prompt

neptune.ai's hosted app closed on 2026-03-05: online mode reaches a self-hosted Neptune server (the
API token encodes its address). The same flags, metrics, artifacts and order as the other tools'
scripts: only the tracker differs (its adapter: trackers/neptune_tracker.py).
"""

import sys

import cli


def main(argv=None):
    return cli.main("neptune", argv)


if __name__ == "__main__":
    sys.exit(main())
