"""Start the repository's scripts from a process that has already imported torch and the trackers.

A fresh `python script.py` spends three to four CPU seconds importing torch (and torch._dynamo,
which the first optimizer imports) before it does anything, and most tests start a script.
Here one server process per test worker imports them once and forks each script from there: the
script runs as `python script.py` would (its own pid, process group if asked, file descriptors,
working folder, environment, argv, default signal handlers, interpreter exit with its atexit
hooks), a kill -9 kills it, and its exit status comes back as Popen's.

    python tests/warm.py FD     the server (started by `Popen` below, never by hand)

`Popen` and `run` take the subset of subprocess's arguments the tests use. Only
`[sys.executable, "path/to/script.py", ...]` with OMP_NUM_THREADS=1 in its environment (what torch
was imported with here) is forked; anything else (torchrun, `python -c`, other programs), a launch
with `fresh=True` (a test of what the imports themselves leave in the home folder) and every
launch under WARM=0 (`WARM=0 make test`) starts a fresh process through subprocess itself.
Fresh interpreters still run each script in the suite: the torchrun launches (test_ddp.py,
test_cluster.py), the terminal prompts (conftest.answer_prompt) and the offline_run fixtures.
"""

import atexit
import gc
import io
import json
import os
import resource
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# What the scripts import: torch, torch._dynamo (the first optimizer imports it), the schema
# validators Neptune's client spends most of its import on, this repository's modules, and the
# trackers' clients with what they import as they open a run or log a figure. Imported here with a
# home and a config folder of the server's own (mlflow writes its telemetry id under
# XDG_CONFIG_HOME, matplotlib its font cache under MPLCONFIGDIR); a fork makes its own copies of
# what wandb's import made for itself (fresh_temporary_folders). Where this is not the same as a
# fresh import: a forked MLflow script keeps the server's telemetry id instead of writing one under
# --out-dir, and matplotlib keeps the server's cache (the home-folder tests launch fresh); what
# MLflow decides about telemetry at import (MLFLOW_DISABLE_TELEMETRY, its session id) and the
# timeouts Neptune reads at import (NEPTUNE_RETRIES_TIMEOUT, NEPTUNE_REQUEST_TIMEOUT) are the
# server's, so a test that sets one of those must launch fresh (none does).
PRELOADED = [
    "numpy",
    "torch",
    "torch._dynamo",
    "jsonschema",
    "bravado_core.model",
    "alexnet",
    "data",
    "durable",
    "cli",
    "lifecycle",
    "trackers.wandb_tracker",
    "trackers.neptune_tracker",
    "trackers.mlflow_tracker",
    "wandb",
    "wandb.sdk.launch",
    "neptune",
    "mlflow",
    "mlflow.store.tracking.sqlalchemy_store",
    "matplotlib.pyplot",
]


def fresh_temporary_folders():
    """wandb's import made temporary folders (media, artifact staging) whose cleanup at exit every
    fork inherits: this process makes its own, as a fresh import would, and leaves the server's alone."""
    tempfile.tempdir = None  # found again from this process's environment (TMPDIR)
    from wandb.sdk.artifacts.artifact import Artifact
    from wandb.sdk.data_types import _private

    for folder, suffix in ((_private.MEDIA_TMP, "wandb-media"), (Artifact._TMP_DIR, "wandb-artifacts")):
        folder._finalizer.detach()
        folder.__init__(suffix)


def serve(fd):
    sock = socket.socket(fileno=fd)
    path = sys.path[:]
    sys.path.insert(0, ROOT)
    for name in PRELOADED:
        __import__(name)
    sys.path[:] = path
    # A fork keeps only the thread that forks: no thread may hold state a script needs. pyarrow's
    # allocator (jemalloc, imported with pandas) runs a purging thread of its own; jemalloc takes
    # its locks around a fork and the child starts without it.
    threads = [open(f"/proc/self/task/{t}/comm").read().strip() for t in os.listdir("/proc/self/task")]
    assert len(threads) - threads.count("jemalloc_bg_thd") == 1, f"a fork would lose these threads: {threads}"
    assert os.listdir(os.environ["HOME"]) == [], "importing wrote under HOME"
    # Out of the collector's sight: without it each fork's garbage collections, and its interpreter
    # exit, walk the server's millions of objects and copy every page they touch (a forked run's
    # exit alone took 2.2 CPU seconds instead of 0.4).
    gc.freeze()
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # each reaper (below) exits alone
    while True:
        message, fds, _, _ = socket.recv_fds(sock, 1 << 20, 4)
        if not message:
            return  # the test worker closed its end
        if os.fork() == 0:
            sock.close()
            reap(json.loads(message), fds)
        for f in fds:
            os.close(f)


