"""What the tracker scripts share: the tracker interface, the command line, and `main()`.

`wandb_setup_script.py`, `neptune_integration.py` and `mlflow_tracking.py` each implement
`Tracker` and call `main`, which owns the tracker run's lifecycle.
"""

import argparse
import gc
import os
import re
import secrets
import shlex
import sys
import threading
import time

import numpy as np
import torch

import alexnet
import data
import durable


class UsageError(Exception):
    """A mistake the user can fix (bad flag, missing token, unwritable folder): one line, exit 2."""


class RecordError(Exception):
    """The tracker's own record of an earlier segment cannot be read back: one line, exit 1, and
    nothing logged (an empty record would log every earlier step again)."""


class Tracker:
    """The few calls an experiment tracker gets; this base records nothing (--mode disabled).

    `tracking.main` owns the run's lifecycle: the constructor (which asks for and checks
    credentials, before any data is loaded), `start`, then `recorded` on a resumed run, and
    `finish` at the end, whatever happened. The engine makes the calls in between: log_dataset,
    log_metrics and log_epoch while training, log_results once at the end.
    """

    name = "none"
    project_help = "tracker project"
    write_errors = (OSError,)  # what the client raises when it cannot write its record (a full disk)

    def __init__(self, args, run_dir):
        self.args = args
        self.run_dir = run_dir  # this run's folder; its name is the run id
        self.run_id = os.path.basename(run_dir)

    def start(self, config, model):
        """Open the run (or reopen it, for a resumed run) with the full config; `model` is there to
        record or watch."""

    def recorded(self):
        """What this run's record already holds from its earlier segments, read back from the
        tool's own record (`alexnet.Recorded`)."""
        return alexnet.Recorded()

    def log_dataset(self, info, files):
        """The dataset's description (`data.Dataset.describe()`) and the files it was read from."""

    def log_metrics(self, metrics, step):
        """Per-step metrics at global optimizer step `step`."""

    def log_epoch(self, metrics, step, checkpoint=None):
        """Per-epoch metrics (they include "epoch"), at the global step the epoch ended on, and the
        epoch's new best model version (`alexnet.Checkpoint`, a file never rewritten) if it has one,
        logged before the metrics."""

    def log_results(self, evaluation, checkpoint, summary, step):
        """The test evaluation of the best checkpoint (`alexnet.Evaluation`), the final model version
        and the summary (test/*, best/*), the summary last: when it is recorded, all are."""

    def finish(self, status, exit_code):
        """Close the run; status is "completed", "failed" or "interrupted"."""

    def log_trial(self, outcome):
        """A search's trial, before its run closes: its number and study (also in the config), state
        ("complete", "pruned" or "failed"), value (best validation accuracy), validation accuracy by epoch,
        parameters and duration (`search.Trial.outcome`)."""

    def open_study(self, name):
        """Before a search's first trial (and in each process that joins it): what the tool needs
        before the trials' runs open."""

    def log_study(self, study):
        """The finished search (an `optuna.Study`) as the tool records a study, once; returns what
        the tool could not record offline, one line each."""
        return []

    def where(self):
        """Lines telling the user where the run's records are, how to look at them and upload them."""
        return ""

    @staticmethod
    def relocate(old, new):
        """Re-point the tracker's local records in --out-dir `new`, copied or moved from `old`."""
        return "nothing to re-point"

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
        ax.set(
            xticks=range(len(evaluation.classes)),
            yticks=range(len(evaluation.classes)),
            xticklabels=evaluation.classes,
            yticklabels=evaluation.classes,
            xlabel="predicted",
            ylabel="true",
            title="Test confusion matrix",
        )
        plt.setp(ax.get_xticklabels(), rotation=45, ha="right")
        for (i, j), n in np.ndenumerate(evaluation.confusion):
            ax.text(
                j,
                i,
                n,
                ha="center",
                va="center",
                fontsize=7,
                color="white" if n > evaluation.confusion.max() / 2 else "black",
            )
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


def smoothing(text):
    value = float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be from 0 to 1 (exclusive), got {text}")
    return value


def fraction(text):
    value = float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1 (exclusive), got {text}")
    return value


