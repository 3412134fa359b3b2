"""The rules every script's files follow: one process owns a folder (a lock that dies with it),
writes land whole, and a moved folder's paths are re-pointed on path boundaries only."""

import os
import signal
import subprocess
import sys

import pytest
from conftest import ROOT

import durable

HOLD = (
    "import durable, sys, time; lock = durable.FolderLock(sys.argv[1], 'the folder'); print('held', flush=True); "
    "time.sleep(60)"
)


def test_a_folder_lock_refuses_a_second_holder_and_dies_with_its_process(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline() == "held\n"
    with pytest.raises(durable.Busy, match=rf"the folder {tmp_path} is in use by pid {holder.pid} on host "):
        durable.FolderLock(str(tmp_path), "the folder")
    holder.send_signal(signal.SIGKILL)  # no cleanup: the kernel lets go, the file stays
    holder.wait()
    assert os.path.exists(tmp_path / ".lock")
    lock = durable.FolderLock(str(tmp_path), "the folder")
    assert (tmp_path / ".lock").read_text() == f"pid {os.getpid()} on host {os.uname().nodename}\n"
    lock.release()
    assert not os.path.exists(tmp_path / ".lock") and not os.path.exists(tmp_path)  # empty: removed


def test_an_atomic_write_keeps_the_previous_content(tmp_path):
    path, previous = str(tmp_path / "state"), str(tmp_path / "state.previous")

    def writer(text):
        def write(tmp):
            with open(tmp, "w") as f:
                f.write(text)

        return write

    durable.write_atomically(path, writer("one"), keep_previous=previous)
    assert open(path).read() == "one" and not os.path.exists(previous)
    durable.write_atomically(path, writer("two"), keep_previous=previous)
    assert open(path).read() == "two" and open(previous).read() == "one"
    assert sorted(os.listdir(tmp_path)) == ["state", "state.previous"]  # no temporary file left


@pytest.mark.parametrize(
    "text, want",
    [
        ("/data/run", "/new/place"),
        ("/data/run/x.pt", "/new/place/x.pt"),
        ("file:///data/run/x", "file:///new/place/x"),
        ('{"dir": "/data/run"}', '{"dir": "/new/place"}'),
        ("a /data/run b", "a /new/place b"),
        ("/data/run2/x", "/data/run2/x"),
        ("/old/data/run/x", "/old/data/run/x"),
        ("/data/run.bak", "/data/run.bak"),
    ],
)
def test_paths_are_re_pointed_on_path_boundaries_only(text, want):
    assert durable.repoint(text, "/data/run", "/new/place") == want
