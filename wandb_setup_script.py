"""Train AlexNet on CIFAR-10 and track it with Weights & Biases.

    python wandb_setup_script.py --mode offline      # no account needed; `wandb sync` later
    python wandb_setup_script.py                     # online: WANDB_API_KEY, `wandb login`, or a prompt

The same flags, metrics, artifacts and order as the other tools' scripts: only the tracker differs
(its adapter: trackers/wandb_tracker.py).
"""

import sys

import cli


def main(argv=None):
    return cli.main("wandb", argv)


if __name__ == "__main__":
    sys.exit(main())
