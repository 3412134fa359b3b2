"""Finding the run to continue, checking that it can be continued as asked, and the command that
continues a run.

A run folder (`--out-dir/<time>-<hex>`) holds its resume state (alexnet.Engine.RESUME_FILE) while the
run is unfinished; a finished run holds history.json instead. --resume takes the newest unfinished
run in --out-dir, or a run folder anywhere.
"""

import os
import shlex
import sys

import alexnet
from trackers.base import UsageError

# Flags that change what is trained: a resumed run must be given the values it started with.
MUST_MATCH = [
    *alexnet.RECIPES["default"],
    "dataset",
    "train_size",
    "skip_checksum",
    "log_every",
    "dataset_version",
]
# How and where a run is trained, not what: a resumed run takes these from its command line.
NOT_RESTORED = {"resume", "moved_from", "out_dir", "device", "compile", "search"}
IDENTITY = {"project", "name", "tags", "notes", "entity", "registered_model"}  # what the tracker's run is known by


class Finished(Exception):
    """--resume named a run that has finished: there is nothing to continue."""


def find_state(out_dir, which):
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


def fall_back(path, unreadable):
    """Put the state saved before the one at `path` in its place, keeping the one that cannot be read
    (`unreadable`, its CheckpointError) beside it as `path`.unreadable; the previous state. Where there
    is no previous state, or it cannot be read either, its CheckpointError is raised."""
    previous = os.path.join(os.path.dirname(path), alexnet.Engine.PREVIOUS_FILE)
    if not os.path.isfile(previous):
        raise unreadable
    state = alexnet.load_state(previous)
    os.replace(path, path + ".unreadable")
    os.link(previous, path)
    return state


def restore_flags(args, saved, given):
    """A resumed run's own flags, from its resume state, where the command line does not give them.
    One given again with another value: refused if it names the tracker's run (IDENTITY), refused
    later by check_resumable if it changes the training (MUST_MATCH), else applied; the lines that
    say what was applied."""
    applied = []
    for key, value in saved["config"].items():
        if not hasattr(args, key) or key in NOT_RESTORED:
            continue
        if key not in given:
            setattr(args, key, value)
        elif getattr(args, key) != value and key in IDENTITY:
            raise UsageError(
                f"--resume: {_flag(key, getattr(args, key))} differs from the run's {_flag(key, value)}: "
                "a run keeps the name it was tracked under; drop the flag"
            )
        elif getattr(args, key) != value and key not in MUST_MATCH:
            applied.append(f"--resume: {_flag(key, getattr(args, key))} applied (the run had {_flag(key, value)})")
    return applied


def _flag(key, value):
    words = value if isinstance(value, list) else [] if value is None else [value]
    return " ".join([f"--{key.replace('_', '-')}", *map(str, words)])


def check_resumable(cfg, saved):
    recipe = alexnet.RECIPES.get(saved["config"].get("recipe"), {})
    for key in MUST_MATCH:
        # a recipe key newer than the saved run (--hidden) had the recipe's value then
        if cfg.get(key) != saved["config"].get(key, recipe.get(key)):
            flag = "the data" if key == "dataset_version" else f"--{key.replace('_', '-')} {cfg.get(key)}"
            raise UsageError(
                f"--resume: {flag} differs from the run's {saved['config'].get(key)}; "
                "give the flags the run was started with"
            )


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


def continue_command(run_dir=None):
    """The command that continues this run (in `run_dir`) or search (None), as pasted from the current folder."""
    return command_line(drop=["--resume"], add=["--resume", *([os.path.relpath(run_dir)] if run_dir else [])])
