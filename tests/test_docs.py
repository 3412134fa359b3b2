"""The README is a front page read in five minutes, and every link in it and in docs/ leads somewhere."""

import json
import os
import re
import sys

from conftest import ROOT, SCRIPTS

sys.path.insert(0, os.path.join(ROOT, "report"))

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
    assert "<!-- figures: decision " in readme and "<!-- figures: headline " in readme  # printed from the evidence
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


def test_every_figure_block_is_the_evidences():
    """Each block of figures in README.md and docs/ is what report/docs.py prints from report/evidence."""
    import docs

    e = docs.Evidence()
    seen = set()
    for path in docs.pages():
        text = read(path)
        for m in docs.BLOCK.finditer(text):
            assert m.group(2) in docs.BLOCKS, (path, m.group(2))
            assert m.group(3) == docs.BLOCKS[m.group(2)](e), f"{path}: block {m.group(2)} is stale: run `make docs`"
            seen.add(m.group(2))
    assert {"decision", "headline", "costs", "quick-look", "test-time"} <= seen


def test_a_new_measurement_changes_the_block(tmp_path):
    import docs

    with open(docs.MEASURED) as f:
        measured = json.load(f)
    before = docs.quick_look(None)
    measured["measurements"].append(
        {
            "what": "quick_look",
            "machine": "Some CPU",
            "cores": 2,
            "tools": 4,
            "test_acc": 0.5,
            "seconds": 61,
            "date": "2026-12-31",
            "commit": "abc1234",
            "how": "a test",
        }
    )
    (tmp_path / "measured.json").write_text(json.dumps(measured))
    docs.MEASURED, saved = str(tmp_path / "measured.json"), docs.MEASURED
    try:
        after = docs.quick_look(None)
    finally:
        docs.MEASURED = saved
    assert after != before and "50.00%, 1 min 01 s for 4 scripts" in after and "Some CPU" in after
    assert "to 50.00%" in after


# A measured figure: a number with a unit of time, size, share or rate. Outside a block, only the
# project's own settings and cited facts may be written as figures (each listed with why).
FIGURE = re.compile(r"(?<![\w.])\d[\d,.]*\s?(?:%|ms|µs|s|min|minutes|hours|h|MB|GB|kB|img/s)(?![\w])")
CONSTANTS = {
    "10%": "chance on 10 classes; the validation share",
    "95%": "the intervals' level",
    "8%": "the recipe's warmup cap",
    "75.47%": "the study's reported accuracy, cited",
    "2 s": "the load sweep's length",
    "45 s": "the scripts' timeout for a server's answer",
    "30 s": "torchrun's and Kubernetes' grace periods",
    "10 s": "MLflow's and Trackio's sampling interval",
    "0.5 s": "the per-epoch benchmark's tail",
    "93 MB": "the study's model's checkpoint size",
    "2 ms": "a simulated step",
    "5 ms": "a simulated step",
    "10 ms": "a simulated step",
    "4 ms": "250 calls a second",
    "2 minutes": "Slurm's --signal=TERM@120",
    "5 s": "the fault tests' kill delays (1, 3 and 5 s)",
}


def test_no_measured_figure_stands_outside_a_block():
    import docs

    found = []
    for path in docs.pages():
        text = docs.BLOCK.sub("", read(path))
        text = re.sub(r"```.*?```", "", text, flags=re.S)
        text = "\n".join(  # a command's own text is no figure; its comment may be
            line.partition(" # ")[2] if line.startswith("    ") else line for line in text.splitlines()
        )
        text = re.sub(r"`[^`\n]*`", "", text)  # code
        for m in FIGURE.finditer(text):
            if m.group(0) not in CONSTANTS:
                found.append(f"{os.path.relpath(path, ROOT)}: {m.group(0)}")
    assert not found, found
