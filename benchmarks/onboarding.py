"""What a new user meets before a tool's first recorded run: its install alone, then its quickstart.

    python benchmarks/onboarding.py --json report/evidence/onboarding.json

Per tool of the registry, in a fresh folder that is also HOME (no config, no cache, no login):
a new `python3 -m venv`, then `pip install --no-cache-dir` of the tool's pinned requirements from
requirements.txt (its client, and what that pin needs beside it): the install's wall seconds, the
venv's size on disk after it, and how many distributions pip put in (an upgrade of the venv's own
setuptools counts). Then the tool's quickstart, offline (SNIPPETS), in that venv: its wall seconds,
import included, and whether the tool's local record (its reader's RECORD_PATHS) holds files after.
Where the client has a server (SERVERS: MLflow's, Trackio's dashboard), it is started on that
record: its seconds until it shows the run over HTTP. The install downloads from the package index pip is configured with: its seconds depend on the
link as much as on the tool. A tool that fails says so in one line and the others go on; the exit status is 1 then.
"""

import argparse
import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import alexnet  # noqa: E402  (cpu_name)
import durable  # noqa: E402
import trackers  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REQUIREMENTS = os.path.join(ROOT, "requirements.txt")
INSTALL_TIMEOUT_S = 1800
RUN_TIMEOUT_S = 300

# Pins a client needs beside its own, with requirements.txt's reason.
COMPANIONS = {
    "neptune": ("setuptools",),  # the `neptune` command (neptune sync) imports pkg_resources
    "trackio": ("pillow",),  # trackio 0.43 asks for pillow below 13
}

# The commands to a first recorded run: each tool's quickstart calls, offline, as a user types them.
SNIPPETS = {
    "wandb": """\
import wandb

run = wandb.init(mode="offline", project="onboarding", config={"lr": 0.01})
for step in range(3):
    run.log({"loss": 1.0 / (step + 1)})
run.finish()
""",
    "neptune": """\
import neptune

run = neptune.init_run(mode="offline")
run["parameters"] = {"lr": 0.01}
for step in range(3):
    run["loss"].append(1.0 / (step + 1))
run.stop()
""",
    "mlflow": """\
import mlflow

mlflow.set_tracking_uri("sqlite:///mlflow.db")
with mlflow.start_run():
    mlflow.log_param("lr", 0.01)
    for step in range(3):
        mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
""",
    "trackio": """\
import trackio

trackio.init(project="onboarding", config={"lr": 0.01})
for step in range(3):
    trackio.log({"loss": 1.0 / (step + 1)})
trackio.finish()
""",
}

# What this machine needs that a user with a network would not type: Trackio's folder where its
# reader looks (its default is under HOME, the temp folder anyway), and no call to the Hugging Face Hub.
RUN_ENV = {"trackio": {"TRACKIO_DIR": "trackio", "HF_HUB_OFFLINE": "1"}}

# The tool's own server on the first run's record, where its client has one: the command (PORT is a
# free port), more environment, and the HTTP call that shows the run (method, path, JSON body): it is
# polled until it answers with the run. W&B's server is a container image, Neptune's needs its
# support: neither comes with the client.
SERVERS = {
    "mlflow": (
        ["mlflow", "server", "--backend-store-uri", "sqlite:///mlflow.db", "--host", "127.0.0.1", "--port", "PORT"],
        {},
        ("POST", "/api/2.0/mlflow/runs/search", {"experiment_ids": ["0"]}),
    ),
    "trackio": (
        ["trackio", "show", "--project", "onboarding"],
        {"GRADIO_SERVER_PORT": "PORT", "BROWSER": "true", "NO_PROXY": "127.0.0.1,localhost"},
        ("POST", "/api/get_runs_for_project", {"project": "onboarding"}),
    ),
}
SERVER_TIMEOUT_S = 120


class _Failed(Exception):
    """A step of a tool's onboarding failed: its message is the one line the entry keeps."""


