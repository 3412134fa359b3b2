"""Train recipes to the end on CIFAR-10 and compare them: test accuracy and wall time.

    python benchmarks/recipes.py --data-dir D --skip-checksum --device cuda --json
    python benchmarks/recipes.py --data-dir D --skip-checksum --try adamw:optimizer=adamw,weight_decay=0.05

Each entry is a named recipe, or `--try NAME:KEY=VALUE,...` (a variant of --base), trained by
`alexnet.Engine` with no tracker, as the scripts train it. It reports the test accuracy of the
best checkpoint, the best validation accuracy, the run's wall time (epochs, validation,
checkpoints and test) and the first and median epoch times. On 2 CPU cores one 25-epoch entry
takes about 45 minutes; on one H100 seconds. The last line with --json is one JSON object.
"""

import argparse
import contextlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


import alexnet  # noqa: E402
import data  # noqa: E402
import lifecycle  # noqa: E402
from trackers import base  # noqa: E402


def variant(text, base):
    """NAME:KEY=VALUE,... into (name, config changes), each value of the recipe value's type."""
    name, _, changes = text.partition(":")
    recipe, out = {**alexnet.RECIPES[base], "compile": False}, {}
    for item in filter(None, changes.split(",")):
        key, _, value = item.partition("=")
        if key not in recipe:
            raise argparse.ArgumentTypeError(f"--try {text}: {key} is not a recipe key ({', '.join(recipe)})")
        kind = type(recipe[key])
        out[key] = (
            value.lower() in ("1", "true", "yes") if kind is bool else kind(float(value) if kind is int else value)
        )
    return name, out


def train(cfg, dataset, device, out_dir):
    run_dir = tempfile.mkdtemp(dir=out_dir)
    engine = alexnet.Engine(cfg, dataset, base.Disabled(None, run_dir), device, run_dir)
    t0 = time.perf_counter()
    with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet):
        result = engine.run()
    seconds = time.perf_counter() - t0
    shutil.rmtree(run_dir, ignore_errors=True)
    epochs = [e["epoch_time_s"] for e in result["epochs"]]
    return {
        "test_acc": result["summary"]["test/acc"],
        "best_val_acc": result["summary"]["best/val_acc"],
        "best_epoch": result["summary"]["best/epoch"],
        "run_s": seconds,
        "first_epoch_s": epochs[0],
        "median_epoch_s": statistics.median(epochs),
        "val_acc": [round(e["val/acc"], 4) for e in result["epochs"]],
        "train_acc": [round(e["train/acc"], 4) for e in result["epochs"]],
    }


def sync_check(cfg, a, device, out_dir):
    """Where training makes the host wait for the GPU (CUDA's sync debug mode), with counts."""
    import collections
    import warnings

    import torch

    ds = data.load("cifar10", a.data_dir, skip_checksum=a.skip_checksum, train_size=5000, seed=cfg["seed"])
    run_dir = tempfile.mkdtemp(dir=out_dir)
    engine = alexnet.Engine(cfg, ds, base.Disabled(None, run_dir), device, run_dir)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            engine.train_one_epoch(1)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    where = collections.Counter(
        f"{os.path.basename(w.filename)}:{w.lineno}" for w in caught if "synchroniz" in str(w.message)
    )
    print(
        f"sync check: {engine.steps_per_epoch} steps (log every {cfg['log_every']}), host waits: "
        f"{dict(where) or 'none'}",
        file=sys.stderr,
        flush=True,
    )
    shutil.rmtree(run_dir, ignore_errors=True)


