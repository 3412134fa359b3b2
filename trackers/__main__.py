"""`python -m trackers`: each tool's key and script, one tool a line (the Makefile's list of tools)."""

from trackers import TOOLS

for tool in TOOLS:
    print(tool.key, tool.script)