class Parser(argparse.ArgumentParser):
    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser(tracker_class):
    tool = tracker_class.name
    p = Parser(description=f"Train AlexNet on CIFAR-10 and track the run with {tool}.")
    p.add_argument(
        "--mode",
        choices=["online", "offline", "disabled"],
        default="online",
        help=f"online: sync to a {tool} server; offline: record locally, sync later; "
        "disabled: no tracking (default: online)",
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
    p.add_argument("--weight-decay", type=non_negative, help=f"weight decay (recipe: {d['weight_decay']:g})")
    p.add_argument(
        "--label-smoothing",
        type=smoothing,
        help=f"label smoothing of the training loss (recipe: {d['label_smoothing']:g})",
    )
    p.add_argument(
        "--warmup-epochs",
        type=non_negative,
        help=f"epochs of linear warmup to the peak rate (recipe: {d['warmup_epochs']:g})",
    )
    p.add_argument("--seed", type=int, help=f"random seed (recipe: {d['seed']})")
    p.add_argument(
        "--val-fraction",
        type=fraction,
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
        "--log-every", type=positive(int), default=50, help="log per-step metrics every N optimizer steps (default: 50)"
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
    return p


UNSET = object()


def given_flags(parser, argv, args):
    """The flags given on the command line, as opposed to those left at their defaults."""
    probe = parser.parse_args(argv, argparse.Namespace(**dict.fromkeys(vars(args), UNSET)))
    return {key for key, value in vars(probe).items() if value is not UNSET}


# How and where a run is trained, not what: a resumed run takes these from its command line.
NOT_RESTORED = {"resume", "moved_from", "out_dir", "device", "compile", "search"}


def restore_flags(args, saved, given):
    """A resumed run's own flags, from its resume state, where the command line does not give them."""
    for key, value in saved["config"].items():
        if hasattr(args, key) and key not in given and key not in NOT_RESTORED:
            setattr(args, key, value)


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
RESUME_MUST_MATCH = [
    *alexnet.RECIPES["default"],
    "dataset",
    "train_size",
    "skip_checksum",
    "log_every",
    "dataset_version",
]


class Finished(Exception):
    """--resume named a run that has finished: there is nothing to continue."""


def find_resume_state(out_dir, which):
    """The resume state of the run to continue: `which` is a run folder, or "latest" or "auto" in
    out_dir (auto: None where there is no unfinished run, for a new one)."""
    if which not in ("latest", "auto"):
        path = which if os.path.isfile(which) else os.path.join(which, alexnet.Engine.RESUME_FILE)
        if not os.path.isfile(path):
            if os.path.isfile(os.path.join(which, "history.json")):
                raise Finished(which)
            raise UsageError(f"--resume {which}: no unfinished run there ({alexnet.Engine.RESUME_FILE} not found)")
        return os.path.abspath(path)
    states = [os.path.join(out_dir, d, alexnet.Engine.RESUME_FILE) for d in os.listdir(out_dir)]
    states = [s for s in states if os.path.isfile(s)]
    if states:  # the newest unfinished run, whatever finished after it
        return max(states, key=os.path.getmtime)
    if which == "auto":
        return None
    finished = [
        os.path.join(out_dir, d)
        for d in os.listdir(out_dir)
        if os.path.isfile(os.path.join(out_dir, d, "history.json"))
    ]
    if finished:
        raise Finished(max(finished, key=os.path.getmtime))
    raise UsageError(
        f"--resume: nothing to continue yet in {out_dir} (a run saves its resume state at "
        "its first epoch's end, at most a minute apart after that, and when stopped)"
    )


def load_resume_state(path):
    """The resume state at `path`, or the one before it where that cannot be read (saying so)."""
    try:
        return alexnet.load_state(path)
    except alexnet.CheckpointError as e:
        previous = os.path.join(os.path.dirname(path), alexnet.Engine.PREVIOUS_FILE)
        if not os.path.isfile(previous):
            raise
        state = alexnet.load_state(previous)
        os.replace(path, path + ".unreadable")  # kept to look at; the previous state takes its place
        os.link(previous, path)
        say(f"{e}; continuing from the state saved before it (the unreadable one is kept as {path}.unreadable)")
        return state


def check_resumable(cfg, saved):
    recipe = alexnet.RECIPES.get(saved["config"].get("recipe"), {})
    for key in RESUME_MUST_MATCH:
        # a recipe key newer than the saved run (--hidden) had the recipe's value then
        if cfg.get(key) != saved["config"].get(key, recipe.get(key)):
            flag = "the data" if key == "dataset_version" else f"--{key.replace('_', '-')} {cfg.get(key)}"
            raise UsageError(
                f"--resume: {flag} differs from the run's {saved['config'].get(key)}; "
                "give the flags the run was started with"
            )


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
    store, rank, world_size = next(torch.distributed.rendezvous("env://"))
    torch.distributed.init_process_group(
        "nccl" if device.type == "cuda" else "gloo",
        rank=rank,
        world_size=world_size,
        store=this_attempt(store, rank, world_size),
    )
    return device


def this_attempt(store, rank, world_size, timeout=600):
    """The launcher's store under a name that this start of the processes shares and no earlier one
    used. torchrun keeps one store for the whole job: after a restart it still held the dead
    workers' addresses, and a process that read one failed to connect. The restart count cannot be
    the name: on more than one node, a launch that restarts for another's failure does not count it.
    So rank 0 draws the name and each other rank asks for it under a name of its own: no answer it
    reads can be an earlier start's."""
    if rank == 0:
        name, waiting, deadline = secrets.token_hex(8), set(range(1, world_size)), time.monotonic() + timeout
        while waiting:
            if time.monotonic() > deadline:
                raise RuntimeError(f"ranks {sorted(waiting)} did not join within {timeout} s")
            for r in sorted(waiting):  # an earlier start's question is answered too, in vain
                store.set(f"answer/{store.get(f'ask/{r}').decode()}", name)
                if store.check([f"joined/{name}/{r}"]):
                    waiting.discard(r)
            time.sleep(0.05)
    else:
        question = secrets.token_hex(8)
        store.set(f"ask/{rank}", question)
        name = store.get(f"answer/{question}").decode()
        store.set(f"joined/{name}/{rank}", "")
    return torch.distributed.PrefixStore(f"attempt/{name}", store)


def agree(value):
    """Rank 0's value for every process (under torchrun); rank 0 sends None when it cannot go on."""
    if not torch.distributed.is_initialized():
        return value
    box = [value]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


def decide(choose):
    """What `choose()` returns on rank 0, for every process (under torchrun); what it raises on
    rank 0 is raised in every process."""
    if RANK == 0:
        try:
            value = choose()
        except (UsageError, Finished) as e:
            agree(e)
            raise
        return agree(value)
    value = agree(None)
    if isinstance(value, Exception):
        raise value
    return value


def command_line(drop=(), add=()):
    """This process's command line as pasted from the current folder, without the flags `drop`
    (and their values), with `add` at its end."""
    python = os.path.relpath(sys.executable) if sys.executable.startswith(os.getcwd() + os.sep) else sys.executable
    argv, skip = [], False
    for i, word in enumerate(sys.argv):
        if skip:
            skip = False
        elif word in drop:  # its value, if it has one (--resume may not)
            skip = i + 1 < len(sys.argv) and not sys.argv[i + 1].startswith("--")
        elif not word.startswith(tuple(f"{flag}=" for flag in drop)):
            argv.append(word)
    return shlex.join([python, *argv, *add])


def resume_command(tracker):
    """The command that continues this run (a search: the search), as pasted from the current folder."""
    where = [] if getattr(tracker.args, "search", None) else [os.path.relpath(tracker.run_dir)]
    return command_line(drop=["--resume"], add=["--resume", *where])


def main(tracker_class, argv=None):
    """Parse the command line, check credentials, load the data, open the tracker's run, train,
    close the run; returns the exit code."""
    parser = build_parser(tracker_class)
    args = parser.parse_args(argv)
    given = given_flags(parser, argv, args)
    sys.stdout.reconfigure(line_buffering=True)  # epoch lines appear as they happen in a log file
    if args.search:
        if int(os.environ.get("WORLD_SIZE", 1)) > 1:
            return error(
                "--search runs one process per worker, not under torchrun: start it several times "
                "with the same flags and --out-dir, and the processes share the study's trials",
                2,
            )
        if args.moved_from or args.resume not in (None, "latest", "auto"):
            return error(
                "--search continues a stopped search with the same flags (and --resume), not with "
                f"--{'moved-from' if args.moved_from else 'resume RUN_DIR'}",
                2,
            )
        import search  # Optuna is imported only for a search

        return search.run(tracker_class, args, given)
    if args.moved_from:
        if not os.path.isdir(args.out_dir):
            return error(f"--moved-from: --out-dir {args.out_dir} is not a folder", 2)
        old, new = (os.path.abspath(p).rstrip(os.sep) for p in (args.moved_from, args.out_dir))
        try:
            say(tracker_class.relocate(old, new))
        except RecordError as e:
            return error(e, 1)
        return 0
    lock = None
    try:
        device = start_distributed(resolve_device(args.device))
        if args.resume not in (None, "latest", "auto"):  # a run folder anywhere: its parent holds the tracker's data
            args.out_dir = os.path.dirname(os.path.dirname(find_resume_state(None, args.resume)))
        args.out_dir = prepare_out_dir(args.out_dir) if RANK == 0 else os.path.abspath(args.out_dir)
        # Rank 0 decides which run goes on (or that a new one starts), and every process follows.
        state_path = decide(lambda: find_resume_state(args.out_dir, args.resume) if args.resume else None)
        run_dir = (
            os.path.dirname(state_path)
            if state_path
            else os.path.join(args.out_dir, f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}")
        )
        tracker, saved = None, None
        if RANK == 0:  # credentials are asked for and checked before the data is loaded
            try:
                lock = durable.FolderLock(run_dir, "the run folder")  # one process trains a run; held to the end
                saved = load_resume_state(state_path) if state_path else None
                if saved:
                    restore_flags(args, saved, given)
                cls = tracker_class if args.mode != "disabled" else Tracker
                tracker = cls(args, run_dir)
            finally:  # the other processes wait through the token prompt for rank 0's run id, or None
                agree(tracker.run_id if tracker else None)
            run_id = saved["config"]["run_id"] if saved else tracker.run_id
        else:
            run_id = agree(None)
            if run_id is None:
                return 2  # rank 0 could not open its tracker and has said why
            tracker = Tracker(args, os.path.join(args.out_dir, run_id))
            saved = alexnet.load_state(state_path) if state_path else None
            if saved:
                restore_flags(args, saved, given)
        cfg = make_config(args)
        dataset = data.load(
            args.dataset,
            args.data_dir,
            skip_checksum=args.skip_checksum,
            train_size=args.train_size,
            val_fraction=cfg["val_fraction"],
            seed=cfg["seed"],
        )
        fitted = alexnet.fit_to_data(cfg, len(dataset.train), {k for k, v in vars(args).items() if v is not None})
        if saved:  # a resumed run goes on with what it started with (a run from before the fitting too)
            fitted = {k: saved["config"].get(k, v) for k, v in fitted.items()}
        if fitted:
            cfg.update(fitted)
            say(
                f"the default recipe fitted to {len(dataset.train):,} training images and {cfg['epochs']} epochs: "
                + ", ".join(f"{k} {v:g}" for k, v in fitted.items())
                + " (a --batch-size or --lr given keeps the recipe as it is)"
            )
        cfg.update(
            run_id=run_id,
            dataset_version=dataset.version,
            world_size=int(os.environ.get("WORLD_SIZE", 1)),
            **alexnet.environment(device),
        )
        if saved:
            check_resumable(cfg, saved)
        engine = alexnet.Engine(cfg, dataset, tracker, device, tracker.run_dir)
        if saved:
            engine.restore(saved)
    except (UsageError, durable.Busy, data.DataError, alexnet.CheckpointError) as e:
        code = error(e, 2)
    except Finished as e:
        say(f"run {os.path.basename(str(e))} is finished: nothing to continue (its results: {e}/history.json)")
        code = 0
    except KeyboardInterrupt:
        code = error("interrupted before training started; nothing was recorded", 130)
    else:
        code = train(engine, tracker, saved is not None)
        engine = None  # its DDP wrapper holds the process group
    if lock:
        lock.release()
    leave_process_group()
    return code


def train(engine, tracker, resumed):
    """Open the tracker's run, train, close the run whatever happened; returns the exit code."""
    status, code, failure, abandoned, lost = "failed", 1, None, None, False
    with engine.stop.deferred():  # a signal now waits for the step, the checkpoint and the tracker's flush
        try:
            started = False
            try:
                with engine.stop.impatient():
                    tracker.start(engine.cfg, engine.model)
                started = True
            finally:  # every process learns whether rank 0's run opened, so all end together if not
                started = agree(started)
            if not started:  # another process: rank 0 could not open its run and says why
                raise UsageError("rank 0 could not open its tracker run")
            if resumed:
                recorded = tracker.recorded()
                done = len(engine.history)
                at = f"epoch {done + 1}" if done < engine.cfg["epochs"] else "the test evaluation"
                say(
                    f"resuming run {tracker.run_id} from step {engine.step} ({at}); "
                    f"its record holds steps to {recorded.last_step}, epochs {sorted(recorded.epochs) or 'none'}"
                    + (", the results" if recorded.results else "")
                )
            else:
                recorded = None
            engine.run(recorded)
            status, code = "completed", 0
            if engine.stop.signum:  # a stop asked for during the last phase: the record is whole, the run not closed
                engine.save_state()
                raise alexnet.Interrupted(engine.stop.signum, engine.state_path)
        except UsageError as e:  # raised while the tracker opens its run (token, server)
            code, failure = 2, e
        except RecordError as e:
            failure = e
        except alexnet.StoppedEarly:  # complete as it stands; a stop asked for meanwhile still ends the process
            status, code = "completed", 128 + engine.stop.signum if engine.stop.signum else 0
        except alexnet.Interrupted as e:
            status, code = "interrupted", 128 + e.signum
        except alexnet.Abandoned as e:
            status, code, abandoned = "interrupted", 130, f"{e}: stopped waiting for {tracker.name} to open the run"
        except (FloatingPointError, alexnet.CheckpointError) as e:
            failure = f"{e}; checkpoints already saved are kept in {tracker.run_dir}"
        except RuntimeError as e:
            if not lost_peer(e):
                raise
            # Another process of the launch died: torchrun stops the others and starts them all again
            # with this command line; the last resume state is where they go on (--resume auto).
            status, code, lost = "interrupted", 1, True
        except tracker.write_errors as e:  # the tracker could not write its record: a full disk, a folder gone
            failure = write_failure(e, engine, tracker)
        finally:
            if not abandoned:
                try:
                    with engine.stop.impatient():
                        tracker.finish(status, code)
                except alexnet.Abandoned as e:
                    code = code or 130
                    abandoned = f"{e}: stopped waiting for {tracker.name} to close the run"
                except tracker.write_errors as e:
                    code, failure = code or 1, failure or write_failure(e, engine, tracker)
    if status == "completed" and code == 0:
        engine.forget_state()
    if tracker.where():
        say(tracker.where())
    if status == "interrupted" and not lost and os.path.exists(engine.state_path):
        say(
            f"interrupted at step {engine.step}; saved {engine.state_path}\n  continue with: {resume_command(tracker)}",
            file=sys.stderr,
        )
    if lost:  # every process that is left says it, last: rank 0 may be the one that died
        print(f"rank {RANK}: lost a peer; torchrun will restart from the resume state", file=sys.stderr)
    if failure:
        error(failure, code)  # last, below the tracker's own closing lines
    if abandoned:  # the client would wait again at exit; what it wrote so far stays on disk
        say(f"{abandoned}; what it recorded so far is kept locally (above)", file=sys.stderr)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return end_together(code)


def lost_peer(e):
    """A collective failed because another process of the launch is gone (gloo: "Connection reset
    by peer"; NCCL and the store: torch.distributed.DistError)."""
    return torch.distributed.is_initialized() and (
        isinstance(e, torch.distributed.DistError)
        or re.search(r"Connection (reset|closed) by peer|Broken pipe|gloo/transport", str(e)) is not None
    )


def write_failure(e, engine, tracker):
    """One line for a record the tracker could not write, from the innermost error."""
    while e.__cause__:
        e = e.__cause__
    what = (
        f"{e.strerror} ({e.filename})"
        if isinstance(e, OSError) and e.filename
        else (str(e).splitlines() or [type(e).__name__])[0]
    )
    line = (
        f"{tracker.name} could not write its record: {what}; what is already recorded and saved is kept in "
        f"{tracker.run_dir}"
    )
    if os.path.exists(engine.state_path):
        line += f"; once that is fixed, continue with: {resume_command(tracker)}"
    return line


def end_together(code):
    """Under torchrun, every process waits for rank 0 to close its tracker run and ends with its exit
    code (a process that tore its process group down while rank 0 still used it aborted)."""
    if not torch.distributed.is_initialized():
        return code
    try:
        return agree(code)
    except RuntimeError:  # rank 0 is gone (it stopped waiting on a slow tracker, or was killed)
        return code


def leave_process_group():
    """Destroy the process group while Python still runs. Its worker threads free each collective
    they finish, which takes the interpreter's lock: one that did so while the interpreter was
    exiting ended the process with SIGABRT ("terminate called without an active exception"; about
    one launch in seven). Destroying the group joins those threads; DDP holds the group too, so
    the caller drops the engine first, and a collection frees what a reference cycle still holds."""
    if torch.distributed.is_initialized():
        try:
            torch.distributed.destroy_process_group()
        except RuntimeError:  # a peer is gone
            pass
    gc.collect()


def say(line, file=None):
    if RANK == 0:
        print(line, file=file or sys.stdout)
