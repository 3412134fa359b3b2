"""--search N: one Optuna search, recorded by each tool as it groups a search and read back with its
own reader; the same trials in every tool's record; continued after Ctrl-C or kill -9 with each trial once;
two processes sharing one search."""

import glob
import os
import signal
import subprocess
import sys

import optuna
import pytest
import warm
from conftest import EACH_TOOL, ROOT, SMALL_MODEL, TOOLS, clean_env, run_script

import search as search_module

# The four trials end in every way a trial can, on any CPU (tests/faults.py search-endings): trial 0
# completes, the pruner stops trials 1 and 2 after epoch 2, and trial 3's loss turns to NaN in epoch 2
# (a failed trial whose NaN epoch is recorded, as any run's; the search goes on). Left to the median
# rule, which trials stop hangs on validation accuracies that differ in their last bits between CPUs.
ENDINGS = ("search-endings", "none")
FLAGS = [
    "--mode",
    "offline",
    "--dataset",
    "synthetic",
    "--train-size",
    1024,
    "--epochs",
    3,
    "--batch-size",
    128,
    "--device",
    "cpu",
    "--search",
    4,
    "--seed",
    12,
    *SMALL_MODEL,
]
STATES = {0: "complete", 1: "pruned", 2: "pruned", 3: "failed"}


def search(tool, out, *extra):
    result = run_script(tool.script, [*FLAGS, "--out-dir", out, *extra], out, timeout=600, fault=ENDINGS)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


@pytest.fixture(scope="module")
def searches(tmp_path_factory):
    found = {}
    for tool in TOOLS:
        out = tmp_path_factory.mktemp(tool.key)
        found[tool.key] = (out, search(tool, out))
    return found


def read(tool, out):
    found = tool.reader.read_search(str(out))
    return found["trials"], found["studies"]


def journal(out):
    """Each trial as the search's own journal (Optuna's storage) holds it: how it ended, and the
    validation accuracy it reported to the pruner at each epoch."""
    [path] = glob.glob(os.path.join(out, "search-*", "journal.log"))
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(path))
    [name] = optuna.study.get_all_study_names(storage)
    ended = {
        optuna.trial.TrialState.COMPLETE: "complete",
        optuna.trial.TrialState.PRUNED: "pruned",
        optuna.trial.TrialState.FAIL: "failed",
    }
    trials = optuna.load_study(study_name=name, storage=storage).get_trials()
    return {t.number: (ended[t.state], [v for _, v in sorted(t.intermediate_values.items())]) for t in trials}


def best_line(stdout):
    return next(line for line in stdout.splitlines() if line.startswith("best trial"))


@EACH_TOOL
def test_each_tool_records_the_search_as_it_groups_one(searches, tool):
    out, stdout = searches[tool.key]
    trials, studies = read(tool, out)
    assert sorted(trials) == [0, 1, 2, 3]
    assert {n: t["state"] for n, t in trials.items()} == STATES
    assert [len(trials[n]["val_acc"]) for n in range(4)] == [3, 2, 2, 2]  # pruned after epoch 2; failed in it
    held = journal(out)
    assert {n: state for n, (state, _) in held.items()} == STATES
    for n, (state, values) in held.items():  # a failed trial's NaN epoch is recorded, never reported to the pruner
        assert len(trials[n]["val_acc"]) == len(values) + (state == "failed")
        assert trials[n]["val_acc"][: len(values)] == pytest.approx(values)
    [study] = studies
    assert study["best"] == 0 and best_line(stdout).startswith("best trial 0: val acc ")
    # grouped as the tool groups a search (W&B: a group; Neptune: the study's tag; MLflow: the parent
    # run), the study's record closed when the search ended
    assert {t["group"] for t in trials.values()} == {study["group"]} and study["closed"]
    if "trials" in study:  # a study record that holds each trial itself (neptune-optuna's)
        assert sorted(study["trials"]) == [0, 1, 2, 3]
        for n in range(3):
            assert study["trials"][n]["params"] == pytest.approx(trials[n]["params"])
            assert study["trials"][n]["val_acc"] == pytest.approx(trials[n]["val_acc"])
        assert [study["trials"][n]["state"] for n in range(4)] == [STATES[n] for n in range(4)]
    assert "train it to the end: " in stdout and "--lr " in stdout.split("train it to the end: ")[1]


def test_every_tool_records_the_same_search(searches):
    first, *others = (read(tool, searches[tool.key][0])[0] for tool in TOOLS)
    for trials in others:
        for n in range(4):
            assert trials[n]["params"] == first[n]["params"]  # as Optuna proposed them
            assert trials[n]["val_acc"] == pytest.approx(first[n]["val_acc"])
    assert len({best_line(stdout) for _, stdout in searches.values()}) == 1


