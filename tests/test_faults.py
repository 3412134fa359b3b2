"""A signal and a kill -9 at every phase of a run, each followed by --resume, for every script:
the tracker's record ends with each step and epoch exactly once (tests/faults.py injects them)."""
import os
import subprocess
import sys

import pytest

from conftest import ROOT, SCRIPTS, clean_env, run_script
from test_resume import CHAIN_ARGS, TOKENS, record

# Each link: (phase, signal) injected by tests/faults.py, then the exit code expected. Every phase
# gets a signal and a kill -9; a kill -9 comes after a resume state exists, so its segment is a
# resumed one. The run goes on with --resume after each link; the last link ends it.
CHAIN = [("start", "INT", 130), ("start", "KILL", -9), ("dataset", "INT", 130), ("dataset", "KILL", -9),
         ("step:6", "INT", 130), ("step:7", "KILL", -9), ("epoch:2", "INT", 130), ("epoch:3", "KILL", -9),
         ("test", "INT", 130), ("test", "KILL", -9), ("checkpoint", "INT", 130), ("checkpoint", "KILL", -9),
         ("finish", "KILL", -9), ("finish", "INT", 0)]


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_fault_at_every_phase_then_resume_records_each_epoch_once(script, tmp_path):
    """A signal and a kill -9 at each phase (tracker start, dataset, mid-epoch, after an epoch's
    metrics, test evaluation, checkpoint write, finish), each followed by --resume: the record
    holds every step and epoch exactly once and the test accuracy of an uninterrupted run."""
    plain = run_script(script, [*CHAIN_ARGS, "--out-dir", tmp_path / "plain"], tmp_path, **TOKENS)
    assert plain.returncode == 0, plain.stderr[-2000:]
    want = record(script, tmp_path / "plain")
    assert want[0] == [1, 2, 3] and want[1] == list(range(1, 13)) and want[2] == 1
    out = tmp_path / "D"
    for i, (phase, sig, code) in enumerate(CHAIN):
        argv = [*CHAIN_ARGS, "--out-dir", out, *(["--resume"] if i else [])]
        faulty = subprocess.run([sys.executable, os.path.join(ROOT, "tests", "faults.py"), phase, sig, script,
                                 *map(str, argv)], cwd=ROOT, env=clean_env(tmp_path, **TOKENS), capture_output=True,
                                text=True, timeout=300, stdin=subprocess.DEVNULL)
        assert faulty.returncode == code, (phase, sig, faulty.stdout[-1500:], faulty.stderr[-3000:])
        assert "Traceback" not in faulty.stderr, (phase, sig, faulty.stderr[-3000:])
    again = run_script(script, [*CHAIN_ARGS, "--out-dir", out, "--resume"], tmp_path, **TOKENS)
    assert again.returncode == 0 and "finished" in again.stdout, again.stdout + again.stderr[-2000:]
    epochs, steps, finals, test_acc = record(script, out)
    assert epochs == [1, 2, 3] and steps == list(range(1, 13)) and finals == 1, (epochs, steps, finals)
    assert test_acc == want[3]