def reap(request, fds):
    """In a fork of the server: fork the script, tell its pid, wait for it, tell its wait status."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    *stdio, status = fds
    pid = os.fork()
    if pid == 0:
        os.close(status)
        become(request, stdio)
    for f in stdio:
        os.close(f)
    os.write(status, f"{pid}\n".encode())
    _, code = os.waitpid(pid, 0)
    os.write(status, f"{code}\n".encode())
    os._exit(0)


def become(request, stdio):
    """Turn this fork into `python SCRIPT ARGS...`; it ends as that interpreter would."""
    import random
    import runpy

    import numpy

    if request["new_session"]:
        os.setsid()
    for target, f in enumerate(stdio):
        os.dup2(f, target)
    for f in stdio:
        if f > 2:
            os.close(f)
    if request["fsize"] is not None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (request["fsize"], request["fsize"]))
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    import trackers.base

    trackers.base.USER_ENVIRONMENT = dict(os.environ)  # the environment it starts with, as a fresh import reads it
    fresh_temporary_folders()
    random.seed()  # from the OS's entropy, as a new interpreter's: not the server's state, shared by every fork
    numpy.random.seed()
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    script = os.path.abspath(request["argv"][0])
    sys.argv = request["argv"]
    sys.path[0] = os.path.dirname(script)
    runpy.run_path(script, run_name="__main__")
    sys.exit(0)


class Server:
    """This test worker's server: started on first use, ended with the worker."""

    sock = None
    proc = None

    @classmethod
    def send(cls, request, fds):
        if cls.proc is None or cls.proc.poll() is not None:
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            # the scripts' environment without a tracker's variables, and an empty home of its own
            env = {k: v for k, v in request["env"].items() if not k.startswith(("WANDB_", "NEPTUNE_", "MLFLOW_"))}
            env["HOME"] = tempfile.mkdtemp(prefix="warm-home-")
            atexit.register(shutil.rmtree, env["HOME"], True)
            config = tempfile.mkdtemp(prefix="warm-config-")
            atexit.register(shutil.rmtree, config, True)
            env.update(XDG_CONFIG_HOME=config, MPLCONFIGDIR=os.path.join(config, "matplotlib"))
            cls.proc = subprocess.Popen(
                [sys.executable, os.path.abspath(__file__), str(theirs.fileno())],
                pass_fds=[theirs.fileno()],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
            )
            theirs.close()
            cls.sock = ours
        socket.send_fds(cls.sock, [json.dumps(request).encode()], fds)


def forkable(args, env):
    return (
        os.environ.get("WARM", "1") != "0"
        and env is not None
        and env.get("OMP_NUM_THREADS") == "1"
        and len(args) >= 2
        and args[0] == sys.executable
        and str(args[1]).endswith(".py")
    )


def Popen(args, *, env=None, fsize=None, fresh=False, **kwargs):
    """A forked script (`Forked`) where it can be forked, else subprocess.Popen; `fsize` is the file
    size limit (RLIMIT_FSIZE) of the process; `fresh` starts a new interpreter whatever the script
    (for a test of what the imports themselves leave behind: a forked script's were made here)."""
    args = [str(a) for a in args]
    if not fresh and forkable(args, env):
        return Forked(args, env=env, fsize=fsize, **kwargs)

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    return subprocess.Popen(args, env=env, preexec_fn=None if fsize is None else limit, **kwargs)


