"""A search as the tools that keep tables and values record it: a trial's outcome as values, the
finished study's trials as one table, its best trial as values (the adapters' log_trial, log_study)."""

import json


def trial_values(outcome):
    """A trial's outcome (search.JournalTrial.outcome) as trial/* values, its parameters left to the config."""
    return {f"trial/{key}": value for key, value in outcome.items() if key not in ("params", "intermediate_values")}


def trials_table(study):
    """(columns, rows): each trial's number, state, value, duration, parameters and validation accuracy
    by epoch, in the trials' order."""
    trials = sorted(study.get_trials(), key=lambda t: t.number)
    params = sorted({key for t in trials for key in t.params})
    rows = [
        [
            t.number,
            t.state.name.lower(),
            t.value,
            t.duration.total_seconds() if t.duration else None,
            *[t.params.get(key) for key in params],
            json.dumps(t.intermediate_values),
        ]
        for t in trials
    ]
    return ["trial", "state", "val_acc", "duration_s", *params, "val_acc_by_epoch"], rows


def best_values(study):
    """The best trial: its number, its value and its parameters, as best/* values."""
    best = study.best_trial
    return {"best/trial": best.number, "best/val_acc": best.value, **{f"best/{k}": v for k, v in best.params.items()}}
