"""The figures in README.md and docs/, printed from report/evidence/: no figure is typed into a page.

    python report/docs.py            # rewrite every block from the evidence (`make docs`)
    python report/docs.py --check    # exit 1 naming each block that differs from the evidence

A page holds a figure only inside a block, written between two comments:

    <!-- figures: NAME (report/docs.py prints this from report/evidence; a test keeps them equal) -->
    ...
    <!-- end of NAME -->

NAME is one of BLOCKS. Figures measured on several machines (the quick look's accuracy, the test
suite's time) come from report/evidence/measured.json: each measurement with its machine, date,
commit and how it was taken. tests/test_docs.py checks every block against the evidence, and that
no measured figure stands outside a block.
"""

import argparse
import json
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import build  # noqa: E402

EVIDENCE = build.EVIDENCE
MEASURED = os.path.join(EVIDENCE, "measured.json")
BLOCK = re.compile(r"(<!-- figures: ([\w-]+)[^>]*-->\n)(.*?)(<!-- end of \2 -->)", re.S)


def pages():
    """README.md and every page of docs/, as paths."""
    docs = os.path.join(ROOT, "docs")
    return [
        os.path.join(ROOT, "README.md"),
        *sorted(os.path.join(docs, p) for p in os.listdir(docs) if p.endswith(".md")),
    ]


def measured(what):
    with open(MEASURED) as f:
        return [m for m in json.load(f)["measurements"] if m["what"] == what]


def minutes(s):
    return f"{int(s // 60)} min {round(s % 60):02d} s" if s >= 60 else f"{s:.0f} s"


def machines(ms, figure):
    """Each measurement as `figure` on its machine, with its date and commit:
    "29.06% on 2 AMD EPYC cores (2026-12-04, at b14808b)"."""
    return "; ".join(f"{figure(m)} on {m['cores']} {m['machine']} cores ({m['date']}, at {m['commit']})" for m in ms)


def spread(values, fmt):
    lo, hi = min(values), max(values)
    return fmt(lo) if fmt(lo) == fmt(hi) else f"{fmt(lo)} to {fmt(hi)}"


class Evidence:
    """What the blocks print from, read once: the records, the benchmark, the footprint, the measurements."""

    def __init__(self, folder=EVIDENCE):
        self.folder = folder
        self._ev = None

    @property
    def ev(self):
        if self._ev is None:
            bench = build.read_benchmark(os.path.join(self.folder, "benchmark.json"))
            self._ev = build.evidence(self.folder, bench)
        return self._ev


def headline(e):
    return build.headline(e.ev.records, build.evaluate(e.ev)[1], e.ev.bench)


def decision(e):
    return build.decision_table(e.ev, build.evaluate(e.ev)[0])


def costs(e):
    return build.cost_tables(e.ev.bench)


def quick_look(e):
    ms = measured("quick_look")
    acc = spread([m["test_acc"] for m in ms], lambda a: f"{a:.2%}")
    return (
        f"Each record ends at the same test accuracy on one machine; machines differ in the last bits of their "
        f"float results, so it is {acc} (chance is 10%): "
        + machines(
            ms,
            lambda m: (
                f"{m['test_acc']:.2%}"
                + (f", {minutes(m['seconds'])} for {m['tools']} scripts and the report" if m["seconds"] else "")
            ),
        )
        + ".\n"
    )


def test_time(e):
    ms = measured("make_test")
    return (
        f"`make test` takes {spread([m['seconds'] for m in ms], lambda s: f'{s / 60:.0f}')} minutes of pytest on "
        "2 CPU cores: " + machines(ms, lambda m: f"{minutes(m['seconds'])} for {m['tests']} tests") + ".\n"
    )


def run_time(e):
    recs = e.ev.records
    per_tool = {t: sum(x["epoch_time_s"] or 0 for x in r["epochs"]) for t, r in recs.items()}
    w = next(iter(recs.values()))
    return (
        f"The evidence runs ({len(w['epochs'])} epochs, {w['train_images']:,} training images) trained for "
        f"{spread(list(per_tool.values()), lambda s: f'{s / 60:.0f}')} minutes each on "
        f"{w['config'].get('cpu', 'their CPU')}, {w['config'].get('torch_threads', 2)} threads.\n"
    )


def disk(e):
    with open(os.path.join(e.folder, "footprint.json")) as f:
        fp = json.load(f)
    tools = fp["tools"]
    first = next(iter(tools.values()))
    each = first["checkpoint_bytes"] / max(1, first["checkpoints"])
    lines = [
        f"The virtual environment takes {build.size(fp['venv_bytes'])}. Each model version is a checkpoint of "
        f"{build.size(each)}: the evidence run of {e.ev.records[next(iter(tools))]['config'].get('epochs')} epochs "
        f"kept {first['checkpoints']} ({build.size(first['checkpoint_bytes'])}). Each tool's own data for that run:",
        "",
        build.markdown_table(
            ["tool", "its own data", "what it keeps"],
            [[t, build.size(f["tool_bytes"]), f["what"]] for t, f in tools.items()],
        ),
    ]
    return "\n".join(lines) + "\n"


def cpu_run(e):
    recs = e.ev.records
    name, r = next(iter(recs.items()))
    rows = [
        [
            str(int(x["epoch"])),
            f"{x['train/loss']:.3f}",
            f"{x['train/acc']:.2%}",
            f"{x['val/loss']:.3f}",
            f"{x['val/acc']:.2%}",
            f"{x['lr']:.2e}",
        ]
        for x in r["epochs"]
    ]
    same = all(rec["summary"].get("test/acc") == r["summary"].get("test/acc") for rec in recs.values())
    return (
        f"The evidence runs (`make run`, {r['train_images']:,} training images, {len(r['epochs'])} epochs, "
        f"{r['config'].get('cpu', 'CPU')}): test accuracy {r['summary']['test/acc']:.2%} from the best-validation "
        f"checkpoint (epoch {r['summary']['best/epoch']}), "
        + ("the same in every tool's record" if same else "as the first tool's record holds it")
        + f". Per epoch, from {name}'s record:\n\n"
        + build.markdown_table(["epoch", "train loss", "train acc", "val loss", "val acc", "lr"], rows)
        + "\n"
    )


BLOCKS = {
    "decision": decision,
    "headline": headline,
    "costs": costs,
    "quick-look": quick_look,
    "test-time": test_time,
    "run-time": run_time,
    "disk": disk,
    "cpu-run": cpu_run,
}


def render(text, e):
    """The page with every block printed from the evidence."""

    def block(m):
        return m.group(1) + BLOCKS[m.group(2)](e) + m.group(4)

    return BLOCK.sub(block, text)


def main():
    p = argparse.ArgumentParser(description="Print the figures of README.md and docs/ from report/evidence.")
    p.add_argument("--check", action="store_true", help="say which blocks differ from the evidence; exit 1 if any")
    a = p.parse_args()
    e, stale = Evidence(), []
    for path in pages():
        with open(path) as f:
            text = f.read()
        new = render(text, e)
        if new != text:
            stale.append(os.path.relpath(path, ROOT))
            if not a.check:
                with open(path, "w") as f:
                    f.write(new)
    if a.check and stale:
        sys.exit(f"error: figures that are not the evidence's in {', '.join(stale)}: run `make docs`")
    print(("stale: " if a.check else "rewrote: ") + (", ".join(stale) or "none"))


if __name__ == "__main__":
    main()
