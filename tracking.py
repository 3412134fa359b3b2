"""What both tracker scripts share: the tracker interface, the command line, and `main()`.

`wandb_setup_script.py` and `neptune_integration.py` each implement `Tracker` and call `main`.
"""
import argparse
import os
import re
import secrets
import shlex
import sys
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import torch

import alexnet
import data


class UsageError(Exception):
    """A mistake the user can fix (bad flag, missing token, unwritable folder): one line, exit 2."""


@dataclass
class Recorded:  # GLUE: main's refactored interface, here so mlflow_tracking.py runs on this branch
    """What the tracker's record of this run already holds, from earlier segments of a resumed run."""
    last_step: int = 0
    epochs: set = field(default_factory=set)
    results: bool = False


class Tracker:
    """The few calls the engine makes to an experiment tracker; this base records nothing.

    Order: start, log_dataset, then log_metrics / log_epoch / log_checkpoint during training,
    log_evaluation, the final log_checkpoint and log_summary at the end, and finish.
    """
    name = "none"

    def __init__(self, args, run_dir):
        self.args = args
        self.run_dir = run_dir  # this run's folder under --out-dir; its name is the run id
        self.run_id = os.path.basename(run_dir)

    def start(self, config, model):
        """Open the run with the full config; `model` is there to record or watch."""

    def log_dataset(self, info, files):
        """The dataset's description (`data.Dataset.describe()`) and the files it was read from."""

    def log_metrics(self, metrics, step):
        """Per-step metrics at global optimizer step `step`."""

    def log_epoch(self, metrics, step):
        """Per-epoch metrics (they include "epoch"), at the global step the epoch ended on."""

    def log_checkpoint(self, checkpoint):
        """A new model version (`alexnet.Checkpoint`); its file is never overwritten."""

    def log_evaluation(self, evaluation):
        """Confusion matrix, per-class accuracy and the most confident mistakes (`alexnet.Evaluation`)."""

    def log_summary(self, summary):
        """Final values: test/* and best/*."""

    def finish(self, status):
        """Close the run; status is "completed", "failed" or "interrupted"."""

    def where(self):
        """A line telling the user where the run's records are."""
        return ""

    def write_architecture(self, model):
        """The model's architecture as text in the run folder, for the tracker to upload."""
        path = os.path.join(self.run_dir, "architecture.txt")
        os.makedirs(self.run_dir, exist_ok=True)
        with open(path, "w") as f:
            f.write(f"{model}\n\ntrainable parameters: {alexnet.count_params(model):,}\n")
        return path

    def confusion_figure(self, evaluation):
        """The test confusion matrix as a matplotlib figure, for the tracker to upload; close it after."""
        import matplotlib  # here, not at the top: the tracker sets MPLCONFIGDIR first
        matplotlib.use("Agg")
        from matplotlib import pyplot as plt
        fig, ax = plt.subplots(figsize=(7, 6))
        im = ax.imshow(evaluation.confusion, cmap="Blues")
        ax.set(xticks=range(len(evaluation.classes)), yticks=range(len(evaluation.classes)),
               xticklabels=evaluation.classes, yticklabels=evaluation.classes,
               xlabel="predicted", ylabel="true", title="Test confusion matrix")
        plt.setp(ax.get_xticklabels(), rotation=45, ha="right")
        for (i, j), n in np.ndenumerate(evaluation.confusion):
            ax.text(j, i, n, ha="center", va="center", fontsize=7,
                    color="white" if n > evaluation.confusion.max() / 2 else "black")
        fig.colorbar(im, ax=ax)
        fig.tight_layout()
        return fig


def call_with_timeout(fn, seconds):
    """fn()'s result, or its exception re-raised, or TimeoutError if it has not returned in time.

    Tracker clients retry an unreachable server for minutes; a user deserves a verdict sooner.
    """
    box = []

    def target():
        try:
            box.append((True, fn()))
        except BaseException as e:  # handed to the caller's thread
            box.append((False, e))
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    if not box:
        raise TimeoutError
    ok, value = box[0]
    if not ok:
        raise value
    return value


