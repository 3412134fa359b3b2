"""What every record reader (trackers/<key>_record.py) provides, and the few helpers they share.

A reader reads a tool's record with the tool's own reader (its command line, client or API) where
there is one; a run's --out-dir is the only input, so a copied or moved record reads the same.

    RECORD_PATHS         the names under --out-dir that hold the tool's record (beside the run folders)
    read_run(out_dir)    the run in --out-dir (all its segments, oldest first) in one shape, below
    read_search(out_dir) a search's trials and study: {"trials": {number: trial}, "studies": [...],
                         "grouping": how the tool groups a search}; each trial as `new_trial` makes it,
                         with the "group" it is in; each study with its "group", "best" trial, whether
                         it is "closed", and the "trials" it holds itself where it holds them
    record_files(out_dir, run_id)  the files that hold that run's record alone ([] for a shared store)
    referenced(out_dir)  the record's text and every file (or glob) it points to (what an upload reads)
    copy_record(src, dst, search=False)  what the readers read of a run's (or search's) record under
                         --out-dir `src`, copied to `dst` without model files (report/collect.py);
                         returns what it left out that the report counts ({} if nothing)
    FOOTPRINT            what the record's files under RECORD_PATHS are, in a few words
    values_logged(out_dir, run_id, prefix)  how many values of series named prefix... a run holds

read_run's shape. Lists keep every write, in the order made, so a value recorded twice shows twice:
    tool, reader         the tool's name and the reader used
    runs                 how many tracker runs the folder holds (a resumed run is one)
    config               the run's parameters
    epochs               per-epoch metrics (EPOCH_KEYS), one dict per epoch recorded
    steps                (global step, train/batch_loss) per per-step point recorded
    models               {"epoch", "final", "metadata", "aliases"} per model version logged
    test_acc             each value of test/acc written
    summary              the final values of SUMMARY_KEYS
    segments             {"id", "epochs", "end", "killed"} per process that wrote to the run
    ended                how the last segment ended: "completed", "failed", "interrupted", or None (killed)
and what the report shows of each tool: dataset, classes, confusion, per_class_acc, mistakes,
histograms, system_samples, console_lines, plain_text, record_format, status and the *_kind notes.
"""

import numpy as np

EPOCH_KEYS = ("epoch", "train/loss", "train/acc", "val/loss", "val/acc", "lr", "epoch_time_s", "throughput_img_s")
SUMMARY_KEYS = ("test/loss", "test/acc", "best/val_acc", "best/epoch")
SEARCH_PARAMS = ("lr", "weight_decay", "label_smoothing", "warmup_epochs")  # search.PARAMS, as recorded


def new_trial(params):
    return {"params": params, "val_acc": [], "state": None, "duration_s": None, "segments": 0}


def first_bytes(path, n=16):
    with open(path, "rb") as f:
        return f.read(n)


def plain_text(paths):
    """Whether every file of a record is UTF-8 text."""
    try:
        for path in paths:
            with open(path, encoding="utf-8") as f:
                f.read()
        return True
    except UnicodeDecodeError:
        return False


def confusion_from(classes, rows):
    matrix = np.zeros((len(classes), len(classes)), dtype=int)
    for actual, predicted, count in rows:
        matrix[classes.index(actual), classes.index(predicted)] = count
    return matrix


def dataset_sizes(info):
    """The split sizes and a description of the data (no local path: the record may have moved)."""
    source = info.get("source", "")
    if "checksums not verified" in source:
        source = (
            "a CIFAR-10-format copy whose checksums differ from the official files, loaded with "
            "--skip-checksum; its content hash is the dataset version"
        )
    return {
        "train_images": info.get("train_size"),
        "val_images": info.get("val_size"),
        "test_images": info.get("test_size"),
        "data_source": source,
    }


def copy_tree(src, dst, skip=()):
    """A record's folder without model files (.pt: referenced by the record, read by no reader), links,
    and files whose names end in `skip`."""
    import os
    import shutil

    def ignore(folder, names):
        return [n for n in names if n.endswith((".pt", ".pt.tmp", *skip)) or os.path.islink(os.path.join(folder, n))]

    shutil.copytree(src, dst, ignore=ignore, dirs_exist_ok=True)
