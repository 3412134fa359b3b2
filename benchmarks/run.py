"""What the engine and the trackers cost, measured side by side in one process.

    python benchmarks/run.py --quick --json     # `make benchmark` (its minutes: "seconds" in its JSON)
    python benchmarks/run.py --device cuda      # on a GPU machine (benchmarks/gpu.sh runs it)

- engine vs bare loop: seconds per training step of the engine (data indexing, batched
  augmentation, normalization, seeding, metric sums) / a bare PyTorch loop on a fixed batch
  with the same optimizer, alternated over repeats, medians;
- what a tool adds to an epoch at a GPU's pace (benchmarks/critical_path.py): an epoch of 176
  simulated steps of 2, 5 and 10 ms with the scripts' calls and a new model version, against the
  same epoch untracked, in milliseconds per epoch with a 95% interval, by phase, with the tool's
  background CPU; and the engine's own epoch end (a checkpoint's write);
- tracker overhead on a CPU step (benchmarks/overhead.py): training time with each tool's tracker offline over
  time with none, at the default --log-every and at every step, in interleaved blocks with an A/A
  control and 95% intervals; each tool's own CPU and memory; its run start, epoch end and finish;
  a cProfile of Neptune's every-step calls; the load sweep (1 to 1,000 values a call at up to 250
  calls a second, read back from each record);
- augmentation: batched uint8 augmentation + normalization vs the study's per-image PIL pipeline
  through a DataLoader, both on one thread (and on the GPU, when there is one).
A tracker whose client is not installed is skipped and said so. With --json, stdout is one JSON
object with every figure, the raw block times and the hardware; everything else goes to stderr.
"""

import argparse
import atexit
import functools
import json
import math
import os
import random
import shutil
import signal
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import critical_path  # noqa: E402  (benchmarks/critical_path.py)
import overhead  # noqa: E402  (benchmarks/overhead.py)
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import alexnet  # noqa: E402
import cli  # noqa: E402
import data  # noqa: E402
import lifecycle  # noqa: E402
import trackers  # noqa: E402
from trackers import base  # noqa: E402

CIFAR_MEAN_STD = (0.4914, 0.4822, 0.4465), (0.247, 0.243, 0.261)  # normalization of the timed batches


DEFAULT_LOG_EVERY = 50  # the scripts' --log-every default
VAL_IMAGES = round(50000 * alexnet.RECIPES["default"]["val_fraction"])  # the validation at each epoch's end
EPOCH_STEPS = math.ceil(
    50000 * (1 - alexnet.RECIPES["default"]["val_fraction"]) / alexnet.RECIPES["default"]["batch_size"]
)
SWEEP_KEYS, SWEEP_RATES, SWEEP_S = (1, 10, 100, 1000), (10, 100, 250), 2.0  # 250 calls a second: a 4 ms step
NAMES = {**{tool.key: tool.name for tool in trackers.TOOLS}, "wandb_watch": "W&B with wandb.watch"}


def hardware(device):
    return alexnet.environment(device)