def first_line(exc):
    """The first line of a tracker client's exception, without colour codes or banners."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("---")]
    return lines[0] if lines else type(exc).__name__


def positive(kind):
    def parse(text):
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value
    return parse


def non_negative(text):
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def fraction(text):
    value = float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1 (exclusive), got {text}")
    return value


class Parser(argparse.ArgumentParser):
    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser(tool):
    p = Parser(description=f"Train AlexNet on CIFAR-10 and track the run with {tool}.")
    p.add_argument("--mode", choices=["online", "offline", "disabled"], default="online",
                   help=f"online: sync to a {tool} server; offline: record locally, sync later; "
                        "disabled: no tracking (default: online)")
    p.add_argument("--project", default=None,
                   help="tracker project (default: the tracker's environment variable, else 'alexnet-cifar10')")
    p.add_argument("--name", default=None, help="run name (default: the tracker's)")
    p.add_argument("--tags", nargs="*", default=[], help="run tags")
    p.add_argument("--notes", default=None, help="run notes / description")
    p.add_argument("--data-dir", default="./data", help="where CIFAR-10 is or is downloaded to (default: ./data)")
    p.add_argument("--dataset", choices=["cifar10", "synthetic"], default="cifar10",
                   help="cifar10, or synthetic: generated CIFAR-shaped data that needs no download")
    p.add_argument("--skip-checksum", action="store_true",
                   help="load a CIFAR-10 copy in the official python-batch layout whose checksums "
                        "differ from the official files (its own content hash is the version)")
    p.add_argument("--train-size", type=positive(int), default=None,
                   help="use a seeded subset of this many training images (before the validation split)")
    d = alexnet.RECIPES["default"]
    p.add_argument("--recipe", choices=sorted(alexnet.RECIPES), default="default",
                   help="default: the study's model, data, batch size and epochs, trained with SGD "
                        "(Nesterov), weight decay, warmup, cosine decay and label smoothing; study: the "
                        "original study's recipe exactly")
    p.add_argument("--optimizer", choices=alexnet.OPTIMIZERS,
                   help=f"adam, adamw, or sgd with Nesterov momentum 0.9 (recipe: {d['optimizer']})")
    p.add_argument("--epochs", type=positive(int), help=f"epochs (recipe: {d['epochs']})")
    p.add_argument("--batch-size", type=positive(int), help=f"batch size (recipe: {d['batch_size']})")
    p.add_argument("--lr", type=positive(float), help=f"peak learning rate (recipe: {d['lr']:g})")
    p.add_argument("--weight-decay", type=non_negative, help=f"weight decay (recipe: {d['weight_decay']:g})")
    p.add_argument("--seed", type=int, help=f"random seed (recipe: {d['seed']})")
    p.add_argument("--val-fraction", type=fraction,
                   help=f"fraction of training data held out for validation (recipe: {d['val_fraction']:g})")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                   help="auto: cuda if available, else cpu")
    p.add_argument("--compile", action="store_true",
                   help="compile the model with torch.compile (pays off on a GPU; the first steps are slower)")
    p.add_argument("--out-dir", default="runs",
                   help="everything the run writes: checkpoints and the tracker's local data (default: runs/)")
    p.add_argument("--log-every", type=positive(int), default=50,
                   help="log per-step metrics every N optimizer steps (default: 50)")
    p.add_argument("--resume", nargs="?", const="latest", metavar="RUN_DIR",
                   help="continue the latest unfinished run in --out-dir (or the run folder RUN_DIR) "
                        "from its next step, as the same tracker run; give the same flags as before")
    return p


def make_config(args):
    """Every flag's value under its name, with the recipe filling what was not given."""
    cfg = dict(alexnet.RECIPES[args.recipe])
    for key, value in vars(args).items():
        if value is not None or key not in cfg:
            cfg[key] = value
    return cfg


def resolve_device(name):
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device is available here (use --device cpu or auto)")
    return torch.device("cuda" if name == "cuda" or (name == "auto" and torch.cuda.is_available()) else "cpu")


def prepare_out_dir(path):
    try:
        os.makedirs(path, exist_ok=True)
        probe = os.path.join(path, f".write-test-{os.getpid()}")
        with open(probe, "w"):
            pass
        os.remove(probe)
    except OSError as e:
        raise UsageError(f"--out-dir {path} is not writable: {e.strerror}") from None
    return os.path.abspath(path)


# Flags that change what is trained: a resumed run must be given the values it started with.
RESUME_MUST_MATCH = [*alexnet.RECIPES["default"], "dataset", "train_size", "skip_checksum", "log_every",
                     "dataset_version"]