def _name(requirement):
    return re.split(r"[\[=<>!~;\s]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def pinned(tool):
    """The tool's lines of requirements.txt: its client, then its COMPANIONS."""
    wanted = (tool.package, *COMPANIONS.get(tool.key, ()))
    with open(REQUIREMENTS) as f:
        lines = [line.split("#", 1)[0].strip() for line in f]
    found = {_name(line): line for line in lines if line}
    missing = [name for name in wanted if name not in found]
    if missing:
        raise _Failed(f"requirements.txt pins no {', '.join(missing)}")
    return [found[name] for name in wanted]


def _run(argv, cwd, env, timeout, what):
    """Run argv; its wall seconds, or _Failed with the last line it wrote to stderr."""
    t0 = time.perf_counter()
    try:
        done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise _Failed(f"{what} took over {timeout} s") from None
    seconds = time.perf_counter() - t0
    if done.returncode:
        last = next((line for line in reversed(done.stderr.splitlines()) if line.strip()), "no message")
        raise _Failed(f"{what} exited with {done.returncode}: {last.strip()}")
    return seconds


def _distributions(python, env):
    out = subprocess.run(
        [python, "-m", "pip", "list", "--format=json"], env=env, capture_output=True, text=True, check=True
    ).stdout
    return {(d["name"].lower(), d["version"]) for d in json.loads(out)}


def _bytes_on_disk(folder):
    """What `du` counts: allocated blocks, each hard-linked file once."""
    seen, total = set(), 0
    for parent, _, names in os.walk(folder):
        for name in names:
            st = os.lstat(os.path.join(parent, name))
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_blocks * 512
    return total


def _record_files(tool, home):
    """The files under the tool's local record in `home` (its reader's RECORD_PATHS)."""
    files = []
    for name in tool.reader.RECORD_PATHS:
        path = os.path.join(home, name)
        if os.path.isfile(path):
            files.append(path)
        for parent, _, names in os.walk(path):
            files += [os.path.join(parent, n) for n in names]
    return [f for f in files if os.path.getsize(f) > 0]


def _user_env(home):
    """A new user's shell: this one's PATH, locale, network and pip settings; HOME is `home`, and no
    tool's or Python's variables carried in."""
    keep = re.compile(r"^(PATH|LANG|LC_\w+|TERM|TMPDIR|PIP_\w+|SSL_CERT_\w+|\w+_CA_BUNDLE|(?i:\w+_proxy))$")
    return {**{k: v for k, v in os.environ.items() if keep.match(k)}, "HOME": home}


def onboard(tool, folder):
    """Install `tool` alone in a new venv under `folder`, then run its quickstart there: its entry."""
    home, venv = os.path.join(folder, "home"), os.path.join(folder, "venv")
    os.makedirs(home)
    env = _user_env(home)
    python = os.path.join(venv, "bin", "python")
    snippet = SNIPPETS[tool.key]
    entry = {
        "snippet": snippet,
        "snippet_lines": sum(1 for line in snippet.splitlines() if line.strip()),
        "commands": 2,  # pip install, then python on the snippet
        "recorded": False,
    }
    try:
        requirements = pinned(tool)
        entry["requirements"] = requirements
        _run(["python3", "-m", "venv", venv], home, env, 300, "python3 -m venv")
        baseline = _distributions(python, env)
        entry["install_s"] = round(
            _run(
                [python, "-m", "pip", "install", "--no-cache-dir", *requirements],
                home,
                env,
                INSTALL_TIMEOUT_S,
                "pip install",
            ),
            2,
        )
        entry["venv_bytes"] = _bytes_on_disk(venv)
        entry["packages"] = len(_distributions(python, env) - baseline)
        script = os.path.join(home, "first_run.py")
        with open(script, "w") as f:
            f.write(snippet)
        run_env = {**env, **RUN_ENV.get(tool.key, {})}
        if tool.key in RUN_ENV:
            entry["env"] = RUN_ENV[tool.key]
        entry["first_run_s"] = round(_run([python, script], home, run_env, RUN_TIMEOUT_S, "the first run"), 2)
        entry["recorded"] = bool(_record_files(tool, home))
        if not entry["recorded"]:
            raise _Failed(f"the first run left no file under {', '.join(tool.reader.RECORD_PATHS)}")
        if tool.key in SERVERS:
            seconds, entry["server"] = serve(tool, venv, home, run_env)
            entry["server_s"] = round(seconds, 2)
    except _Failed as e:
        entry["error"] = str(e)
    return entry


def _free_port():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _shows_the_run(port, method, path, body):
    """Whether the server answers the call with something (a run), not an error or an empty list."""
    import urllib.request

    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=json.dumps(body).encode(),
        method=method,
        headers={"Content-Type": "application/json"},
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=5) as response:
            answer = json.loads(response.read() or b"null")
    except (OSError, ValueError):
        return False
    return bool(answer.get("runs") if isinstance(answer, dict) else answer)


