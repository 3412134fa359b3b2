"""What the installed clients do, asked now in offline mode: the facts the rubric takes from a probe.

Each tool's probe is its own (trackers/<key>_probe.py); this runs them all in one temporary folder
that is removed afterwards, with HOME and each client's folders pointed there.
"""

import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import trackers  # noqa: E402


def probe_all():
    """Every tool's probe, in a temporary folder that is removed afterwards; HOME points there too."""
    with tempfile.TemporaryDirectory(prefix="probes-") as work:
        saved = dict(os.environ)
        os.environ.update(HOME=work, XDG_CONFIG_HOME=work, MPLCONFIGDIR=os.path.join(work, ".mpl"))
        try:  # each probe points its client's own folders into `work` and leaves out its credentials
            return {tool.name: tool.probe(work) for tool in trackers.TOOLS}
        finally:
            os.environ.clear()
            os.environ.update(saved)


if __name__ == "__main__":
    import json

    print(json.dumps(probe_all(), indent=1))
