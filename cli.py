"""The command line the tracker scripts share: one parser (the same flags for every tool), and `main`,
which runs one tracked run, a search (--search) or a record's move (--moved-from) with the tool asked for.
"""

import argparse
import os
import sys

import alexnet
import lifecycle
import ranks
import trackers


def positive(kind):
    def parse(text):
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value

    return parse


def _non_negative(text):
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def _smoothing(text):
    value = float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be from 0 to 1 (exclusive), got {text}")
    return value


def _fraction(text):
    value = float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1 (exclusive), got {text}")
    return value


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser(tracker_class):
    tool = tracker_class.name
    p = _Parser(description=f"Train AlexNet on CIFAR-10 and track the run with {tool}.")
    p.add_argument(
        "--mode",
        choices=["online", "offline", "disabled"],
        default=None,
        help=f"online: sync to a {tool} server; offline: record locally, sync later; "
        f"disabled: no tracking (default: {tracker_class.mode_help})",
    )
    p.add_argument("--project", default=None, help=tracker_class.project_help)
    p.add_argument("--name", default=None, help="run name (default: the tracker's)")
    p.add_argument("--tags", nargs="*", default=[], help="run tags")
    p.add_argument("--notes", default=None, help="run notes / description")
    p.add_argument("--data-dir", default="./data", help="where CIFAR-10 is or is downloaded to (default: ./data)")
    p.add_argument(
        "--dataset",
        choices=["cifar10", "synthetic"],
        default="cifar10",
        help="cifar10, or synthetic: generated CIFAR-shaped data that needs no download",
    )
    p.add_argument(
        "--skip-checksum",
        action="store_true",
        help="load a CIFAR-10 copy in the official python-batch layout whose checksums "
        "differ from the official files (its own content hash is the version)",
    )
    p.add_argument(
        "--train-size",
        type=positive(int),
        default=None,
        help="use a seeded subset of this many training images (before the validation split)",
    )
    d = alexnet.RECIPES["default"]
    p.add_argument(
        "--recipe",
        choices=sorted(alexnet.RECIPES),
        default="default",
        help="default: the study's model, data, batch size and epochs, trained with SGD "
        "(Nesterov), weight decay, 2-epoch warmup, cosine decay and label smoothing, fitted "
        "to a small training set (see --batch-size); study: the "
        "original study's recipe exactly",
    )
    p.add_argument(
        "--optimizer",
        choices=alexnet.OPTIMIZERS,
        help=f"adam, adamw, or sgd with Nesterov momentum 0.9 (recipe: {d['optimizer']})",
    )
    p.add_argument("--epochs", type=positive(int), help=f"epochs (recipe: {d['epochs']})")
    p.add_argument(
        "--batch-size",
        type=positive(int),
        help=f"batch size (recipe: {d['batch_size']}; unless this or --lr is given, the default recipe "
        f"halves it, down to {alexnet.MIN_BATCH}, until an epoch has {alexnet.MIN_STEPS_PER_EPOCH} steps)",
    )
    p.add_argument(
        "--lr",
        type=positive(float),
        help=f"peak learning rate (recipe: {d['lr']:g}; times batch/{d['batch_size'] // 2}, and the "
        "warmup at most 8%% of the run, where the default recipe halves the batch)",
    )
    p.add_argument("--weight-decay", type=_non_negative, help=f"weight decay (recipe: {d['weight_decay']:g})")
    p.add_argument(
        "--label-smoothing",
        type=_smoothing,
        help=f"label smoothing of the training loss (recipe: {d['label_smoothing']:g})",
    )
    p.add_argument(
        "--warmup-epochs",
        type=_non_negative,
        help=f"epochs of linear warmup to the peak rate (recipe: {d['warmup_epochs']:g})",
    )
    p.add_argument("--seed", type=int, help=f"random seed (recipe: {d['seed']})")
    p.add_argument(
        "--val-fraction",
        type=_fraction,
        help=f"fraction of training data held out for validation (recipe: {d['val_fraction']:g})",
    )
    p.add_argument(
        "--hidden",
        type=positive(int),
        help=f"width of the classifier's two hidden layers (recipe: {d['hidden']}, the study's; the tests "
        "train with 256, a tenth of the parameters)",
    )
    p.add_argument(
        "--device", choices=["auto", "cpu", "cuda"], default="auto", help="auto: cuda if available, else cpu"
    )
    p.add_argument(
        "--compile",
        action="store_true",
        help="compile the model with torch.compile (pays off on a GPU; the first steps are slower)",
    )
    p.add_argument(
        "--out-dir",
        default="runs",
        help="everything the run writes: checkpoints and the tracker's local data (default: runs/)",
    )
    p.add_argument(
        "--log-every",
        type=positive(int),
        default=50,
        help="log per-step metrics every N optimizer steps (default: 50)",
    )
    p.add_argument(
        "--moved-from",
        metavar="OLD_DIR",
        help="--out-dir was copied or moved here from OLD_DIR (another path or machine): re-point "
        "the tracker's local records to where they are now, then exit",
    )
    p.add_argument(
        "--search",
        type=positive(int),
        metavar="N",
        help="search hyperparameters with Optuna instead of training one run: N trials (TPE sampler "
        "seeded by --seed) over the peak rate and weight decay (log scales), label smoothing and "
        "warmup, each trained with the other flags as given and recorded as a run, a median pruner "
        "stopping trials behind at an epoch; ends with the best trial and the command that trains "
        "it. The study lives in --out-dir: processes started with the same flags share its trials, "
        "and the same command (or --resume) continues a stopped search",
    )
    p.add_argument(
        "--resume",
        nargs="?",
        const="latest",
        metavar="RUN_DIR",
        help="continue the newest unfinished run in --out-dir, or the run folder RUN_DIR "
        "(wherever it is: its parent is then the --out-dir), from its last saved state, "
        "as the same tracker run, with the flags it was started with (a flag given again "
        "must match). --resume auto: continue the newest unfinished run in --out-dir if "
        "there is one, else start a new run, so one command line serves the first start, a "
        "torchrun restart and a scheduler's requeue (W&B's resume=\"allow\"). One process "
        "trains a run at a time: a second is refused, naming the first",
    )
    tracker_class.add_arguments(p)
    return p


