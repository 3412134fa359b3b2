"""The CIFAR-10 AlexNet of the original study and the training engine the tracker scripts drive.

The engine knows no tracker: it reports through the tracker interface (trackers/base.py) at fixed
points — dataset, step metrics, epoch metrics with a new best checkpoint, and the results.
"""

import contextlib
import importlib.util
import json
import math
import os
import platform
import re
import signal
import sys
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm.auto import tqdm

import data
import durable
from trackers.base import Checkpoint, Recorded

# The study's recipe, exactly; `default` keeps its model, data, augmentation, batch size and 25
# epochs and changes how it is optimized: SGD with Nesterov momentum and weight decay, a 2-epoch
# warmup, cosine decay and label smoothing (chosen by validation accuracy among the variants in
# benchmarks/gpu.sh; docs/results.md), and fitted to short runs on small training sets by
# `fit_to_data`. Without warmup the study's first Adam steps blow the loss up from ~6 to ~43.
RECIPES = {
    "study": dict(
        optimizer="adam",
        lr=1e-3,
        weight_decay=0.0,
        batch_size=256,
        epochs=25,
        seed=1234,
        val_fraction=0.1,
        warmup_epochs=0.0,
        schedule="constant",
        label_smoothing=0.0,
        hidden=4096,
    ),
    "default": dict(
        optimizer="sgd",
        lr=0.05,
        weight_decay=5e-4,
        batch_size=256,
        epochs=25,
        seed=1234,
        val_fraction=0.1,
        warmup_epochs=2.0,
        schedule="cosine",
        label_smoothing=0.1,
        hidden=4096,
    ),
}
OPTIMIZERS = ("adam", "adamw", "sgd")
MIN_STEPS_PER_EPOCH, MIN_BATCH, WARMUP_SHARE = 100, 32, 0.08


def fit_to_data(cfg, train_images, given):
    """The default recipe on a small training set: the batch, peak rate and warmup it uses instead.

    Unless --batch-size or --lr is given: the batch halves (to 32 at least) until an epoch has
    100 optimizer steps; the peak rate follows it (lr * batch / 128, never above the recipe's);
    where that lowers the rate, the warmup is the shorter of `warmup_epochs` and 8% of all steps,
    so a short run decays too. The recipe's own rate keeps its full warmup: after a short one it
    diverges. On the full training set (45,000 images: 176 steps of 256) nothing changes
    (docs/quickstart.md, "A quick look")."""
    if cfg["recipe"] != "default" or given & {"batch_size", "lr"}:
        return {}
    batch = cfg["batch_size"]
    while batch > MIN_BATCH and math.ceil(train_images / batch) < MIN_STEPS_PER_EPOCH:
        batch //= 2
    if batch == cfg["batch_size"]:
        return {}
    fitted = {"batch_size": batch}
    lr = cfg["lr"] * min(1.0, batch / (cfg["batch_size"] / 2))
    if lr == cfg["lr"]:
        return fitted
    fitted["lr"] = lr
    warmup = min(cfg["warmup_epochs"], round(WARMUP_SHARE * cfg["epochs"], 6))
    if "warmup_epochs" not in given and warmup != cfg["warmup_epochs"]:
        fitted["warmup_epochs"] = warmup
    return fitted


def make_optimizer(params, cfg, device):
    """Adam (L2 weight decay, as torch's Adam), AdamW (decoupled decay) or SGD with Nesterov
    momentum 0.9; the fused CUDA kernels on a GPU, one launch for all parameters."""
    kind, lr, decay = cfg["optimizer"], cfg["lr"], cfg["weight_decay"]
    if kind == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True, weight_decay=decay)
    cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[kind]
    return cls(params, lr=lr, weight_decay=decay, fused=device.type == "cuda")


class Dropout(nn.Dropout):
    """nn.Dropout whose training mask is drawn for the whole global batch, each process keeping
    its own rows, so N data-parallel processes drop exactly what one process would."""

    rows = None  # (global batch size, rank, world size), set by the engine before each step

    def forward(self, x):
        if not self.training or self.rows is None:
            return super().forward(x)
        n, rank, world = self.rows
        keep = torch.rand((n, *x.shape[1:]), device=x.device) >= self.p
        return x * keep[rank::world] / (1 - self.p)