def made_at():
    """The commit of this checkout and whether its tracked files differ from it (None outside a clone)."""
    import subprocess

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    git = functools.partial(subprocess.run, cwd=root, capture_output=True, text=True)
    try:
        head = git(["git", "rev-parse", "HEAD"]).stdout.strip()
        changed = git(["git", "status", "--porcelain", "--untracked-files=no"]).stdout.strip()
    except OSError:  # no git here
        return {"commit": None, "changed_files": None}
    return {"commit": head or None, "changed_files": bool(changed) if head else None}


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
    """The engine's training epoch of `steps` batches, per step (the first epoch is the warm-up), and
    its evaluation of the job's 5,000 validation images, in those steps."""
    ds = data.load("synthetic", None, train_size=batch * steps * 10 // 9, val_fraction=0.1)
    engine = alexnet.Engine(config(batch, epochs=2), ds, base.Disabled(None, "unused"), device, "")
    engine.train_one_epoch(1)
    sync(device)
    t0 = time.perf_counter()
    engine.train_one_epoch(2)
    sync(device)
    step_s = (time.perf_counter() - t0) / engine.steps_per_epoch
    t0 = time.perf_counter()
    engine.evaluate(engine.data.val)
    sync(device)
    per_image = (time.perf_counter() - t0) / len(engine.data.val)
    return step_s, VAL_IMAGES * per_image / step_s


def augment_throughput(images, repeats):
    """Images per second on one thread: batched uint8 augmentation vs the study's PIL pipeline."""
    import torchvision.transforms as T
    from PIL import Image

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    mean, std = CIFAR_MEAN_STD
    pil = T.Compose(
        [
            T.RandomRotation(5),
            T.RandomHorizontalFlip(),
            T.RandomCrop(32, padding=2),
            T.ToTensor(),
            T.Normalize(mean, std),
        ]
    )
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
            data.normalize(data.augment(images[i : i + 256]), mean, std)

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
        data.normalize(data.augment(images[i * batch : (i + 1) * batch]), mean, std)
    sync(device)
    t0 = time.perf_counter()
    for i in range(batches):
        data.normalize(data.augment(images[(i % 4) * batch : (i % 4 + 1) * batch]), mean, std)
    sync(device)
    return batch * batches / (time.perf_counter() - t0)


def main():
    p = argparse.ArgumentParser(description="Measure the engine's and the trackers' costs side by side.")
    p.add_argument(
        "--quick", action="store_true", help="fewer repeats of the engine and augmentation figures (`make benchmark`)"
    )
    p.add_argument("--json", action="store_true", help="end with one JSON line of every figure")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="where to train (default: cpu)")
    p.add_argument(
        "--threads",
        type=cli.positive(int),
        default=1,
        help="PyTorch threads of the training (default 1: the other cores take the trackers' background "
        "work, as a GPU machine's free cores do; their CPU is counted apart)",
    )
    p.add_argument(
        "--rounds",
        type=cli.positive(int),
        default=None,
        help="rounds of blocks at the default interval (default 200 on a CPU, 40 on a GPU; every step: a quarter)",
    )
    p.add_argument(
        "--epoch-rounds",
        type=cli.positive(int),
        nargs=len(critical_path.PACES_MS),
        default=list(critical_path.ROUNDS),
        metavar="N",
        help=f"rounds of the simulated GPU epochs at {', '.join(map(str, critical_path.PACES_MS))} ms a step "
        f"(default {' '.join(map(str, critical_path.ROUNDS))})",
    )
    p.add_argument(
        "--compare-watch",
        action="store_true",
        help="also measure W&B with wandb.watch(log='all') in place of the script's epoch-end histograms",
    )
    p.add_argument("--out-dir", default=None, help="where the trackers write (default: a temporary folder, removed)")
    a = p.parse_args()
    if a.rounds == 1 or 1 in a.epoch_rounds:
        p.error("--rounds, --epoch-rounds: an interval needs at least 2 rounds")
    if a.json:  # the clients print to stdout (Neptune's log lines): only the JSON line goes there
        sys.stdout.flush()
        result_out = os.fdopen(os.dup(1), "w")
        os.dup2(2, 1)
    device = lifecycle.resolve_device(a.device)
    cpu = device.type == "cpu"
    if cpu:
        torch.set_num_threads(a.threads)
    repeats = 3 if a.quick else 5
    out_dir = a.out_dir or tempfile.mkdtemp(prefix="bench-")
    os.makedirs(out_dir, exist_ok=True)
    if not a.out_dir:  # its runs' checkpoints reach gigabytes: removed even when stopped (Ctrl-C, kill)
        atexit.register(shutil.rmtree, out_dir, ignore_errors=True)
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    os.environ.setdefault("MPLCONFIGDIR", os.path.join(out_dir, ".matplotlib"))
    res = {"hardware": hardware(device), "made": made_at(), "quick": a.quick, "command": " ".join(sys.argv[1:])}
    say = (lambda *x: print(*x, file=sys.stderr, flush=True)) if a.json else functools.partial(print, flush=True)
    t_begin = time.perf_counter()

    batch, steps = 256, (6 if a.quick else 20) if cpu else 100
    pairs, evaluation = [], []
    for _ in range(repeats):
        step_s, evaluation_steps = engine_step_seconds(device, batch, steps)
        pairs.append((step_s, bare_step_seconds(device, batch, steps)))
        evaluation.append(evaluation_steps)
    res["engine_step_s"] = statistics.median(e for e, _ in pairs)
    res["engine_evaluation_steps"] = statistics.median(evaluation)
    res["bare_step_s"] = statistics.median(b for _, b in pairs)
    res["engine_vs_bare_step_ratio"] = median_ratio(pairs)
    say(
        f"step at batch {batch}: engine {res['engine_step_s'] * 1e3:.1f} ms, bare loop "
        f"{res['bare_step_s'] * 1e3:.1f} ms, ratio {res['engine_vs_bare_step_ratio']:.3f}; the epoch end's "
        f"evaluation of {VAL_IMAGES} images takes {res['engine_evaluation_steps']:.1f} training steps' time"
    )

    tools = [k for k in overhead.TOOLS if available(k)]
    for kind in set(overhead.TOOLS) - set(tools):
        say(f"{NAMES[kind]}: not installed here, not measured")
    # On a CPU, blocks of one step at batch 32: the step time here wanders by several percent over
    # seconds, so rounds of one step per variant put every tracked step beside untracked ones (blocks
    # of 10 steps needed four times the rounds for the same interval). On a GPU, blocks of 50 steps.
    t_batch, t_steps = (32, 1) if cpu else (256, 50)
    rounds = a.rounds or (200 if cpu else 40)  # on these cores: an interval of about ±1.7% at the default
    rng = random.Random(0)
    bench = overhead.Bench(device, t_batch, t_steps, out_dir)
    res["method"] = {
        "batch": t_batch,
        "block_steps": t_steps,
        "threads": torch.get_num_threads(),
        "seed": 0,
        "default_log_every": DEFAULT_LOG_EVERY,
        "epoch_steps": EPOCH_STEPS,
        "design": "one process; every tool's offline run open through the phase; rounds of blocks in a random "
        "order (no tracker, each tool, no tracker again); a tracked block over the mean of its round's "
        "two untracked blocks; the A/A control: the second untracked block over the first",
        "interval": "Student's t, 95%, over the per-round ratios",
    }
    res["overhead"], res["blocks"], res["trackers"] = {}, {}, {}
    phases = [("default", tools, DEFAULT_LOG_EVERY, rounds), ("every_step", tools, 1, max(2, rounds // 4))]
    if a.compare_watch and "wandb" in tools:  # a phase of its own: two W&B runs in one process would be one
        phases.append(("default_watch", ["wandb_watch"], DEFAULT_LOG_EVERY, rounds))
    for label, measured, log_every, n in phases:
        say(
            f"{label}: training time with each tracker / with none, log every {log_every} step(s): {n} rounds of "
            f"{len(measured) + 2} blocks of {t_steps} steps at batch {t_batch}"
        )
        phase = bench.phase(
            measured, n, log_every, rng, say, "" if label == "default" else "_" + label, lifecycle=label == "default"
        )
        res["blocks"][label] = phase["blocks"]
        aa = overhead.summary(phase["blocks"], "aa_control")
        res["overhead"]["aa_control" if label == "default" else f"aa_control_{label}"] = aa
        interval = label.removesuffix("_watch")  # the W&B-with-watch phase is its default interval
        for tool in measured:
            res["overhead"].setdefault(tool, {})[interval] = overhead.summary(phase["blocks"], tool)
            res["trackers"].setdefault(tool, {})[interval] = {
                **phase["tools"][tool],
                **overhead.own_work(phase["tools"][tool], phase["blocks"], tool, EPOCH_STEPS, res["engine_step_s"]),
            }
        say(
            f"  A/A control {aa['ratio']:.3f} [{aa['ci95'][0]:.3f}, {aa['ci95'][1]:.3f}]; "
            + ", ".join(
                f"{NAMES[t]} {res['overhead'][t][interval]['ratio']:.3f} [{res['overhead'][t][interval]['ci95'][0]:.3f}, "
                f"{res['overhead'][t][interval]['ci95'][1]:.3f}]"
                for t in measured
            )
        )
    for tool in tools:
        d = res["trackers"][tool]["default"]
        say(
            f"{NAMES[tool]}: start {d['start_s']:.2f} s, epoch end {d['epoch_end_s']:.2f} s, finish {d['finish_s']:.2f} s, "
            f"own CPU {d['cpu_s_per_epoch']:.2f} s per epoch of {EPOCH_STEPS} steps at batch 256 "
            f"({d['background_cpu_share']:.1%} of a core in the background), threads/processes: "
            f"{', '.join(d['threads_and_processes']) or 'none'}"
        )

    if "neptune" in tools:  # the every-step figure explained: where the training thread's time goes
        res["profile"] = {"neptune_every_step": overhead.profile_block(bench, "neptune")}
        top = res["profile"]["neptune_every_step"]["top_tool"]
        say(
            "Neptune every step, cProfile of the training thread, the client's top entries by own time: "
            + "; ".join(f"{r['function']} {r['own_s'] * 1e3:.1f} ms in {r['calls']} calls" for r in top[:5])
        )

    say(f"load sweep: {len(SWEEP_KEYS)} key counts x {len(SWEEP_RATES)} call rates per tool, {SWEEP_S:g} s each")
    res["load_sweep"] = {
        "seconds": SWEEP_S,
        "keys": SWEEP_KEYS,
        "rates": SWEEP_RATES,
        "points": overhead.sweep(tools, SWEEP_KEYS, SWEEP_RATES, SWEEP_S, os.path.join(out_dir, "load"), say),
    }

    say(
        f"what each tool adds to an epoch of {critical_path.EPOCH_STEPS} simulated GPU steps (a wait of "
        f"{', '.join(map(str, critical_path.PACES_MS))} ms), against the same epoch untracked"
    )
    res["critical_path"] = critical_path.measure(tools, os.path.join(out_dir, "epoch"), a.epoch_rounds, say)
    res["critical_path"]["engine"]["evaluation_steps"] = res["engine_evaluation_steps"]
    say(
        f"  the engine's own epoch end: a checkpoint's write {res['critical_path']['engine']['checkpoint_write_ms']:.0f} "
        f"ms, and the evaluation, {res['engine_evaluation_steps']:.1f} training steps' time"
    )
    for tool in tools:
        c = res["critical_path"][tool]
        say(
            f"  {NAMES[tool]}: +{c['ms_per_epoch']:.1f} ms per epoch [{c['ci95'][0]:.1f}, {c['ci95'][1]:.1f}] at "
            f"{c['at_step_ms']} ms a step; ratio "
            + ", ".join(f"{r:.4f} at {p} ms" for p, r in c["ratio_at_step_ms"].items())
            + f"; its own threads' CPU {c['background_cpu_ms_per_epoch']:.0f} ms per epoch"
        )

    if not cpu:
        res["augment_device_img_s"] = device_augment_throughput(device)
        say(f"augmentation on the {device.type} device: {res['augment_device_img_s']:.0f} img/s")
    images = data.synthetic(2048 if a.quick else 8192)[0][0]
    aug = augment_throughput(images, repeats)
    res["augment_pil_img_s"], res["augment_batched_img_s"] = aug["pil"], aug["batched"]
    res["augment_speedup_vs_pil"] = aug["batched"] / aug["pil"]
    say(
        f"augmentation on one thread: PIL pipeline {aug['pil']:.0f} img/s, batched {aug['batched']:.0f} img/s, "
        f"{res['augment_speedup_vs_pil']:.1f}x"
    )
    res["seconds"] = time.perf_counter() - t_begin
    say(f"hardware: {json.dumps(res['hardware'])}; {res['seconds'] / 60:.1f} minutes")
    if a.json:
        print(json.dumps(res), file=result_out, flush=True)


if __name__ == "__main__":
    main()