_UNSET = object()


def given_flags(parser, argv, args):
    """The flags given on the command line, as opposed to those left at their defaults."""
    probe = parser.parse_args(argv, argparse.Namespace(**dict.fromkeys(vars(args), _UNSET)))
    return {key for key, value in vars(probe).items() if value is not _UNSET}


def main(key, argv=None):
    """Parse the command line and run what it asks for with the tool `key` (trackers.TOOLS); the exit code."""
    tracker_class = trackers.get(key).tracker
    parser = build_parser(tracker_class)
    args = parser.parse_args(argv)
    given = given_flags(parser, argv, args)
    if args.mode is None:  # the tool's own setting decides, as if given: a resumed run follows it too
        args.mode, setting = tracker_class.default_mode()
        given.add("mode")
        if setting:
            ranks.rank0_print(f"{tracker_class.name}: --mode {args.mode}, from {setting}")
    sys.stdout.reconfigure(line_buffering=True)  # epoch lines appear as they happen in a log file
    if args.search:
        if int(os.environ.get("WORLD_SIZE", 1)) > 1:
            return ranks.rank0_error(
                "--search runs one process per worker, not under torchrun: start it several times "
                "with the same flags and --out-dir, and the processes share the study's trials",
                2,
            )
        if args.moved_from or args.resume not in (None, "latest", "auto"):
            return ranks.rank0_error(
                "--search continues a stopped search with the same flags (and --resume), not with "
                f"--{'moved-from' if args.moved_from else 'resume RUN_DIR'}",
                2,
            )
        import search  # Optuna is imported only for a search

        return search.run(tracker_class, args, given)
    if args.moved_from:
        return lifecycle.relocate(tracker_class, args)
    return lifecycle.run(tracker_class, args, given)