def serve(tool, venv, home, env):
    """The tool's server started on the first run's record: seconds until it shows the run, and its command."""
    command, more, (method, path, body) = SERVERS[tool.key]
    port = str(_free_port())
    argv = [os.path.join(venv, "bin", command[0]), *(port if w == "PORT" else w for w in command[1:])]
    server_env = {**env, **{k: port if v == "PORT" else v for k, v in more.items()}}
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        argv, cwd=home, env=server_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        while not _shows_the_run(port, method, path, body):
            if proc.poll() is not None:
                raise _Failed(f"{command[0]} {command[1]} exited with {proc.returncode} before it showed the run")
            if time.perf_counter() - t0 > SERVER_TIMEOUT_S:
                raise _Failed(f"{command[0]} {command[1]} showed no run within {SERVER_TIMEOUT_S} s")
            time.sleep(0.1)
        return time.perf_counter() - t0, " ".join(command).replace("PORT", "…")
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(30)


def _python3_version():
    """The version of the `python3` the venvs are made with (not necessarily this script's)."""
    out = subprocess.run(["python3", "--version"], capture_output=True, text=True, check=True).stdout
    return out.split()[-1]


def _line(tool, entry):
    if "error" in entry:
        return f"{tool.name}: failed: {entry['error']}"
    return (
        f"{tool.name}: install {entry['install_s']:.1f} s, {entry['packages']} packages, "
        f"{entry['venv_bytes'] / 1e6:.0f} MB venv; first run {entry['first_run_s']:.1f} s "
        f"({entry['snippet_lines']} lines), recorded"
        + (f"; {entry['server']} showed it in {entry['server_s']:.1f} s" if "server_s" in entry else "")
    )


def main():
    keys = [tool.key for tool in trackers.TOOLS]
    p = argparse.ArgumentParser(description="Measure each tool's install alone and its first recorded run.")
    p.add_argument("--json", metavar="PATH", help="write every figure to this JSON file")
    p.add_argument("--tools", default=",".join(keys), help=f"comma-separated keys (default: {','.join(keys)})")
    a = p.parse_args()
    chosen = a.tools.split(",")
    unknown = [k for k in chosen if k not in keys]
    if unknown:
        p.exit(2, f"error: unknown tool {', '.join(unknown)} (known: {', '.join(keys)})\n")
    results = {
        "machine": f"{alexnet.cpu_name()}, {os.cpu_count()} cores",
        "python": _python3_version(),
        "date": datetime.date.today().isoformat(),
        "tools": {},
    }
    for tool in trackers.TOOLS:
        if tool.key not in chosen:
            continue
        folder = tempfile.mkdtemp(prefix=f"onboarding-{tool.key}-")
        try:
            entry = onboard(tool, folder)
        finally:
            shutil.rmtree(folder, ignore_errors=True)  # a venv is hundreds of MB
        results["tools"][tool.key] = entry
        print(_line(tool, entry), flush=True)
    if a.json:

        def write(tmp):
            with open(tmp, "w") as f:
                json.dump(results, f, indent=2)
                f.write("\n")

        durable.write_atomically(os.path.abspath(a.json), write)
    sys.exit(1 if any("error" in e for e in results["tools"].values()) else 0)


if __name__ == "__main__":
    main()
