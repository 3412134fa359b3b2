"""The registry is the one list of tools: each tool's modules are found by its key, an adapter that
leaves out a method of the interface or a tool without a record reader fails saying so, imports
point one way (no cycle, no tool module importing another tool's), and the exporter needs no torch."""

import ast
import glob
import os
import subprocess
import sys

import pytest
from conftest import EACH_TOOL, ROOT, SCRIPTS, TOOLS

import trackers
from trackers import base


def test_the_scripts_are_the_registrys():
    assert SCRIPTS == [tool.script for tool in trackers.TOOLS]
    assert all(os.path.isfile(os.path.join(ROOT, script)) for script in SCRIPTS)
    listed = subprocess.run([sys.executable, "-m", "trackers"], cwd=ROOT, capture_output=True, text=True, check=True)
    assert [line.split() for line in listed.stdout.splitlines()] == [[t.key, t.script] for t in TOOLS]  # make's list


@EACH_TOOL
def test_each_tool_provides_its_adapter_reader_and_probe(tool):
    assert issubclass(tool.tracker, base.Tracker) and tool.tracker.name == tool.name
    for name in ("read_run", "read_search", "referenced", "record_files", "values_logged", "copy_record"):
        assert callable(getattr(tool.reader, name)), name
    assert tool.reader.RECORD_PATHS and tool.reader.FOOTPRINT
    assert trackers.get(tool.key) is trackers.get(tool.script) is trackers.get(tool.name) is tool


def test_an_adapter_without_a_method_of_the_interface_fails_naming_it(monkeypatch):
    class Partial(base.Tracker):
        name, project_help = "partial", "partial's project"

        def start(self, config, model):
            pass

    with pytest.raises(TypeError, match="log_metrics"):
        Partial(None, "run")
    tool = trackers.Tool("partial", "Partial", "partial.py", "partial")
    monkeypatch.setattr(trackers.Tool, "_module", lambda self, part, what: type("M", (), {"Tracker": Partial}))
    with pytest.raises(TypeError, match=r"Partial's tracker does not implement .*log_metrics"):
        tool.tracker  # noqa: B018


def test_a_tool_without_a_record_reader_fails_saying_so():
    tool = trackers.Tool("nosuchtool", "No-such-tool", "nosuchtool.py", "nosuchtool")
    with pytest.raises(LookupError, match=r"No-such-tool has no record reader: trackers/nosuchtool_record.py"):
        tool.reader  # noqa: B018
    with pytest.raises(LookupError, match="no tracker 'nosuchtool'"):
        trackers.get("nosuchtool")


def repository_imports():
    """Each of the repository's modules (not the tests) and the repository modules it imports,
    at its top or inside a function."""
    paths = [p for pattern in ("*.py", "trackers/*.py", "report/*.py", "benchmarks/*.py") for p in glob.glob(pattern)]
    names = {os.path.relpath(p, ROOT)[:-3].replace("/", ".").removesuffix(".__init__"): p for p in paths}
    names |= {n.rpartition(".")[2]: p for n, p in names.items() if n.startswith(("report.", "benchmarks."))}
    graph = {}
    for name, path in names.items():
        if "." in name and name.startswith(("report.", "benchmarks.")):
            continue
        with open(path) as f:
            tree = ast.parse(f.read())
        found = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                found |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
        graph[name] = {n for n in found if n in names and n != name}
    return graph


def test_no_import_cycle_and_no_tool_module_imports_another_tools(monkeypatch):
    monkeypatch.chdir(ROOT)
    graph = repository_imports()
    assert "lifecycle" in graph and "trackers.wandb_tracker" in graph["trackers.wandb_probe"]

    def reach(start):
        seen, todo = set(), [start]
        while todo:
            for n in graph.get(todo.pop(), ()):
                if n not in seen:
                    seen.add(n)
                    todo.append(n)
        return seen

    cycles = sorted(name for name in graph if name in reach(name))
    assert cycles == [], cycles
    for tool in TOOLS:
        for name, imported in graph.items():
            if name.startswith(f"trackers.{tool.key}_"):
                others = [n for n in imported for t in TOOLS if t != tool and n.startswith(f"trackers.{t.key}_")]
                assert others == [], (name, others)


def test_the_exporter_needs_neither_torch_nor_the_engine():
    check = (
        "import runpy, sys\n"
        "sys.argv = ['neptune_export.py', '--help']\n"
        "try:\n    runpy.run_path('neptune_export.py', run_name='__main__')\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('torch', 'alexnet', 'lifecycle', 'cli') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", check], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "--to" in result.stdout and result.stdout.strip().splitlines()[-1] == "[]"