def main():
    p = argparse.ArgumentParser(description="Train recipes to the end and compare accuracy and time.")
    p.add_argument("--data-dir", required=True, help="CIFAR-10 in the official python-batch layout")
    p.add_argument("--skip-checksum", action="store_true", help="accept a copy whose checksums differ")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument(
        "--recipes",
        nargs="*",
        default=["default", "study"],
        choices=sorted(alexnet.RECIPES),
        help="named recipes to train (default: default study)",
    )
    p.add_argument("--base", default="default", choices=sorted(alexnet.RECIPES), help="what --try changes")
    p.add_argument(
        "--try",
        dest="variants",
        action="append",
        default=[],
        metavar="NAME:KEY=VALUE,...",
        help="a variant of --base, e.g. adamw:optimizer=adamw,lr=1e-3,weight_decay=0.05",
    )
    p.add_argument(
        "--compile",
        action="store_true",
        help="also train the first entry with torch.compile, last (or give a variant compile=1)",
    )
    p.add_argument(
        "--time-budget",
        type=float,
        default=None,
        metavar="S",
        help="start no entry that would likely end after S seconds (entries go in the order given)",
    )
    p.add_argument(
        "--sync-check",
        action="store_true",
        help="on CUDA, first train one epoch of 5,000 images listing where the host waits for the GPU",
    )
    p.add_argument("--epochs", type=int, default=None, help="override every entry's epochs (a quick look)")
    p.add_argument("--train-size", type=int, default=None, help="a seeded subset of the training images")
    p.add_argument("--json", action="store_true", help="end with one JSON line of every result")
    a = p.parse_args()
    try:
        run, epochs = {"log_every": 50, "compile": False}, ({"epochs": a.epochs} if a.epochs else {})
        # (name, config, the keys it sets): the default recipe fits the rest to the data, as in a script
        entries = [(name, {**alexnet.RECIPES[name], **run, **epochs, "recipe": name}, set()) for name in a.recipes]
        for text in a.variants:
            name, changes = variant(text, a.base)
            entries.append(
                (name, {**alexnet.RECIPES[a.base], **run, **changes, **epochs, "recipe": a.base}, set(changes))
            )
        device = lifecycle.resolve_device(a.device)
        splits = {}

        def dataset(cfg):  # each entry gets the split its seed makes, as a script run would
            key = (cfg["seed"], cfg["val_fraction"])
            if key not in splits:
                splits[key] = data.load(
                    "cifar10",
                    a.data_dir,
                    skip_checksum=a.skip_checksum,
                    train_size=a.train_size,
                    val_fraction=key[1],
                    seed=key[0],
                )
            return splits[key]

        first = dataset(entries[0][1]) if entries else p.exit(2, "error: nothing to train\n")
        entries = [
            (name, {**cfg, **alexnet.fit_to_data(cfg, len(dataset(cfg).train), given)}) for name, cfg, given in entries
        ]
    except (argparse.ArgumentTypeError, base.UsageError, data.DataError) as e:
        p.exit(2, f"error: {e}\n")
    if a.compile:
        entries.append((entries[0][0] + "+compile", {**entries[0][1], "compile": True}))
    say = (lambda *x: print(*x, file=sys.stderr, flush=True)) if a.json else (lambda *x: print(*x, flush=True))
    out_dir = tempfile.mkdtemp(prefix="recipes-")
    results = {"hardware": alexnet.environment(device), "dataset_version": first.version, "entries": []}
    say(f"{'entry':<22} {'test acc':>8} {'best val':>8} {'@epoch':>6} {'run s':>8} {'epoch s':>8}  changes")
    if a.sync_check and device.type == "cuda":
        sync_check({**entries[0][1], "epochs": 1}, a, device, out_dir)
    t_start, longest = time.perf_counter(), 0.0
    for name, cfg in entries:
        need = longest + (90 if cfg.get("compile") else 0)  # compiling takes about a minute more
        if a.time_budget and time.perf_counter() - t_start + need > a.time_budget:
            say(f"{name}: skipped, the time budget of {a.time_budget:.0f} s would likely be exceeded")
            continue
        r = train(cfg, dataset(cfg), device, out_dir)
        changes = {k: v for k, v in cfg.items() if alexnet.RECIPES["default"].get(k, v) != v}
        longest = max(longest, r["run_s"])
        results["entries"].append({"name": name, "config": cfg, **r})
        say(
            f"{name:<22} {r['test_acc']:8.4f} {r['best_val_acc']:8.4f} {r['best_epoch']:6d} {r['run_s']:8.1f} "
            f"{r['median_epoch_s']:8.2f}  {json.dumps(changes)}"
        )
    shutil.rmtree(out_dir, ignore_errors=True)
    say(f"hardware: {json.dumps(results['hardware'])}")
    if a.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