def start(tool, out, *extra):
    return warm.Popen(
        [
            sys.executable,
            os.path.join(ROOT, "tests", "faults.py"),
            *ENDINGS,
            tool.script,
            *map(str, [*FLAGS, "--out-dir", out, *extra]),
        ],
        cwd=ROOT,
        env=clean_env(out),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def first_two_trials(tool, out):
    """What the record of trials 0 and 1 is made of (the files that hold each alone, byte for byte, and
    what the reader reads of them), to compare before and after a resumed search."""
    [name] = [os.path.basename(f) for f in glob.glob(os.path.join(out, "search-*")) if os.path.isdir(f)]
    per_trial = [tool.reader.record_files(str(out), f"{name}-trial-{n}") for n in (0, 1)]
    assert all(per_trial) or not any(per_trial)  # files of each run's own, or one store that all share
    files = {f: open(f, "rb").read() for f in sum(per_trial, [])}
    return files, {n: t for n, t in read(tool, out)[0].items() if n < 2}


# The first tool's search is stopped with Ctrl-C, every other's with kill -9.
STOPS = [(tool, signal.SIGKILL if i else signal.SIGINT) for i, tool in enumerate(TOOLS)]


@pytest.mark.parametrize("tool,signum", STOPS, ids=[f"{t.key}-{s.name}" for t, s in STOPS])
def test_a_stopped_search_continues_each_trial_once(searches, tool, signum, tmp_path):
    proc = start(tool, tmp_path)
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if line.startswith("epoch 1/3") and any(s.startswith("trial 2: lr") for s in seen):
            os.killpg(proc.pid, signum)
            break
    proc.communicate(timeout=120)
    assert proc.returncode == (130 if signum == signal.SIGINT else -9), "".join(seen)
    before = first_two_trials(tool, tmp_path)
    assert sorted(before[1]) == [0, 1]
    stdout = search(tool, tmp_path, "--resume")
    assert not [line for line in stdout.splitlines() if line.startswith(("trial 0:", "trial 1:"))]  # not trained again
    assert first_two_trials(tool, tmp_path) == before  # their records untouched
    trials, studies = read(tool, tmp_path)
    uninterrupted, _ = read(tool, searches[tool.key][0])
    assert sorted(trials) == [0, 1, 2, 3] and len(studies) == 1
    for n in range(4):  # each epoch once: the interrupted trial's record continues where it was
        assert trials[n]["val_acc"] == pytest.approx(uninterrupted[n]["val_acc"])
        assert trials[n]["state"] == STATES[n]
    assert journal(tmp_path) == journal(searches[tool.key][0])  # the same endings and values, as the same computation
    assert best_line(stdout) == best_line(searches[tool.key][1])


@pytest.mark.parametrize("tool", TOOLS[::2], ids=[t.key for t in TOOLS[::2]])  # every other: both cores, a while
def test_two_processes_share_one_search(searches, tool, tmp_path):
    procs = [start(tool, tmp_path) for _ in range(2)]
    outputs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n".join(out + err for out, err in outputs)
    started = [line.split(":")[0] for out, _ in outputs for line in out.splitlines() if ": lr " in line]
    assert sorted(started) == [f"trial {n}" for n in range(4)]  # none trained twice
    assert all(any(line.startswith("trial") for line in out.splitlines()) for out, _ in outputs)  # both worked
    trials, studies = read(tool, tmp_path)
    assert sorted(trials) == [0, 1, 2, 3] and all(t["segments"] == 1 for t in trials.values())
    assert len(studies) == 1  # the study recorded once, by the process that ended it
    assert sum(out.count("best trial") for out, _ in outputs) >= 1  # the process that ends the search says it
    assert sorted(glob.glob(f"{tmp_path}/search-*/study-*.json")) != []


def test_the_median_rule_prunes_a_trial_behind_the_finished_ones_from_epoch_2():
    """The search's own pruner, on reported values made here: a trial below the median of the finished
    trials' at an epoch stops there, from epoch 2 on, once one trial has finished."""

    def prunes(finished, reports):
        study = optuna.create_study(direction="maximize", pruner=search_module.pruner())
        for values in finished:
            done = study.ask()
            for epoch, value in enumerate(values, 1):
                done.report(value, epoch)
            study.tell(done, max(values))
        trial, verdicts = study.ask(), []
        for epoch, value in enumerate(reports, 1):
            trial.report(value, epoch)
            verdicts.append(trial.should_prune())
        return verdicts

    assert prunes([], [0.1, 0.1, 0.1]) == [False, False, False]  # nothing finished to compare with
    assert prunes([[0.5, 0.6, 0.7]], [0.1, 0.2, 0.3]) == [False, True, True]  # behind: pruned from epoch 2
    assert prunes([[0.5, 0.6, 0.7]], [0.1, 0.65, 0.8]) == [False, False, False]  # ahead at epoch 2 and after
    assert prunes([[0.5, 0.6, 0.7]], [0.9, 0.1, 0.1]) == [False, False, False]  # its best so far is what counts
    assert prunes([[0.5, 0.6, 0.7], [0.2, 0.3, 0.4]], [0.1, 0.45, 0.55]) == [False, False, False]  # at the median
    assert prunes([[0.5, 0.6, 0.7], [0.2, 0.3, 0.4]], [0.1, 0.44, 0.5]) == [False, True, True]  # below it


def test_search_flags_refused_in_one_line(tmp_path):
    for extra, says in (
        (["--resume"], "no search of these flags"),
        (["--resume", str(tmp_path)], "--search continues a stopped search"),
        (["--weight-decay", "0.01"], "--search chooses --weight-decay itself"),
    ):
        result = run_script("mlflow_tracking.py", [*FLAGS, "--out-dir", tmp_path, *extra], tmp_path)
        assert result.returncode == 2 and says in result.stderr and "Traceback" not in result.stderr, result.stderr
