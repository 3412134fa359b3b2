"""The README is a front page read in five minutes, and every link in it and in docs/ leads somewhere."""

import os
import re

from conftest import ROOT, SCRIPTS

DOCS = os.path.join(ROOT, "docs")
PAGES = sorted(f for f in os.listdir(DOCS) if f.endswith(".md"))
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def read(path):
    with open(path) as f:
        return f.read()


def anchors(text):
    """The anchors GitHub gives a page's headings: lower case, punctuation dropped, spaces as hyphens."""
    return {
        re.sub(r"[^\w\- ]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        for line in text.splitlines()
        if re.match(r"#{1,6} ", line)
    }


def test_the_readme_is_a_front_page():
    readme = read(os.path.join(ROOT, "README.md"))
    assert len(readme) <= 12000, len(readme)
    for command in (
        "make run ",
        "make test ",
        'make run ARGS="--epochs 2 --train-size 4000"',  # the quick look
        "make run DATA=/tmp/cifar10 ARGS=--skip-checksum",
    ):
        assert f"\n    {command}" in readme, command
    for script in (*SCRIPTS, "neptune_export.py"):
        assert f"python {script} --mode offline" in readme or f"python {script} runs/neptune" in readme, script
    assert "<!-- headline:" in readme  # the table tests/test_report.py keeps equal to the evidence
    assert "TEST_TIME" not in readme


def test_the_readme_links_every_docs_page():
    linked = set(LINK.findall(read(os.path.join(ROOT, "README.md"))))
    assert PAGES and {f"docs/{page}" for page in PAGES} <= linked


def test_every_relative_link_resolves():
    checked = 0
    for path in [os.path.join(ROOT, "README.md"), *(os.path.join(DOCS, p) for p in PAGES)]:
        for target in LINK.findall(read(path)):
            if re.match(r"[a-z]+:", target):
                continue
            file, _, anchor = target.partition("#")
            resolved = os.path.normpath(os.path.join(os.path.dirname(path), file)) if file else path
            assert os.path.exists(resolved), (path, target)
            if anchor:
                assert anchor in anchors(read(resolved)), (path, target)
            checked += 1
    assert checked > len(PAGES)