class Forked:
    """subprocess.Popen's interface to a forked script: pid, stdout/stderr, poll, wait, communicate, signals."""

    def __init__(
        self,
        args,
        *,
        cwd=None,
        env=None,
        stdin=None,
        stdout=None,
        stderr=None,
        text=False,
        start_new_session=False,
        fsize=None,
    ):
        self.args, self.returncode = args, None
        ends, mine = [], []
        for i, how in enumerate((stdin, stdout, stderr)):
            if how == subprocess.PIPE:
                r, w = os.pipe()
                ends.append(r if i == 0 else w)
                mine.append(w if i == 0 else r)
            elif how in (None, subprocess.DEVNULL):
                ends.append(os.open(os.devnull, os.O_RDWR) if how == subprocess.DEVNULL or i == 0 else os.dup(i))
                mine.append(None)
            elif how == subprocess.STDOUT:
                ends.append(os.dup(ends[1]))
                mine.append(None)
            else:
                ends.append(os.dup(how if isinstance(how, int) else how.fileno()))
                mine.append(None)
        status_r, status_w = os.pipe()
        request = dict(
            argv=args[1:],
            cwd=str(cwd or os.getcwd()),
            env=env,
            new_session=start_new_session,
            fsize=fsize,
        )
        Server.send(request, [*ends, status_w])
        for f in (*ends, status_w):
            os.close(f)
        self._status = os.fdopen(status_r, "rb", buffering=0)
        self._said = b""
        line = self._read_line(60)
        assert line is not None, "the warm server did not start the script"
        self.pid = int(line)

        def wrap(f, mode):
            if f is None:
                return None
            raw = os.fdopen(f, mode + "b", buffering=0 if mode == "w" else -1)
            return io.TextIOWrapper(raw, encoding="utf-8", write_through=True) if text else raw

        self.stdin, self.stdout, self.stderr = wrap(mine[0], "w"), wrap(mine[1], "r"), wrap(mine[2], "r")
        self._readers, self._got = None, {}  # communicate's, kept for a second call after a timeout

    def _read_line(self, timeout):
        deadline = None if timeout is None else time.monotonic() + timeout
        while b"\n" not in self._said:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not select.select([self._status], [], [], left)[0]:
                return None
            chunk = self._status.read(64)
            if not chunk:
                raise RuntimeError("the warm server's reaper ended without a status")
            self._said += chunk
        line, self._said = self._said.split(b"\n", 1)
        return line.decode()

    def poll(self):
        return self.wait(timeout=0, raising=False)

    def wait(self, timeout=None, raising=True):
        if self.returncode is None:
            line = self._read_line(timeout)
            if line is None:
                if raising:
                    raise subprocess.TimeoutExpired(self.args, timeout)
                return None
            self.returncode = os.waitstatus_to_exitcode(int(line))
            self._status.close()
        return self.returncode

    def send_signal(self, signum):
        if self.poll() is None:
            os.kill(self.pid, signum)

    def kill(self):
        self.send_signal(signal.SIGKILL)

    def terminate(self):
        self.send_signal(signal.SIGTERM)

    def communicate(self, timeout=None):
        def drain(name, f):
            self._got[name] = f.read()
            f.close()

        if self._readers is None:
            self._readers = [
                threading.Thread(target=drain, args=(name, f), daemon=True)
                for name, f in (("out", self.stdout), ("err", self.stderr))
                if f is not None and not f.closed
            ]
            if self.stdin is not None and not self.stdin.closed:
                self.stdin.close()
            for t in self._readers:
                t.start()
        deadline = None if timeout is None else time.monotonic() + timeout
        for t in self._readers:
            t.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
            if t.is_alive():
                raise subprocess.TimeoutExpired(self.args, timeout)
        self.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return self._got.get("out"), self._got.get("err")


def run(args, *, timeout=None, capture_output=False, stdout=None, stderr=None, **kwargs):
    """subprocess.run for a forked script (a fresh process where it cannot be forked)."""
    if capture_output:
        stdout = stderr = subprocess.PIPE
    proc = Popen(args, stdout=stdout, stderr=stderr, **kwargs)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    return subprocess.CompletedProcess(args, proc.returncode, out, err)


if __name__ == "__main__":
    serve(int(sys.argv[1]))
