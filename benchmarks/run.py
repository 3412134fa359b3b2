"""What the engine and the trackers cost, measured side by side in one process.

    python benchmarks/run.py --quick --json     # under 10 minutes on 2 CPU cores
    python benchmarks/run.py --device cuda      # on a GPU machine (benchmarks/gpu.sh runs it)

Each comparison alternates its variants over several repeats and reports medians:
- engine vs bare loop: seconds per training step of the engine (data indexing, batched
  augmentation, normalization, seeding, metric sums) / a bare PyTorch loop on a fixed batch
  with the same optimizer;
- tracker overhead: the engine's training-loop time with each tracker offline at the default
  --log-every, and at every step, / with no tracker (with --compare-watch also W&B with
  wandb.watch); the tracker's epoch-end calls, run start and finish, timed apart;
- augmentation: batched uint8 augmentation + normalization vs the study's per-image PIL pipeline
  through a DataLoader, both on one thread (and on the GPU, when there is one);
- logging latency: one wandb.log / one Neptune append / one mlflow.log_metric, offline;
- disk footprint and file count of each tracker's local run data.
A tracker whose client is not installed is skipped and said so. The last line with --json is
one JSON object with every figure and the hardware.
"""
import argparse
import atexit
import contextlib
import functools
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import alexnet  # noqa: E402
import data  # noqa: E402
import tracking  # noqa: E402


CIFAR_MEAN_STD = (0.4914, 0.4822, 0.4465), (0.247, 0.243, 0.261)  # normalization of the timed batches


def hardware(device):
    return alexnet.environment(device)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_ratio(pairs):
    return statistics.median(a / b for a, b in pairs)