def find_resume_state(out_dir, which):
    """The resume state of the run to continue: `which` is a run folder, or "latest" in out_dir."""
    if which != "latest":
        path = which if os.path.isfile(which) else os.path.join(which, alexnet.Engine.RESUME_FILE)
        if not os.path.isfile(path):
            raise UsageError(f"--resume {which}: no unfinished run there ({alexnet.Engine.RESUME_FILE} not found)")
        return path
    candidates = [os.path.join(out_dir, d, alexnet.Engine.RESUME_FILE) for d in os.listdir(out_dir)]
    candidates = [c for c in candidates if os.path.isfile(c)]
    if not candidates:
        raise UsageError(f"--resume: no unfinished run in {out_dir} to continue")
    return max(candidates, key=os.path.getmtime)


def check_resumable(cfg, saved):
    for key in RESUME_MUST_MATCH:
        if cfg.get(key) != saved["config"].get(key):
            flag = "the data" if key == "dataset_version" else f"--{key.replace('_', '-')} {cfg.get(key)}"
            raise UsageError(f"--resume: {flag} differs from the run's {saved['config'].get(key)}; "
                             "give the flags the run was started with")


RANK = int(os.environ.get("RANK", 0))  # set by torchrun; only rank 0 talks to the user and the tracker


def error(message, code):
    if RANK == 0:
        print(f"error: {message}", file=sys.stderr)
    return code


def start_distributed(device):
    """Join torchrun's process group (gloo on CPU, NCCL on CUDA); the device of this process."""
    if int(os.environ.get("WORLD_SIZE", 1)) <= 1:
        return device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device


def agree_on_run(run_id):
    """Rank 0's run id for every process, or None everywhere if rank 0 could not open its tracker."""
    if not torch.distributed.is_initialized():
        return run_id
    box = [run_id]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


def main(tracker_class, argv=None):
    """Parse the command line, load the data, open the tracker, train; returns the exit code."""
    args = build_parser(tracker_class.name).parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)  # epoch lines appear as they happen in a log file
    try:
        device = resolve_device(args.device)
        args.out_dir = prepare_out_dir(args.out_dir) if RANK == 0 else os.path.abspath(args.out_dir)
        cfg = make_config(args)
        saved = alexnet.load_state(find_resume_state(args.out_dir, args.resume)) if args.resume else None
        dataset = data.load(args.dataset, args.data_dir, skip_checksum=args.skip_checksum,
                            train_size=args.train_size, val_fraction=cfg["val_fraction"], seed=cfg["seed"])
        device = start_distributed(device)
        run_id = saved["config"]["run_id"] if saved else f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
        cfg.update(run_id=run_id, dataset_version=dataset.version, world_size=int(os.environ.get("WORLD_SIZE", 1)),
                   **alexnet.environment(device))
        if saved:
            check_resumable(cfg, saved)
        if RANK == 0:
            tracker = None
            try:
                tracker = (tracker_class if args.mode != "disabled" else Tracker)(args, os.path.join(args.out_dir, run_id))
            finally:  # the other processes wait through the token prompt for rank 0's run id, or None
                agree_on_run(run_id if tracker else None)
        else:
            cfg["run_id"] = run_id = agree_on_run(None)
            if run_id is None:
                return 2  # rank 0 could not open its tracker and has said why
            tracker = Tracker(args, os.path.join(args.out_dir, run_id))
        run_dir = tracker.run_dir
        engine = alexnet.Engine(cfg, dataset, tracker, device, run_dir)
        if saved:
            engine.restore(saved)
            if RANK == 0:
                print(f"resuming run {run_id} from step {engine.step} (epoch {len(engine.history) + 1})")
    except (UsageError, data.DataError, alexnet.CheckpointError) as e:
        return error(e, 2)
    except KeyboardInterrupt:
        return error("interrupted before training started; nothing was recorded", 130)
    status, code, resume_hint = "failed", 1, None
    with engine.stop.deferred():  # a signal now waits for the step, the checkpoint and the tracker's flush
        try:
            engine.run()
            status, code = "completed", 0
        except UsageError as e:  # raised while the tracker opens its run (token, server)
            code = error(e, 2)
        except alexnet.Interrupted as e:
            status, code = "interrupted", 128 + e.signum
            resume_hint = (f"interrupted at step {engine.step}; saved {e.state_path}\n  continue with: "
                           + shlex.join(["python", *sys.argv] + ([] if args.resume else ["--resume"])))
        except (FloatingPointError, alexnet.CheckpointError) as e:
            code = error(f"{e}; checkpoints already saved are kept in {run_dir}", 1)
        finally:
            tracker.finish(status)
    if tracker.where():
        print(tracker.where())
    if resume_hint and RANK == 0:
        print(resume_hint, file=sys.stderr)
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    return code
