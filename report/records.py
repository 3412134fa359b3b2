"""Each tool's record of the report's runs, read by its own record reader (trackers/<key>_record.py,
listed in the registry) from the folder of each tool's run: <root>/<key>/, as `make run` writes them,
and of its search from <root>/search/<key>/ where there is one (`make run` makes none)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import trackers  # noqa: E402
from trackers.reading import SUMMARY_KEYS  # noqa: E402, F401  (the report's summary rows)


def read_all(root):
    """Each tool's record of the job (and of its search), by the tool's name."""
    found = {tool.name: tool.reader.read_run(os.path.join(root, tool.key)) for tool in trackers.TOOLS}
    for name, search in read_searches(os.path.join(root, "search")).items():
        found[name]["search"] = search
    return found


def read_searches(root):
    """Each tool's record of its search, from root/<key> (where there is one)."""
    return {
        tool.name: tool.reader.read_search(os.path.join(root, tool.key))
        for tool in trackers.TOOLS
        if os.path.isdir(os.path.join(root, tool.key))
    }