class AlexNet(nn.Module):
    """AlexNet for 32x32 inputs as in the study: 5 convs, 3 linear layers, 23,272,266 parameters.
    A smaller `hidden` narrows only the two hidden linear layers (the tests train with 256)."""

    def __init__(self, num_classes=10, hidden=4096):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, 3, stride=2, padding=1),
            nn.MaxPool2d(2),
            nn.ReLU(inplace=True),
            nn.Conv2d(64, 192, 3, padding=1),
            nn.MaxPool2d(2),
            nn.ReLU(inplace=True),
            nn.Conv2d(192, 384, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, 3, padding=1),
            nn.MaxPool2d(2),
            nn.ReLU(inplace=True),
        )
        self.classifier = nn.Sequential(
            Dropout(0.5),
            nn.Linear(256 * 2 * 2, hidden),
            nn.ReLU(inplace=True),
            Dropout(0.5),
            nn.Linear(hidden, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, num_classes),
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.xavier_normal_(m.weight, gain=nn.init.calculate_gain("relu"))
                nn.init.zeros_(m.bias)

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x), 1))


def count_params(model):
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@dataclass
class Evaluation:
    """Test-set results of the best checkpoint."""

    classes: list
    y_true: np.ndarray
    y_pred: np.ndarray
    confusion: np.ndarray  # counts, rows = true class, columns = predicted
    per_class_acc: list
    mistakes: list = field(default_factory=list)  # dicts: image (HWC uint8), true, predicted, probability


def save_checkpoint(path, model, **meta):
    """Durably and atomically: a kill or a power loss never leaves half a file."""
    durable.write_atomically(path, lambda tmp: torch.save({"model": model.state_dict(), **meta}, tmp))


def load_checkpoint(path, model=None):
    ckpt = torch.load(path, map_location="cpu")  # plain types only: loads with torch.load's defaults
    if model is not None:
        model.load_state_dict(ckpt["model"])
    return ckpt


def lr_factor(step, total_steps, warmup_steps, schedule):
    """Learning-rate multiplier at optimizer step `step` (0-based): linear warmup, then the schedule."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "cosine":
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return 1.0


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def torchvision_version():
    """torchvision's version, read from its version.py: importing torchvision costs each run 2.4 s
    (2 CPU cores) and only CIFAR-10's download needs it."""
    spec = importlib.util.find_spec("torchvision")
    with open(os.path.join(os.path.dirname(spec.origin), "version.py")) as f:
        return re.search(r"__version__ = '([^']+)'", f.read()).group(1)


