"""Files the adapters write for a tool to keep: the model's architecture as text, a copy of the code
that ran, and the test confusion matrix as a matplotlib figure (for tools that keep figures)."""

import glob
import math
import os
import shutil

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCES = ("*.py", "trackers/*.py")  # the code that ran, relative to the repository and to the copy


def copy_source(run_dir):
    """The repository's Python files copied into the run folder's source/ (a run folder can move to
    another machine: the copy goes with it); its path."""
    source = os.path.join(run_dir, "source")
    for pattern in SOURCES:
        for path in glob.glob(os.path.join(ROOT, pattern)):
            target = os.path.join(source, os.path.relpath(path, ROOT))
            os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.copy(path, target)
    return source


def architecture_file(run_dir, model, params):
    """The model's architecture as text in the run folder, for the tracker to upload; its path."""
    path = os.path.join(run_dir, "architecture.txt")
    os.makedirs(run_dir, exist_ok=True)
    with open(path, "w") as f:
        f.write(f"{model}\n\ntrainable parameters: {params:,}\n")
    return path


HISTOGRAM_SAMPLE = 16_384  # values of each tensor a histogram bins (all of a smaller tensor's): 64 bins of ~256
SAMPLE_BLOCK = 256  # consecutive values: 1 KB read at once (float32); 64 blocks a tensor
_SAMPLED = {}  # (tensor name, size, device) -> the blocks of its sample, by index


def weight_sample(model):
    """The values the epoch's histograms bin: of every parameter and of its gradient from the epoch's
    last step, up to HISTOGRAM_SAMPLE values each: SAMPLE_BLOCK consecutive values at each of blocks
    drawn once (seed 0) and kept, so every epoch bins the same positions. Taken on the training
    device with one gather a tensor, of whole blocks: a copy of a few megabytes read a block at a
    time (single values drawn across the 186 MB of the study's tensors cost a cache miss each)."""
    import torch

    sample = {}
    for name, p in model.named_parameters():
        for kind, t in (("parameters", p), ("gradients", p.grad)):
            if t is None:
                continue
            flat = t.detach().reshape(-1)
            if flat.numel() <= HISTOGRAM_SAMPLE:
                sample[f"{kind}/{name}"] = flat.clone()
                continue
            blocks = flat.numel() // SAMPLE_BLOCK
            key = (name, flat.numel(), str(flat.device))
            if key not in _SAMPLED:  # in increasing order: a gather that reads memory forward is faster
                drawn = torch.randperm(blocks, generator=torch.Generator().manual_seed(0))[
                    : HISTOGRAM_SAMPLE // SAMPLE_BLOCK
                ]
                _SAMPLED[key] = drawn.sort().values.to(flat.device)
            rows = flat[: blocks * SAMPLE_BLOCK].view(blocks, SAMPLE_BLOCK)
            sample[f"{kind}/{name}"] = rows.index_select(0, _SAMPLED[key]).reshape(-1)
    return sample


def histograms(sample, bins=64):
    """What wandb.watch(model, log="all") records, under its names: a histogram (counts, bin edges) of
    every tensor of `weight_sample`. Once per epoch, so the histograms line up with the epochs and
    the model versions (docs/costs.md, "Histograms")."""
    import numpy as np

    found = {}
    for name, t in sample.items():
        t = t.float()
        lo, hi = (v.item() for v in t.aminmax())
        if not (math.isfinite(lo) and math.isfinite(hi)):
            continue  # a diverged run: nothing meaningful to bin
        if hi <= lo:  # a constant tensor (zero-initialized biases): numpy's convention
            lo, hi = lo - 0.5, hi + 0.5
        counts = t.histc(bins=bins, min=lo, max=hi).cpu().numpy()
        found[name] = (counts, np.linspace(lo, hi, bins + 1))
    return found


def confusion_figure(evaluation):
    """The test confusion matrix as a matplotlib figure; close it after."""
    import matplotlib  # here, not at the top: the tracker sets MPLCONFIGDIR first
    import numpy as np

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
