"""The trackers this project compares, in one list: whatever iterates over tools asks here.

A tool lives in its own modules, named by its key (docs/development.md, "Adding a tracker"):

    trackers/<key>_tracker.py  its adapter: `Tracker`, a `trackers.base.Tracker`
    trackers/<key>_record.py   its one record reader: the only code that knows the tool's local
                               record or reading API (see trackers/reading.py for what it provides)
    trackers/<key>_probe.py    `probe(work)`: what the installed client does, for the report's rubric;
                               optional `show(out_dir, evidence)`: the tool's own viewer on a run, captured
    trackers/<key>_target.py   optional: `Target`, a Neptune run written as this tool's run
                               (neptune_export.py --to <key>)

The modules are imported when first asked for: listing the tools imports no client, no torch.
"""

import importlib
import importlib.util
from dataclasses import dataclass


@dataclass(frozen=True)
class Tool:
    key: str  # its modules' prefix, its folder under `make run`'s runs/, its name in benchmark.json
    name: str  # as the scripts and the report say it
    script: str  # the entry point users run
    package: str  # the client's distribution on PyPI

    def _module(self, part, what):
        name = f"trackers.{self.key}_{part}"
        try:
            return importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name != name:  # the module is there; something it imports is not
                raise
            raise LookupError(f"{self.name} has no {what}: trackers/{self.key}_{part}.py is missing") from None

    @property
    def tracker(self):
        """The adapter's class; one that leaves out a method of the interface fails here, naming it."""
        cls = self._module("tracker", "tracker adapter").Tracker
        missing = sorted(getattr(cls, "__abstractmethods__", ()))
        if missing:
            raise TypeError(f"{self.name}'s tracker does not implement {', '.join(missing)}")
        return cls

    @property
    def reader(self):
        """The tool's record reader (a module: read_run, read_search, referenced, RECORD_PATHS)."""
        return self._module("record", "record reader")

    def probe(self, work):
        """What the installed client does, asked offline in the folder `work` (report/probes.py)."""
        return self._module("probe", "probe").probe(work)

    def show(self, out_dir, evidence):
        """The tool's own viewer on the run in `out_dir`, captured into the folder `evidence`: the
        file's name, or None for a tool without a local viewer."""
        module = self._module("probe", "probe")
        return module.show(out_dir, evidence) if hasattr(module, "show") else None

    @property
    def exports(self):
        """Whether neptune_export.py can write a Neptune run as this tool's run."""
        return importlib.util.find_spec(f"trackers.{self.key}_target") is not None

    @property
    def target(self):
        return self._module("target", "export target").Target


TOOLS = (
    Tool("wandb", "W&B", "wandb_setup_script.py", "wandb"),
    Tool("neptune", "Neptune", "neptune_integration.py", "neptune"),
    Tool("mlflow", "MLflow", "mlflow_tracking.py", "mlflow"),
    Tool("trackio", "Trackio", "trackio_tracking.py", "trackio"),
)


def get(key):
    """The tool of that key (or name, or script)."""
    for tool in TOOLS:
        if key in (tool.key, tool.name, tool.script):
            return tool
    raise LookupError(f"no tracker {key!r}; the registry has {', '.join(t.key for t in TOOLS)}")