def environment(device):
    """What ran the run: recorded in each run's config and printed with every benchmark figure."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
    return {
        "device": device.type,
        "device_name": name,
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch_version": str(torch.__version__),
        "torchvision_version": torchvision_version(),
        "python_version": platform.python_version(),
    }


class Interrupted(Exception):
    """Training stopped on SIGINT/SIGTERM at the end of a step, with its resume state saved."""

    def __init__(self, signum, state_path):
        super().__init__(f"{signal.Signals(signum).name} received")
        self.signum, self.state_path = signum, state_path


class StoppedEarly(Exception):
    """Training ended on purpose after an epoch (`Engine.stop_early`, a search's pruner): the run is
    complete as it stands, with no test evaluation."""


class CheckpointError(Exception):
    """A checkpoint could not be written (disk full, folder removed or unwritable)."""


class Abandoned(BaseException):
    """A second signal while waiting on the tracker (opening or closing its run): stop waiting.

    A BaseException, as KeyboardInterrupt is: the handler raises it wherever the main thread is, and
    W&B's console capture, which a print of ours passes through, suppresses any Exception raised in
    it (a second Ctrl-C landing there was lost, and the run waited on)."""


class StopRequest:
    """SIGINT and SIGTERM are noted, not raised, so a step, a checkpoint write or a tracker's
    flush is never cut in half; the engine stops at the end of the current step. A second signal
    while `impatient()` (a tracker opening or closing its run, which can take minutes online)
    raises `Abandoned` there: the user chose not to wait."""

    signum = None
    waiting = False

    @contextlib.contextmanager
    def deferred(self):
        def note(signum, frame):
            if self.signum is None:  # noted before it is said: a second signal can run this mid-print
                self.signum = signum
                print(
                    f"\n{signal.Signals(signum).name}: stopping after this step (again does not "
                    "hurry it: the checkpoint is being saved)",
                    file=sys.stderr,
                    flush=True,
                )
            elif self.waiting:
                self.waiting = False
                raise Abandoned(signal.Signals(signum).name)

        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {s: signal.signal(s, note) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)

    @contextlib.contextmanager
    def impatient(self):
        self.waiting = True
        try:
            yield
        finally:
            self.waiting = False


def load_state(path):
    """A resume state written by `Engine.save_state`, or CheckpointError if it cannot be read."""
    try:
        state = torch.load(path, map_location="cpu")
        if not isinstance(state, dict) or "optimizer" not in state:
            raise ValueError("not a resume state")
        if state["best"]:  # a state from before paths were kept relative: the checkpoint is found by its epoch
            state["best"].pop("path", None)
        return state
    except Exception as e:  # truncated, corrupt or foreign file: the user gets one line
        raise CheckpointError(
            f"cannot read the resume state {path} (truncated or corrupt?): {type(e).__name__}"
        ) from None


class Engine:
    """Trains AlexNet on a `data.Dataset` and reports to a tracker; `run()` returns the history."""

    RESUME_FILE = "resume.pt"
    PREVIOUS_FILE = "resume.previous.pt"  # the state before the latest, kept until the latest is durable
    STATE_EVERY_S = 60.0

    def __init__(self, config, dataset, tracker, device, run_dir, stop_early=None):
        self.cfg = dict(config)
        self.device = device
        self.data = dataset.to(device)  # the whole dataset is small enough to live on the device
        self.tracker = tracker
        self.run_dir = run_dir
        torch.manual_seed(config["seed"])  # the initial weights
        torch.backends.cudnn.benchmark = device.type == "cuda"  # fixed shapes: pick the fastest kernels once
        self.model = AlexNet(len(dataset.classes), config["hidden"]).to(device, memory_format=torch.channels_last)
        self.cfg["model_params"] = count_params(self.model)
        # Under torchrun: each process trains on its rows of every global batch; gradients are
        # all-reduced by DDP; only rank 0 writes files (the tracker on other ranks records nothing).
        self.distributed = dist.is_available() and dist.is_initialized()
        self.rank, self.world = (dist.get_rank(), dist.get_world_size()) if self.distributed else (0, 1)
        self.net = DDP(self.model) if self.distributed else self.model
        if config.get("compile"):
            self.net = torch.compile(self.net)
        self.dropouts = [m for m in self.model.modules() if isinstance(m, Dropout)]
        self.opt = make_optimizer(self.model.parameters(), config, device)
        self.steps_per_epoch = math.ceil(len(dataset.train) / config["batch_size"])
        self.total_steps = self.steps_per_epoch * config["epochs"]
        self.warmup_steps = round(config["warmup_epochs"] * self.steps_per_epoch)
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt, lambda s: lr_factor(s, self.total_steps, self.warmup_steps, config["schedule"])
        )
        self.autocast = dict(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
        self.stop = StopRequest()
        self.step = 0  # optimizer steps taken, over all epochs
        self.history = []  # one dict of metrics per finished epoch
        self.best = None  # epoch and val_acc of the best checkpoint so far
        self.points = []  # (step, per-step metrics) at each logging step, for a resumed run's record
        self.partial = None  # progress through an unfinished epoch, when resuming into one
        self.lr = config["lr"]  # of the last step taken
        self.recorded = Recorded()  # what the tracker's record holds already (a resumed run)
        self.pending_stop = None  # under DDP: the stop flag's all-reduce in flight (work, tensor)
        self.state_saved_at = None  # the first epoch's end saves a state; later ones a minute apart
        self.stop_early = stop_early  # the caller's verdict on each trained epoch's metrics: True ends training there

    def run(self, recorded=None):
        """Train the remaining epochs, then evaluate; the tracker's run is open (lifecycle.train owns it).

        `recorded` is what the tracker already holds from earlier segments of this run: a resumed
        run trains again from its last resume state but logs only what is not there yet, so a
        stop at any point, even a kill -9, leaves each step and epoch in the record exactly once.
        What the state holds and the record lacks (a client's buffer lost to a kill) is logged first."""
        cfg = self.cfg
        self.recorded = recorded or Recorded()
        self.tracker.log_dataset(self.data.describe(), self.data.files)
        self.log_missing()
        first = len(self.history) + 1
        epochs = tqdm(
            range(first, cfg["epochs"] + 1),
            initial=first - 1,
            total=cfg["epochs"],
            desc="epochs",
            unit="epoch",
            disable=None if self.rank == 0 else True,
        )
        for epoch in epochs:
            train_loss, train_acc, epoch_time = self.train_one_epoch(epoch)
            val_loss, val_acc = self.evaluate(self.data.val)[:2]
            metrics = {
                "epoch": epoch,
                "train/loss": train_loss,
                "train/acc": train_acc,
                "val/loss": val_loss,
                "val/acc": val_acc,
                "lr": self.lr,
                "epoch_time_s": epoch_time,
                "throughput_img_s": len(self.data.train) / epoch_time,
            }
            self.history.append(metrics)
            checkpoint = None
            if math.isfinite(train_loss) and (self.best is None or val_acc > self.best["val_acc"]):
                self.best = {"epoch": epoch, "val_acc": val_acc}
                checkpoint = Checkpoint(self.checkpoint_path(epoch), epoch, val_acc)
                if not os.path.exists(checkpoint.path):  # a version's file is never rewritten
                    try:
                        self.save(
                            save_checkpoint, checkpoint.path, self.model, epoch=epoch, val_acc=val_acc, config=cfg
                        )
                    except CheckpointError:  # the epoch's metrics are recorded all the same
                        self.log_epoch(metrics, self.step, None)
                        raise
            self.log_epoch(metrics, self.step, checkpoint)
            self.say(
                f"epoch {epoch}/{cfg['epochs']}  train loss {train_loss:.4f} acc {train_acc:.4f}"
                f"  val loss {val_loss:.4f} acc {val_acc:.4f}  lr {metrics['lr']:.2e}"
                f"  {epoch_time:.1f}s {metrics['throughput_img_s']:.0f} img/s"
            )
            if not math.isfinite(train_loss):  # the last resume state saved is of a good epoch
                raise FloatingPointError(f"the training loss became {train_loss} in epoch {epoch}")
            # Asked of every epoch trained, recorded before or not: a resumed run stops where it would have.
            if self.stop_early and self.stop_early(metrics):
                raise StoppedEarly(f"stopped after epoch {epoch}")
            # A finished epoch is a point to resume from: saved after the first epoch and every
            # epoch that ends a minute or more after the last save (every epoch on a CPU; on a GPU,
            # whose epochs take about a second, not a 280 MB write per second), and when stopped.
            self.stop_here(
                when=self.state_saved_at is None or time.monotonic() - self.state_saved_at >= self.STATE_EVERY_S
            )
        return self.finish()

    def checkpoint_path(self, epoch):
        return os.path.join(self.run_dir, "checkpoints", f"epoch_{epoch}.pt")

    def log_epoch(self, metrics, step, checkpoint):
        """An epoch's metrics, and its model version first, unless the record holds them."""
        if metrics["epoch"] in self.recorded.epochs:
            return
        if checkpoint and checkpoint.epoch in self.recorded.versions:
            checkpoint = None
        self.tracker.log_epoch(metrics, step, checkpoint)

    def log_missing(self):
        """What the resume state holds and the tracker's record lacks, in the order it was made: a
        kill -9 can lose what a client had buffered (Neptune's offline writes, MLflow's queued
        metrics) after the state that covers it was written."""
        best = None
        for metrics in self.history:
            epoch = metrics["epoch"]
            if math.isfinite(metrics["train/loss"]) and (best is None or metrics["val/acc"] > best):
                best = metrics["val/acc"]
                checkpoint = Checkpoint(self.checkpoint_path(epoch), epoch, best)
            else:
                checkpoint = None
            end = epoch * self.steps_per_epoch
            for step, point in self.points:
                if end - self.steps_per_epoch < step <= end and step not in self.recorded.steps:
                    self.tracker.log_metrics(point, step)
            self.log_epoch(metrics, end, checkpoint)
        for step, point in self.points:  # the unfinished epoch's points
            if step > len(self.history) * self.steps_per_epoch and step not in self.recorded.steps:
                self.tracker.log_metrics(point, step)
        self.recorded.steps.update(step for step, _ in self.points)
        self.recorded.epochs.update(m["epoch"] for m in self.history)

    def stop_here(self, when=False):
        """Save the resume state if asked to stop (or `when`); raise Interrupted if asked to stop."""
        stop = self.stop_requested()
        if stop or when:
            self.save_state()
            self.state_saved_at = time.monotonic()
        if stop:
            raise Interrupted(self.stop.signum, self.state_path)

    def finish(self):
        """Evaluate the best checkpoint on the test set, save it as the final version, summarize.

        The resume state stays until lifecycle.train has closed the tracker's run."""
        best = self.best
        load_checkpoint(self.checkpoint_path(best["epoch"]), self.model)
        test_loss, test_acc, evaluation = self.evaluate(self.data.test, detailed=True)
        final_path = os.path.join(self.run_dir, "checkpoints", "final.pt")
        if not os.path.exists(final_path):  # written once: a resumed run's tracker may hold it already
            self.save(
                save_checkpoint,
                final_path,
                self.model,
                epoch=best["epoch"],
                val_acc=best["val_acc"],
                test_acc=test_acc,
                config=self.cfg,
                classes=list(self.data.classes),
                mean=list(self.data.mean),
                std=list(self.data.std),
            )
        self.stop_here()
        summary = {
            "test/loss": test_loss,
            "test/acc": test_acc,
            "best/val_acc": best["val_acc"],
            "best/epoch": best["epoch"],
        }
        if not self.recorded.results:
            final = (
                None
                if self.recorded.final
                else Checkpoint(final_path, best["epoch"], best["val_acc"], final=True, test_acc=test_acc)
            )
            self.tracker.log_results(evaluation, final, summary, self.step)
        self.say(
            f"test loss {test_loss:.4f} acc {test_acc:.4f} (best checkpoint: epoch {best['epoch']}, "
            f"val acc {best['val_acc']:.4f})"
        )
        result = {"config": self.cfg, "epochs": self.history, "summary": summary}
        if self.rank == 0:
            with open(os.path.join(self.run_dir, "history.json"), "w") as f:
                json.dump(result, f, indent=1)
        return result

    def forget_state(self):
        """The run is finished and its tracker run closed: nothing is left to resume."""
        for path in (self.state_path, os.path.join(self.run_dir, self.PREVIOUS_FILE)):
            if self.rank == 0 and os.path.exists(path):
                os.remove(path)

    def say(self, line):
        if self.rank == 0:
            tqdm.write(line)

    @property
    def state_path(self):
        return os.path.join(self.run_dir, self.RESUME_FILE)

    def save(self, writer, path, *args, **kwargs):
        if self.rank != 0:
            return
        try:
            writer(path, *args, **kwargs)
        except (OSError, RuntimeError) as e:  # torch.save reports a failed write as RuntimeError
            if os.path.exists(path + ".tmp"):
                os.remove(path + ".tmp")
            reason = e.strerror if isinstance(e, OSError) and e.strerror else "the write failed (disk full?)"
            raise CheckpointError(f"cannot write {path}: {reason}") from None

    def save_state(self):
        """Everything needed to continue from the next step exactly as if never stopped."""
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.opt.state_dict(),
            "scheduler": self.sched.state_dict(),
            "step": self.step,
            "history": self.history,
            "points": self.points,
            "best": self.best,
            "partial": self.partial,
            "config": self.cfg,
            "lr": self.lr,
            "rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else None,
        }

        def write(path):  # the previous state stays beside it until this one is on disk
            durable.write_atomically(
                path, lambda tmp: torch.save(state, tmp), keep_previous=os.path.join(self.run_dir, self.PREVIOUS_FILE)
            )

        self.save(write, self.state_path)

    def restore(self, state):
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])
        self.step, self.history, self.points = state["step"], state["history"], state.get("points", [])
        self.best, self.partial, self.lr = state["best"], state["partial"], state["lr"]
        torch.set_rng_state(state["rng"])
        if state["cuda_rng"] is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state_all(state["cuda_rng"])

    def batch(self, split, index, train):
        """Normalized images and labels; in training, this process's rows of the augmented global batch."""
        x, y = split.images[index], split.labels[index]
        if train:  # random draws are for the global batch, so any number of processes sees the same
            x = data.augment(x, None)[self.rank :: self.world]
            y = y[self.rank :: self.world]
        x = data.normalize(x, self.data.mean, self.data.std)
        return x.contiguous(memory_format=torch.channels_last), y

    def train_one_epoch(self, epoch):
        """Train one epoch (or what is left of it); returns mean loss, accuracy and seconds."""
        cfg, train = self.cfg, self.data.train
        done = self.partial if self.partial else {"steps": 0, "loss_sum": 0.0, "correct": 0, "seconds": 0.0}
        self.partial = None
        self.net.train()
        # Order from (seed, epoch) and randomness from (seed, step): a run is reproducible
        # from any step, whatever else consumed random numbers in between.
        order = torch.randperm(len(train), generator=torch.Generator().manual_seed(cfg["seed"] * 1000 + epoch)).to(
            self.device
        )
        loss_sum = torch.tensor(done["loss_sum"] if self.rank == 0 else 0.0, device=self.device)
        correct = torch.tensor(done["correct"] if self.rank == 0 else 0, device=self.device)
        bar = tqdm(
            total=len(train),
            initial=min(len(train), done["steps"] * cfg["batch_size"]),
            desc=f"epoch {epoch}",
            unit="img",
            leave=False,
            disable=None if self.rank == 0 else True,
        )
        t0 = time.perf_counter()
        for i in range(done["steps"], self.steps_per_epoch):
            torch.manual_seed(cfg["seed"] * 1_000_003 + self.step)
            index = order[i * cfg["batch_size"] : (i + 1) * cfg["batch_size"]]
            x, y = self.batch(train, index, True)
            for m in self.dropouts:
                m.rows = (len(index), self.rank, self.world)
            with torch.autocast(**self.autocast):
                logits = self.net(x)
                # A sum over the global batch size: DDP's mean over processes makes it the global mean.
                loss = F.cross_entropy(logits, y, reduction="sum", label_smoothing=cfg["label_smoothing"]) * (
                    self.world / len(index)
                )
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.lr = self.opt.param_groups[0]["lr"]
            self.opt.step()
            self.sched.step()
            self.step += 1
            # Sums stay on the device; reading them only every log_every steps avoids a host sync per step.
            batch_correct = (logits.argmax(1) == y).sum()
            loss_sum += loss.detach().float() * (len(index) / self.world)  # this process's summed loss
            correct += batch_correct
            bar.update(len(y))
            # The first loss shows how training starts; a resumed run skips what its record holds.
            if self.step % cfg["log_every"] == 0 or self.step == 1:
                batch = self.all_sum(
                    torch.stack([loss.detach().float() * (len(index) / self.world), batch_correct.float()])
                )
                batch_loss, batch_acc = (batch / len(index)).tolist()
                point = {"train/batch_loss": batch_loss, "train/batch_acc": batch_acc}
                self.points.append((self.step, point))
                if self.step not in self.recorded.steps:
                    self.tracker.log_metrics(point, self.step)
                bar.set_postfix(
                    loss=f"{batch_loss:.3f}", acc=f"{batch_acc:.3f}", img_s=f"{bar.n / (time.perf_counter() - t0):.0f}"
                )
            if self.stop_requested(pipelined=True):
                totals = self.all_sum(torch.stack([loss_sum, correct.float()]))  # rank 0 saves all processes' sums
                self.partial = {
                    "steps": i + 1,
                    "loss_sum": totals[0].item(),
                    "correct": int(totals[1].item()),
                    "seconds": done["seconds"] + time.perf_counter() - t0,
                }
                self.save_state()
                raise Interrupted(self.stop.signum, self.state_path)
        bar.close()
        seconds = done["seconds"] + time.perf_counter() - t0
        totals = self.all_sum(torch.stack([loss_sum, correct.float()]))
        return totals[0].item() / len(train), totals[1].item() / len(train), seconds

    def all_sum(self, t):
        if self.distributed:
            dist.all_reduce(t)
        return t

    def stop_requested(self, pipelined=False):
        """Whether to stop: a signal arrived (in any process, under DDP, where all stop on the same step).

        Under DDP the processes must agree. Between epochs they do at once. Inside an epoch
        (`pipelined`) each step launches the all-reduce of its flag and reads the one the step
        before launched, so no step waits for a collective and reads it back on the host: the
        processes stop together, one step after the signal."""
        if not self.distributed:
            return bool(self.stop.signum)
        agreed = 0
        if self.pending_stop is not None:  # the previous step's flag, all-reduced by now
            work, flag = self.pending_stop
            work.wait()
            agreed = int(flag.item())
            self.pending_stop = None
        flag = torch.tensor([self.stop.signum or 0], device=self.device)
        if pipelined:
            self.pending_stop = (dist.all_reduce(flag, op=dist.ReduceOp.MAX, async_op=True), flag)
        else:
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            agreed = max(agreed, int(flag.item()))
        if agreed:
            self.stop.signum = agreed
        return bool(agreed)

    @torch.no_grad()
    def evaluate(self, split, detailed=False, batch_size=1000):
        """Loss and accuracy on a split; with detailed, also the `Evaluation` of its predictions."""
        self.model.eval()
        logits = []
        for i in range(0, len(split), batch_size):
            x, _ = self.batch(split, slice(i, i + batch_size), False)
            with torch.autocast(**self.autocast):
                logits.append(self.model(x).float())
        logits = torch.cat(logits)
        # The training objective (label smoothing included), so train, val and test losses compare.
        loss = F.cross_entropy(logits, split.labels, label_smoothing=self.cfg["label_smoothing"]).item()
        p = logits.softmax(1)
        pred = p.argmax(1)
        acc = (pred == split.labels).float().mean().item()
        if not detailed:
            return loss, acc, None
        return loss, acc, self.evaluation(split, p, pred)

    def evaluation(self, split, probs, pred, n_mistakes=25):
        classes = list(self.data.classes)
        y, pred = split.labels.cpu(), pred.cpu()
        confusion = torch.bincount(y * len(classes) + pred, minlength=len(classes) ** 2)
        confusion = confusion.reshape(len(classes), len(classes)).numpy()
        per_class = (confusion.diagonal() / confusion.sum(1).clip(min=1)).tolist()
        confidence = probs.max(1).values.cpu()
        wrong = (pred != y).nonzero().flatten()
        worst = wrong[confidence[wrong].argsort(descending=True)[:n_mistakes]]
        mistakes = [
            {
                "image": split.images[i].permute(1, 2, 0).cpu().numpy(),
                "index": int(i),
                "true": classes[y[i]],
                "predicted": classes[pred[i]],
                "probability": float(confidence[i]),
            }
            for i in worst.tolist()
        ]
        return Evaluation(classes, y.numpy(), pred.numpy(), confusion, per_class, mistakes)