def bare_step_seconds(device, batch, steps):
    """A bare loop: the model, the default recipe's optimizer and cross-entropy on one fixed batch."""
    torch.manual_seed(0)
    model = alexnet.AlexNet().to(device, memory_format=torch.channels_last).train()
    opt = alexnet.make_optimizer(model.parameters(), config(batch), device)  # the engine's optimizer
    x = torch.randn(batch, 3, 32, 32, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,), device=device)
    autocast = dict(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")

    def step():
        with torch.autocast(**autocast):
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    step()  # warm-up
    sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    return (time.perf_counter() - t0) / steps


def config(batch, epochs=1, log_every=50, seed=0):
    return dict(alexnet.RECIPES["default"], batch_size=batch, epochs=epochs, log_every=log_every, seed=seed)


def engine_step_seconds(device, batch, steps):
    """The engine's training epoch of `steps` batches, per step; the first epoch is the warm-up."""
    ds = data.load("synthetic", None, train_size=batch * steps * 10 // 9, val_fraction=0.1)
    engine = alexnet.Engine(config(batch, epochs=2), ds, tracking.Tracker(None, "unused"), device, "")
    engine.train_one_epoch(1)
    sync(device)
    t0 = time.perf_counter()
    engine.train_one_epoch(2)
    sync(device)
    return (time.perf_counter() - t0) / engine.steps_per_epoch


class Timed:
    """Wraps a tracker to time its calls: start and finish, and the epoch-end ones."""
    EPOCH_END = ("log_epoch",)

    def __init__(self, tracker):
        self.tracker, self.times = tracker, {"epoch_end": 0.0}

    def __getattr__(self, name):
        method = getattr(self.tracker, name)
        if name not in ("start", "finish", *self.EPOCH_END):
            return method

        def timed(*args):
            t0 = time.perf_counter()
            method(*args)
            if name in self.EPOCH_END:
                self.times["epoch_end"] += time.perf_counter() - t0
            else:
                self.times[name] = time.perf_counter() - t0
        return timed


@functools.lru_cache(maxsize=2)
def synthetic_dataset(size):
    return data.load("synthetic", None, train_size=size, val_fraction=0.1)


def tracked_run(kind, device, batch, steps, log_every, out_dir):
    """One engine run on synthetic data with a tracker offline; its training time and tracker costs."""
    args = tracking.build_parser(tracker_class(kind)).parse_args(
        ["--mode", "offline" if kind != "none" else "disabled", "--out-dir", out_dir, "--log-every", str(log_every)])
    args.out_dir = os.path.abspath(out_dir)
    cfg = tracking.make_config(args)
    cfg.update(config(batch, log_every=log_every), run_id=f"bench-{kind}-{time.time_ns()}", dataset_version="synthetic")
    ds = synthetic_dataset(batch * steps * 10 // 9)
    run_dir = os.path.join(out_dir, cfg["run_id"])
    tracker = Timed(tracker_class(kind)(args, run_dir))
    with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet):
        engine = alexnet.Engine(cfg, ds, tracker, device, run_dir)
        engine.finish = lambda: None  # the test evaluation is no part of what is compared
        tracker.start(cfg, engine.model)
        engine.run()
        tracker.finish("completed", 0)
    return {"train_s": sum(e["epoch_time_s"] for e in engine.history), **tracker.times}


def tracker_class(kind):
    if kind == "wandb":
        from wandb_setup_script import WandbTracker
        return WandbTracker
    if kind == "wandb_watch":
        return wandb_watch_tracker()
    if kind == "neptune":
        from neptune_integration import NeptuneTracker
        return NeptuneTracker
    if kind == "mlflow":
        from mlflow_tracking import MlflowTracker
        return MlflowTracker
    return tracking.Tracker


def wandb_watch_tracker():
    """The W&B tracker with wandb.watch(log="all") at W&B's default interval instead of the
    script's epoch-end histograms: what the script avoids, measured beside it."""
    import wandb_setup_script

    class WatchTracker(wandb_setup_script.WandbTracker):
        def start(self, config, model):
            super().start(config, model)
            self.run.watch(model, log="all", log_freq=1000)

        def log_epoch(self, metrics, step, checkpoint=None):
            if checkpoint:
                self.log_model(checkpoint)
            self.run.log(metrics, step=step, commit=True)
    return WatchTracker


def local_footprint(kind, out_dir):
    """Bytes and files of the tracker's own local data: the checkpoints W&B and Neptune reference
    are excluded; the copy of each model version in MLflow's artifact store is counted."""
    roots = {"wandb": ["wandb", ".wandb-data", ".wandb-cache", ".wandb-artifacts", ".wandb-config"],
             "neptune": [".neptune"], "mlflow": ["mlflow.db", "mlartifacts"]}[kind.split("_")[0]]
    size = files = 0
    for root in roots:
        root = os.path.join(out_dir, root)
        paths = [root] if os.path.isfile(root) else [os.path.join(d, n) for d, _, ns in os.walk(root) for n in ns]
        for path in paths:
            if not os.path.islink(path):
                size += os.path.getsize(path)
                files += 1
    return size, files


def log_latency(kind, calls, out_dir):
    """Seconds per logging call of one float, offline, and the finish that flushes them."""
    if kind == "wandb":
        import wandb
        os.environ["WANDB_DIR"] = out_dir
        run = wandb.init(mode="offline", project="bench", dir=out_dir, settings=wandb.Settings(silent=True))
        t0 = time.perf_counter()
        for i in range(calls):
            run.log({"x": float(i)}, step=i)
        per_call = (time.perf_counter() - t0) / calls
        run.finish()
    elif kind == "mlflow":
        import mlflow  # imported already by the tracked runs, with its config folder under --out-dir
        mlflow.set_tracking_uri(f"sqlite:///{out_dir}/mlflow.db")
        mlflow.start_run(experiment_id=mlflow.create_experiment(f"latency-{time.time_ns()}", artifact_location=out_dir))
        t0 = time.perf_counter()
        for i in range(calls):
            mlflow.log_metric("x", float(i), step=i, synchronous=False)  # queued, as the script's per-step metrics
        per_call = (time.perf_counter() - t0) / calls
        mlflow.end_run()
    else:
        import neptune
        os.environ["NEPTUNE_DATA_DIRECTORY"] = os.path.join(out_dir, ".neptune")
        run = neptune.init_run(mode="offline", capture_hardware_metrics=False, capture_stdout=False,
                               capture_stderr=False, source_files=[])
        t0 = time.perf_counter()
        for i in range(calls):
            run["x"].append(float(i), step=i)
        per_call = (time.perf_counter() - t0) / calls
        run.stop()
    return per_call


def augment_throughput(images, repeats):
    """Images per second on one thread: batched uint8 augmentation vs the study's PIL pipeline."""
    from PIL import Image
    import torchvision.transforms as T
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    mean, std = CIFAR_MEAN_STD
    pil = T.Compose([T.RandomRotation(5), T.RandomHorizontalFlip(), T.RandomCrop(32, padding=2),
                     T.ToTensor(), T.Normalize(mean, std)])
    pil_images = [Image.fromarray(a) for a in images.permute(0, 2, 3, 1).numpy()]

    class Pil(torch.utils.data.Dataset):
        def __len__(self):
            return len(pil_images)

        def __getitem__(self, i):
            return pil(pil_images[i]), 0

    def run_pil():
        for _ in torch.utils.data.DataLoader(Pil(), batch_size=256, num_workers=0):
            pass

    def run_batched():
        for i in range(0, len(images), 256):
            data.normalize(data.augment(images[i:i + 256]), mean, std)
    results = {"pil": [], "batched": []}
    run_batched()
    for _ in range(repeats):
        for name, fn in (("pil", run_pil), ("batched", run_batched)):
            t0 = time.perf_counter()
            fn()
            results[name].append(len(images) / (time.perf_counter() - t0))
    torch.set_num_threads(threads)
    return {k: statistics.median(v) for k, v in results.items()}


def available(kind):
    """Whether the tracker's client is installed (a GPU machine may carry only one of them)."""
    import importlib.util
    return importlib.util.find_spec(kind) is not None


def device_augment_throughput(device, batch=256, batches=200):
    """Images per second of batched augmentation + normalization on the device itself."""
    images = data.synthetic(batch * 4)[0][0].to(device)
    mean, std = CIFAR_MEAN_STD
    for i in range(4):
        data.normalize(data.augment(images[i * batch:(i + 1) * batch]), mean, std)
    sync(device)
    t0 = time.perf_counter()
    for i in range(batches):
        data.normalize(data.augment(images[(i % 4) * batch:(i % 4 + 1) * batch]), mean, std)
    sync(device)
    return batch * batches / (time.perf_counter() - t0)


def main():
    p = argparse.ArgumentParser(description="Measure the engine's and the trackers' costs side by side.")
    p.add_argument("--quick", action="store_true", help="fewer steps and repeats: under 10 minutes on 2 CPU cores")
    p.add_argument("--json", action="store_true", help="end with one JSON line of every figure")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="where to train (default: cpu)")
    p.add_argument("--compare-watch", action="store_true",
                   help="also measure W&B with wandb.watch(log='all') in place of the script's epoch-end histograms")
    p.add_argument("--out-dir", default=None, help="where the trackers write (default: a temporary folder, removed)")
    a = p.parse_args()
    device = tracking.resolve_device(a.device)
    cpu = device.type == "cpu"
    repeats = 3 if a.quick else 5
    out_dir = a.out_dir or tempfile.mkdtemp(prefix="bench-")
    os.makedirs(out_dir, exist_ok=True)
    if not a.out_dir:  # its runs' checkpoints reach gigabytes: removed even when stopped (Ctrl-C, kill)
        atexit.register(shutil.rmtree, out_dir, ignore_errors=True)
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    os.environ.setdefault("MPLCONFIGDIR", os.path.join(out_dir, ".matplotlib"))
    res = {"hardware": hardware(device), "quick": a.quick}
    say = (lambda *x: print(*x, file=sys.stderr)) if a.json else print

    batch, steps = 256, (6 if a.quick else 20) if cpu else 100
    pairs = []
    for _ in range(repeats):
        pairs.append((engine_step_seconds(device, batch, steps), bare_step_seconds(device, batch, steps)))
    res["engine_step_s"] = statistics.median(e for e, _ in pairs)
    res["bare_step_s"] = statistics.median(b for _, b in pairs)
    res["engine_vs_bare_step_ratio"] = median_ratio(pairs)
    say(f"step at batch {batch}: engine {res['engine_step_s'] * 1e3:.1f} ms, bare loop "
        f"{res['bare_step_s'] * 1e3:.1f} ms, ratio {res['engine_vs_bare_step_ratio']:.3f}")

    # Tracker overhead on training time (the engine's training loop, where --log-every acts): each
    # repeat runs every variant once, in a rotated order, after one warm-up run. Batch 64 makes
    # steps short, so on a CPU the ratio is an upper bound for the real batch of 256; 60 steps
    # hold the default interval's logs at steps 1 and 50. Many short runs rather than a few long
    # ones: their median resists a slow moment of the machine. The tracker's epoch-end calls
    # (epoch metrics, histograms, model version) are timed apart: they come once an epoch.
    t_batch, t_steps = (64, 60) if cpu else (256, 500)
    t_repeats = repeats + 2
    kinds = [k for k in ("wandb", "neptune", "mlflow") if available(k)]
    names = {"wandb": "W&B", "neptune": "Neptune", "mlflow": "MLflow", "wandb_watch": "W&B with wandb.watch"}
    for kind in {"wandb", "neptune", "mlflow"} - set(kinds):
        say(f"{names[kind]}: not installed here, not measured")
    measured = kinds + (["wandb_watch"] if a.compare_watch and "wandb" in kinds else [])
    variants = ["none", *measured]
    tracked_run("none", device, t_batch, t_steps, 50, os.path.join(out_dir, "warm-up"))
    for log_every, label, reps, steps in ((50, "", t_repeats, t_steps), (1, "_every_step", 1 if a.quick else 3, t_steps // 2)):
        runs = {k: [] for k in variants}
        for rep in range(reps):
            for kind in variants[rep % len(variants):] + variants[:rep % len(variants)]:
                runs[kind].append(tracked_run(kind, device, t_batch, steps, log_every,
                                              os.path.join(out_dir, f"{kind}{label}")))
        base = statistics.median(r["train_s"] for r in runs["none"])
        for kind in measured:
            res[f"{kind}_overhead_ratio{label}"] = statistics.median(r["train_s"] for r in runs[kind]) / base
            if not label:
                res[f"{kind}_epoch_end_s"] = statistics.median(r["epoch_end"] for r in runs[kind])
                res[f"{kind}_start_s"] = statistics.median(r["start"] for r in runs[kind])
                res[f"{kind}_finish_s"] = statistics.median(r["finish"] for r in runs[kind])
                size, files = local_footprint(kind, os.path.join(out_dir, kind))
                res[f"{kind}_local_bytes_per_run"], res[f"{kind}_local_files_per_run"] = size // reps, files // reps
        if not label:
            res["overhead_run_spread"] = (max(r["train_s"] for r in runs["none"]) /
                                          min(r["train_s"] for r in runs["none"]) - 1)
        say(f"training time with tracker / without, log every {log_every} step(s), batch {t_batch}, {steps} steps: "
            + ", ".join(f"{names[k]} {res[f'{k}_overhead_ratio{label}']:.3f}" for k in measured)
            + (f" (runs with no tracker differ by up to {res['overhead_run_spread']:.1%})" if not label else ""))
    for kind in kinds:
        say(f"{names[kind]}: run start {res[f'{kind}_start_s']:.2f} s, epoch end {res[f'{kind}_epoch_end_s']:.2f} s, "
            f"finish {res[f'{kind}_finish_s']:.2f} s, local data per run {res[f'{kind}_local_bytes_per_run'] / 1e6:.2f} MB "
            f"in {res[f'{kind}_local_files_per_run']} files")

    calls = 2000 if a.quick else 10000
    for kind in kinds:
        res[f"{kind}_log_call_ms"] = 1e3 * statistics.median(
            log_latency(kind, calls, os.path.join(out_dir, f"latency-{kind}")) for _ in range(repeats))
        say(f"one logging call, offline: {names[kind]} {res[f'{kind}_log_call_ms']:.3f} ms")

    if not cpu:
        res["augment_device_img_s"] = device_augment_throughput(device)
        say(f"augmentation on the {device.type} device: {res['augment_device_img_s']:.0f} img/s")
    images = data.synthetic(2048 if a.quick else 8192)[0][0]
    aug = augment_throughput(images, repeats)
    res["augment_pil_img_s"], res["augment_batched_img_s"] = aug["pil"], aug["batched"]
    res["augment_speedup_vs_pil"] = aug["batched"] / aug["pil"]
    say(f"augmentation on one thread: PIL pipeline {aug['pil']:.0f} img/s, batched {aug['batched']:.0f} img/s, "
        f"{res['augment_speedup_vs_pil']:.1f}x")
    say(f"hardware: {json.dumps(res['hardware'])}")
    if a.json:
        print(json.dumps(res))


if __name__ == "__main__":
    main()
