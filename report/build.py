"""Build the comparison report (a PDF) from each tool's records of one job and a benchmark.

    python report/build.py                                   # report/report.pdf from report/evidence
    python report/build.py --runs runs --pdf runs/report.pdf  # a report of your own runs (`make run`)

The folder given by --runs holds the job as each script recorded it offline, a folder per tool of
the registry named by its key (wandb/, neptune/, mlflow/, trackio/), plus the optional files
report/collect.py adds (benchmark.json, footprint.json, commit.json, onboarding.json,
leet_screen.txt, torchrun.json, mlflow_ui.png, export.txt).
Every number is read from those records, the benchmark or a probe of the installed clients; every
rating and matrix cell comes from report/rubric.py; the text is laid out by Typst.
"""

import argparse
import json
import os
import re
import shutil
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))
import probes as client_probes  # noqa: E402
import records  # noqa: E402
import rubric  # noqa: E402

import trackers  # noqa: E402  (records put the repository's folder on the path)

EVIDENCE = os.path.join(HERE, "evidence")
TOOLS = rubric.TOOLS
PALETTE = [("#d9a400", "-", 0), ("#1f5fbf", "o", 4), ("#0b8a55", "x", 5), ("#c2185b", "s", 3), ("#6a1b9a", "^", 4)]
MARK_NAMES = {"-": "a line", "o": "circles", "x": "crosses", "s": "squares", "^": "triangles"}
STYLES = {t: PALETTE[i % len(PALETTE)] for i, t in enumerate(TOOLS)}  # each tool's colour, marker, marker size
COLORS = {t: c for t, (c, _, _) in STYLES.items()}
PREFIX = rubric.BENCH_PREFIX


class BenchmarkError(Exception):
    """The benchmark file is empty or incomplete (a stopped benchmark)."""


BENCH_KEYS = (
    "hardware",
    "method",
    "engine_step_s",
    "bare_step_s",
    "engine_vs_bare_step_ratio",
    "augment_speedup_vs_pil",
    "overhead",
    "trackers",
    "load_sweep",
    "critical_path",
    "seconds",
)


def read_benchmark(path):
    """The last JSON line of benchmarks/run.py --json output, with every figure the report uses."""
    with open(path) as f:
        text = f.read()
    lines = [line for line in text.splitlines() if line.strip().startswith("{")]
    try:  # the committed file is the object alone, indented; run.py's output ends with it on one line
        bench = json.loads(text)
    except ValueError:
        bench = None
    try:
        bench = bench if isinstance(bench, dict) else json.loads(lines[-1])
    except (IndexError, ValueError):
        raise BenchmarkError(
            f"{path} holds no benchmark result (a stopped or failed run?): run `make benchmark` again"
        ) from None
    missing = [k for k in BENCH_KEYS if k not in bench] + [
        f"overhead.{p}" for p in ("aa_control", *PREFIX.values()) if p not in bench.get("overhead", {})
    ]
    if missing:
        raise BenchmarkError(f"{path} is an incomplete benchmark (no {', '.join(missing)}): run `make benchmark` again")
    return bench


# Numbers that read right: a unit chosen by magnitude, digits by size, plurals, verdicts from intervals.
def seconds(s):
    if s < 1e-3:
        return f"{s * 1e6:.3g} µs"
    if s < 1:
        return f"{s * 1e3:.3g} ms"
    if s < 120:
        return f"{s:.3g} s"
    return f"{s / 60:.3g} min"


def size(n):
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n} B"


def plural(n, word, words=None):
    return f"{n:,} {word if n == 1 else words or word + 's'}"


def pct(x):
    return f"{x * 100:.2f}%"


def detectable(summary):
    lo, hi = summary["ci95"]
    return not lo <= 1 <= hi


def verdict(summary):
    """A time ratio's verdict from its 95% interval: no difference where the interval holds 1.0."""
    r, (lo, hi) = summary["ratio"], summary["ci95"]
    if not detectable(summary):
        return f"within ±{max(1 - lo, hi - 1) * 100:.1f}%: no difference detectable"
    return f"{(r - 1) * 100:+.1f}% [{(lo - 1) * 100:+.1f}, {(hi - 1) * 100:+.1f}]"


def interval_text(summary):
    r, (lo, hi) = summary["ratio"], summary["ci95"]
    return f"{r:.3f} [{lo:.3f}, {hi:.3f}]"


def ratio_text(summary):
    """A time ratio with its interval and verdict, as the cost tables print it."""
    return f"{interval_text(summary)}: {verdict(summary)}"


def epoch_cost(c):
    """What a tool adds to a GPU-paced epoch: its median with the interval, at the pace where it costs most."""
    lo, hi = c["ci95"]
    return f"{c['ms_per_epoch']:+.1f} ms [{lo:+.1f}, {hi:+.1f}] at {c['at_step_ms']} ms a step"


def epoch_ratios(c):
    return ", ".join(f"{r:.4f} at {p} ms" for p, r in c["ratio_at_step_ms"].items())


def epoch_rows(b):
    """The per-epoch cost table's rows (the README's, docs/costs.md's, the report's): the critical path."""
    cp = b["critical_path"]
    c = {t: cp[PREFIX[t]] for t in TOOLS}
    paces = cp["method"]["step_ms"]
    return [
        [
            f"added to an epoch of {cp['method']['epoch_steps']} simulated GPU steps, median [95% interval], "
            "at the pace where it is largest",
            *(epoch_cost(c[t]) for t in TOOLS),
        ],
        [
            f"epoch time with it / without, at {', '.join(map(str, paces))} ms a step",
            *(epoch_ratios(c[t]) for t in TOOLS),
        ],
        [
            f"by phase at {paces[0]} ms: step calls / epoch-end call / its logging thread's work in the next steps",
            *(
                " / ".join(
                    f"{c[t]['by_phase'][str(paces[0])][k]:.1f}"
                    for k in ("step_calls_ms", "epoch_end_ms", "logging_thread_ms")
                )
                + " ms"
                for t in TOOLS
            ),
        ],
        [
            "its own threads' and processes' CPU per epoch, median",
            *(f"{c[t]['background_cpu_ms_per_epoch']:.0f} ms" for t in TOOLS),
        ],
    ]


def epoch_method(b):
    """How the per-epoch cost was measured, in a sentence, with the paces it simulates."""
    cp = b["critical_path"]
    m, e = cp["method"], cp["engine"]
    rounds = ", ".join(f"{n} at {p} ms" for p, n in m["rounds"].items())
    return (
        f"The pace is simulated ({m['pace']}): {m['epoch_steps']} steps of {', '.join(map(str, m['step_ms']))} ms, "
        f"the scripts' calls at their defaults (metrics every {m['log_every']} steps; at the epoch's end metrics, "
        f"histograms and a new model version of {m['model']}), through the scripts' logging thread; "
        f"{m['block']}; rounds: {rounds}; {m['interval']}. Not the trackers' cost, but paid at each epoch's end "
        f"too: the engine writes the checkpoint ({e['checkpoint_write_ms']:.0f} ms here) and evaluates the "
        f"validation split ({e['evaluation_steps']:.1f} training steps' time on this CPU)."
    )


def rubric_totals(rates):
    return {t: sum(rates[n][t] for n, _, _ in rubric.CRITERIA) for t in TOOLS}


def extreme(values, lowest=True):
    """The tool with the lowest (or highest) value, and whether it is alone there."""
    ordered = sorted(values.items(), key=lambda kv: kv[1], reverse=not lowest)
    return ordered[0][0], len(ordered) < 2 or ordered[0][1] != ordered[1][1]


# Typst: every text is a string literal, so no character of a value can be read as markup.
def s(text, code=False):
    """A Typst string literal of the text (control characters, which Typst escapes otherwise, dropped;
    in prose, the backticks that mark commands too)."""
    text = "".join(c for c in str(text) if c in "\n\t" or ord(c) >= 32)
    return json.dumps(text if code else text.replace("`", ""), ensure_ascii=False)


LONG_TOKEN = re.compile(r"\S{20,}")


def breakable(text):
    """Long tokens (identifiers, URLs, ids) with zero-width break points, so a narrow cell wraps them
    instead of letting them run into the next column."""

    def split(m):
        token = re.sub(r"([._/:=,\-])", "\\1\u200b", m.group(0))
        token = re.sub(r"([a-z])([A-Z])", "\\1\u200b\\2", token)
        return re.sub(r"([^\u200b]{16})(?=[^\u200b])", "\\1\u200b", token)

    return LONG_TOKEN.sub(split, str(text))


def par(text):
    return f"#par({s(text)})\n\n"


def heading(text, level=1, label=None, numbered=True):
    """A heading; with `label`, others refer to it as "Section N" (see `ref`); page 1's are not numbered."""
    numbering = "" if numbered else "numbering: none, "
    return f"#heading(level: {level}, {numbering}{s(text)})" + (f" <{label}>" if label else "") + "\n"


def ref(label):
    """A reference to a labelled heading, placed in a table cell or after a paragraph's text."""
    return Raw(f"[@{label}]")


def table(columns, header, rows, size_pt=8.5):
    cells = ", ".join(f"[#strong({s(h)})]" for h in header)
    body = ", ".join(c if isinstance(c, Raw) else s(breakable(c)) for row in rows for c in row)
    widths = "(" + ", ".join(columns) + ("," if len(columns) == 1 else "") + ")"
    return (
        f"#block(breakable: true)[#set text(size: {size_pt}pt)\n#set par(justify: false)\n#table(columns: {widths}, inset: 4pt, "
        f"stroke: 0.4pt + gray, table.header({cells}), {body})]\n\n"
    )


class Raw(str):
    """Typst code placed as is (a cell with a mark or an image)."""


def mark(ok):
    return Raw('text(fill: rgb("#2e7d32"))[yes]' if ok else 'text(fill: rgb("#c62828"))[no]')


def code_block(text, size_pt=6.5):
    return f"#block(fill: luma(245), inset: 6pt, width: 100%)[#set text(size: {size_pt}pt)\n#raw({s(text, code=True)}, block: true)]\n\n"


def figure(path, caption, width="100%", float=False):
    """A figure; a large one floats to the top or bottom of a page rather than leave a page half empty."""
    where = "placement: auto, " if float else ""
    return f"#figure({where}image({s(os.path.basename(path))}, width: {width}), caption: [#{s(caption)}])\n\n"


# Figures (matplotlib), one unit per axis.
def plt():
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    pyplot.rcParams.update({"font.size": 8, "svg.hashsalt": "report", "figure.dpi": 150})
    return pyplot


def epoch_axis(ax):
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def curves_figure(recs, path):
    pyplot = plt()
    curves = curve_data(recs)
    fig, axes = pyplot.subplots(2, 2, figsize=(7.2, 4.6))
    for ax, (key, label) in zip(
        axes.flat,
        (
            ("train/loss", "training loss"),
            ("val/loss", "validation loss"),
            ("train/acc", "training accuracy"),
            ("val/acc", "validation accuracy"),
        ),
        strict=True,
    ):
        for tool in TOOLS:
            _, style, ms = STYLES[tool]
            data = curves[tool]
            ax.plot(data["epoch"], data[key], style, color=COLORS[tool], ms=ms, lw=2, label=tool)
        ax.set(xlabel="epoch", ylabel=label)
        epoch_axis(ax)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    pyplot.close(fig)


def curve_data(recs):
    """The per-epoch values the curves draw, from each tool's record."""
    return {
        tool: {k: [e[k] for e in rec["epochs"]] for k in ("epoch", "train/loss", "val/loss", "train/acc", "val/acc")}
        for tool, rec in recs.items()
    }


def confusion_figure(rec, path):
    pyplot = plt()
    m, classes = rec["confusion"], rec["classes"]
    fig, ax = pyplot.subplots(figsize=(4.6, 4.0))
    ax.imshow(m, cmap="Blues")
    for (r, c), v in np.ndenumerate(m):
        ax.text(c, r, v, ha="center", va="center", size=7, color="white" if v > m.max() / 2 else "black")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set(xlabel="predicted", ylabel="true")
    fig.tight_layout()
    fig.savefig(path)
    pyplot.close(fig)


def per_class_figure(recs, path):
    pyplot = plt()
    classes = recs["W&B"]["classes"]
    fig, ax = pyplot.subplots(figsize=(7.2, 2.4))
    width = 0.8 / len(TOOLS)
    for i, tool in enumerate(TOOLS):
        ax.bar(
            [x + (i - (len(TOOLS) - 1) / 2) * width for x in range(len(classes))],
            [recs[tool]["per_class_acc"].get(c, 0) for c in classes],
            width,
            color=COLORS[tool],
            label=tool,
        )
    ax.set_xticks(range(len(classes)), classes)
    ax.set(ylabel="test accuracy", ylim=(0, 1))
    ax.legend(fontsize=7, ncol=len(TOOLS), loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)
    fig.tight_layout()
    fig.savefig(path)
    pyplot.close(fig)


def mistakes_figure(mistakes, path):
    from PIL import Image

    pyplot = plt()
    cols = 5
    rows = (len(mistakes) + cols - 1) // cols
    fig, axes = pyplot.subplots(rows, cols, figsize=(6.4, 1.3 * rows))
    # the grid may have more cells than mistakes
    for ax, m in zip(np.ravel(axes), mistakes, strict=False):
        ax.imshow(Image.open(m["image"]))
        ax.set_title(f"#{m['index']}: {m['true']} as\n{m['predicted']} (p={m['probability']:.2f})", size=6)
    for ax in np.ravel(axes):
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path)
    pyplot.close(fig)


def histogram_figure(histograms, names, path):
    pyplot = plt()
    fig, axes = pyplot.subplots(1, len(names), figsize=(7.2, 2.6))
    for ax, name in zip(np.ravel([axes]), names, strict=True):
        series = sorted(histograms[name], key=lambda h: h[0])
        lo = min(b[0] for _, b, _ in series)
        hi = max(b[-1] for _, b, _ in series)
        grid = np.linspace(lo, hi, 65)
        image = []
        for _, bins, counts in series:  # each epoch's bins put on one common axis
            centers = (np.array(bins[:-1]) + np.array(bins[1:])) / 2
            image.append(np.histogram(centers, bins=grid, weights=counts)[0])
        ax.imshow(
            np.log1p(np.array(image)).T,
            aspect="auto",
            origin="lower",
            cmap="magma",
            extent=(series[0][0] - 0.5, series[-1][0] + 0.5, lo, hi),
        )
        ax.set(xlabel="epoch", ylabel="value", title=name)
        epoch_axis(ax)
    fig.tight_layout()
    fig.savefig(path)
    pyplot.close(fig)


def load_figure(bench, path):
    """The load sweep: the caller's time per call and the tool's background CPU, by keys per call."""
    pyplot = plt()
    from matplotlib.lines import Line2D

    fig, (a, b) = pyplot.subplots(1, 2, figsize=(7.2, 2.9))
    points = bench["load_sweep"]["points"]
    styles = dict(zip(bench["load_sweep"]["rates"], ("-", "--", ":"), strict=False))
    for t in TOOLS:
        for rate, style in styles.items():
            mine = sorted((p for p in points if p["tool"] == PREFIX[t] and p["rate"] == rate), key=lambda p: p["keys"])
            label = f"{t}, {rate}/s"
            a.plot(
                [p["keys"] for p in mine],
                [p["call_ms_median"] for p in mine],
                style,
                marker="o",
                ms=2.5,
                color=COLORS[t],
                label=label,
            )
            b.plot(
                [p["keys"] for p in mine],
                [p["background_cpu_s_per_s"] for p in mine],
                style,
                marker="o",
                ms=2.5,
                color=COLORS[t],
                label=label,
            )
    for ax, ylabel in ((a, "caller's time per call (ms, median)"), (b, "background CPU (s per s)")):
        ax.set(xscale="log", xlabel="values per logging call", ylabel=ylabel)
    a.set_yscale("log")
    keys = [Line2D([], [], color=COLORS[t], lw=2, label=t) for t in TOOLS]
    keys += [Line2D([], [], color="grey", ls=style, label=f"{rate} calls/s") for rate, style in styles.items()]
    fig.legend(handles=keys, loc="lower center", ncol=len(keys), fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    fig.savefig(path)
    pyplot.close(fig)


def evidence(runs, bench):
    """What the report judges from: the records in `runs`, probes of the installed clients, the benchmark,
    the dated external facts."""
    return rubric.Evidence(
        records.read_all(runs),
        client_probes.probe_all(),
        bench,
        rubric.load_external(),
        optional(runs, "onboarding.json", json.load),
    )


def evaluate(ev):
    """The facts, ratings and offline matrix of the evidence: all the report's judgements."""
    facts = rubric.establish(ev)
    return facts, rubric.ratings(facts), rubric.matrix(facts)


def optional(folder, name, reader=lambda f: f.read()):
    path = os.path.join(folder, name)
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return reader(f)


def build(runs, pdf_path, bench_path=None):
    """The report of the records in `runs`; its costs come from bench_path (default: runs/benchmark.json)."""
    bench_path = bench_path or (
        os.path.join(runs, "benchmark.json") if os.path.isfile(os.path.join(runs, "benchmark.json")) else None
    )
    bench = read_benchmark(bench_path) if bench_path else None
    ev = evidence(runs, bench)
    recs = ev.records
    facts, rates, cells = evaluate(ev)
    extras = {
        "footprint": optional(runs, "footprint.json", json.load),
        "leet": optional(runs, "leet_screen.txt"),
        "torchrun": optional(runs, "torchrun.json", json.load),
        "export": optional(runs, "export.txt"),
        "search_default": optional(os.path.join(runs, "search"), "default.json", json.load),
    }
    with tempfile.TemporaryDirectory(prefix="report-") as work:
        doc = document(recs, ev, facts, rates, cells, extras, work, runs)
        with open(os.path.join(work, "report.typ"), "w") as f:
            f.write(doc)
        import typst

        os.makedirs(os.path.dirname(os.path.abspath(pdf_path)), exist_ok=True)
        typst.compile(os.path.join(work, "report.typ"), output=pdf_path, root=work, ignore_system_fonts=True)
    return {"records": recs, "facts": facts, "ratings": rates, "matrix": cells, "bench": bench}


# The first page and the body's sections (the decision, the study's criteria, team features, the API).
FACT_SECTION = {  # where a decision's reason shows its evidence
    "free_tier": "sec-team",
    "hosted_service": "sec-team",
    "access_control": "sec-team",
    "self_hosted_access": "sec-team",
    "sso": "sec-team",
    "server_runs_here": "sec-team",
    "open_source_server": "sec-team",
    "works_offline": "sec-offline",
    "local_viewer": "sec-offline",
    "epoch_cost_small": "sec-costs",
    "keeps_up_at_load": "sec-costs",
    "export_target": "sec-neptune",
}


def lines_cell(parts):
    """A table cell of several lines, each Typst content (a string and, where given, a reference)."""
    return Raw("[" + " \\ ".join(parts) + "]")


def reason(text, label=None):
    return f"#{s(text)}" + (f" (@{label})" if label else "")


def commit_line(runs):
    """Which commit made each tool's run, from commit.json (report/collect.py writes it)."""
    tools = (optional(runs, "commit.json", json.load) or {}).get("tools", {})
    groups = {}
    for t in TOOLS:
        c = tools.get(t)
        if not c:
            key = "from the records in the given folder (no commit.json: not collected by report/collect.py)"
        elif not c.get("commit"):
            key = f"collected {c['collected']}, before report/collect.py recorded the commit"
        else:
            key = f"made at commit {c['commit'][:10]}" + (" with local changes" if c.get("changed_files") else "")
            key += f", collected {c['collected']}"
        groups.setdefault(key, []).append(t)
    return "; ".join(f"{', '.join(ts)}: runs {key}" for key, ts in groups.items())


def choice_text(fit, together, name):
    """The tools that fit a situation: those the measure cannot tell apart from the best, named
    together ("A or B"), then the others in their order."""
    lead = [name(t) for t in fit[:together]]
    text = lead[0] if len(lead) == 1 else ", ".join(lead[:-1]) + " or " + lead[-1]
    return text + (f" (then {', '.join(fit[together:])})" if fit[together:] else "")


def decision_page(recs, ev, facts, extras, runs):
    nep = ev.external["hosted_service"]["Neptune"]
    out = [
        par(
            f"Neptune in 2026: {nep['says']} ({nep['source']}, checked {nep['checked']}). A Neptune user must now "
            "self-host through Neptune's support, or move: this project's neptune_export.py moves Neptune's local runs "
            "into W&B or MLflow, a resumed run's segments as one run."
        ),
        heading("Which tool, for which situation", 2, numbered=False),
    ]
    rows = []
    for situation, fit, together, asked in rubric.decide(ev, facts):
        if fit:
            choice = choice_text(fit, together, lambda t: t)
            parts = [reason(rubric.FACTS[f][0], FACT_SECTION.get(f)) for f in asked]
        else:
            choice = "none has all of it"
            parts = [
                reason(f"{t} lacks: " + ", ".join(rubric.FACTS[f][0] for f in asked if not rubric.holds(facts, f, t)))
                for t in TOOLS
            ]
        rows.append([situation, choice, lines_cell(parts)])
    out.append(
        table(["1.3fr", "1.1fr", "3.6fr"], ["situation", "choose", "why: what holds for it, and where"], rows, 8)
    )
    out.append(
        par(
            "A tool is named where every fact its situation asks holds for it; where several do, the one that adds the "
            "least to a GPU-paced epoch comes first, and those whose 95% intervals overlap its interval are named with "
            "it, as not told apart (for heavy logging: the cheapest call at 1,000 values, a single measurement "
            "per tool). Each fact is "
            "established from a probe of the installed client, the runs' records, a measurement or a cited published "
            "fact; the sections named give its evidence."
        )
    )
    out.append(heading("Measured", 2, numbered=False))
    fp = (extras.get("footprint") or {}).get("tools", {})
    cp = (ev.bench or {}).get("critical_path", {})
    rows = []
    for t in TOOLS:
        c = cp.get(PREFIX[t])
        rows.append(
            [
                t,
                pct(recs[t]["summary"]["test/acc"]) if recs[t]["summary"].get("test/acc") is not None else "—",
                epoch_cost(c) if c else "not measured",
                f"{size(fp[t]['tool_bytes'])}: {fp[t]['what']}" if t in fp else "—",
            ]
        )
    out.append(
        table(
            ["0.7fr", "0.9fr", "2fr", "3fr"],
            ["tool", "test accuracy in its record", "added to a GPU-paced epoch", "what it keeps offline for the run"],
            rows,
            8,
        )
    )
    test = {t: recs[t]["summary"].get("test/acc") for t in TOOLS}
    same = None not in test.values() and len({round(v, 6) for v in test.values()}) == 1
    w = recs[TOOLS[0]]
    text = (
        f"The job: the study's CIFAR-10 AlexNet, {plural(len(w['epochs']), 'epoch')} on "
        f"{w['train_images']:,} training images, the same command with each tool's script, offline, on "
        f"{w['config'].get('cpu', 'a CPU')}. "
        + (
            "Every record holds the same test accuracy: on a CPU the engine computes the same numbers whatever "
            "tracks it, so a difference between records is a difference between the tools."
            if same
            else "The records' test accuracies differ (see the appendix)."
        )
        + " The GPU-paced epoch is simulated: 176 steps of 2, 5 and 10 ms that release the interpreter's lock, "
        "as a CUDA synchronisation does; the figure is at the pace where the tool costs most ("
    )
    out.append(f"#par[#{s(text)}#ref(<sec-costs>)#[).]]\n\n")
    return out


def study_section(facts, rates):
    study = rubric.load_study()
    out = [heading("The study's criteria, measured", 1, "sec-criteria")]
    out.append(
        par(
            f"The study ({study['title']}, {study['year']}; {study['source']}, read {study['checked']}) rated W&B and "
            "Neptune from 1 to 3 on nine criteria from impressions, and defined a tenth it never rated. Each criterion "
            "is kept here with the study's own definition and ratings beside ours; ours come from facts, each level (1 "
            f"{rubric.SCALE[1]}, 2 {rubric.SCALE[2]}, 3 {rubric.SCALE[3]}) a list of facts of report/rubric.py that "
            "must all hold. What is measured says where ours is a proxy; the appendix lists every fact with its "
            "evidence."
        )
    )
    rows = []
    for name, _, _ in rubric.CRITERIA:
        c = study["criteria"][name]
        elsewhere = c.get("definition_elsewhere")  # the study never defines it; its own repository does
        quote = c["definition"] or (elsewhere and elsewhere["text"]) or "not defined"
        first = quote.split(". ")[0].rstrip(".") + "." + (" (its repository's README)" if not c["definition"] else "")
        then = rubric.STUDY[name]
        rows.append(
            [
                lines_cell([f"#strong({s(name)})", f"#emph({s(chr(8220) + first + chr(8221))})"]),
                " / ".join("—" if v is None else str(v) for v in then),
                *(str(rates[name][t]) for t in TOOLS),
                rubric.MEASURED[name],
            ]
        )
    out.append(
        table(
            ["3fr", "0.8fr", *["0.55fr"] * len(TOOLS), "2.6fr"],
            ["criterion, and the study's definition", "study W&B / Neptune", *TOOLS, "what is measured here"],
            rows,
            7,
        )
    )
    totals = rubric_totals(rates)
    out.append(
        par(
            "A rating moves from the study's where a fact decides it, not because the tool changed: "
            + "; ".join(
                f"{name}: "
                + ", ".join(
                    f"{t} {rubric.why_moved(facts, name, t, then[i] if i < 2 else None, rates[name][t])}"
                    for i, t in enumerate(TOOLS[:2])
                    if then[i] is not None and then[i] != rates[name][t]
                )
                for name, then in rubric.STUDY.items()
                if any(then[i] is not None and then[i] != rates[name][t] for i, t in enumerate(TOOLS[:2]))
            )
            + f". Totals: {', '.join(f'{t} {totals[t]}' for t in TOOLS)} of {3 * len(rubric.CRITERIA)}; read the "
            "criteria that matter to you rather than the sum."
        )
    )
    return out


TEAM_FACTS = [  # (row, the published fact's key in report/facts.json)
    ("hosted service open to new users", "hosted_service"),
    ("free to use", "free_tier"),
    ("published price list", "published_pricing"),
    ("open-source server", "open_source_licence"),
    ("access control (users, roles)", "access_control"),
    ("access control on a server you run", "self_hosted_access_control"),
    ("single sign-on", "sso"),
    ("running your own server", "server_requirements"),
    ("the way out: export", "export_path"),
]


def team_section(ev, facts):
    out = [heading("Teams, servers, prices and the way out", 1, "sec-team")]
    out.append(
        par(
            "What no run here can show, from the vendors' published pages (report/facts.json: each fact with its "
            "source and the date it was read); the sources are listed below the table."
        )
    )
    sources, rows = [], []
    for row, key in TEAM_FACTS:
        cells = []
        for t in TOOLS:
            e = ev.external.get(key, {}).get(t)
            if not e:
                cells.append("—")
                continue
            if e["source"] and e["source"] not in sources:
                sources.append(e["source"])
            n = sources.index(e["source"]) + 1 if e["source"] else None
            mark_text = {True: "yes", False: "no", None: "?"}.get(e["holds"], str(e["holds"]))
            cells.append(f"{mark_text}: {e['says']}" + (f" [{n}]" if n else ""))
        rows.append([row, *cells])
    out.append(table(["1.1fr", *["2fr"] * len(TOOLS)], ["", *TOOLS], rows, 7))
    checked = sorted({e["checked"] for key in dict(TEAM_FACTS).values() for e in ev.external.get(key, {}).values()})
    out.append(
        Raw(
            "#block[#set text(size: 7pt)\n"
            + " ".join(f"[{i + 1}] #link({s(u)})[#{s(breakable(u))}]" for i, u in enumerate(sources))
            + f" (read {', '.join(checked)})]\n\n"
        )
    )
    o = ev.onboarding
    if o:
        rows = []
        for t in TOOLS:
            m = o["tools"].get(PREFIX[t], {})
            rows.append(
                [
                    t,
                    f"{m['install_s']:.0f} s, {size(m['venv_bytes'])}, {m['packages']} packages"
                    if "install_s" in m
                    else "—",
                    f"{m['first_run_s']:.1f} s, {m['snippet_lines']} lines"
                    if m.get("recorded")
                    else m.get("error", "—"),
                    f"{m['server_s']:.1f} s: {m['server']}" if m.get("server_s") else "no server to run here",
                ]
            )
        out.append(
            par(
                f"Measured here (benchmarks/onboarding.py, {o['date']}, {o['machine']}): each client installed alone into "
                "a new virtual environment, its quickstart's calls recording a first run offline, and, where the client "
                "has one, its server started on that record until it answered with the run over HTTP."
            )
        )
        out.append(
            table(
                ["0.7fr", "1.6fr", "1.2fr", "2.2fr"],
                ["tool", "installed alone", "first recorded run", "its server showing the run"],
                rows,
                7.5,
            )
        )
    return out


API_FEATURES = [  # (what the job logs, the adapter's method)
    ("open or reopen the run", "start"),
    ("per-step metrics", "log_metrics"),
    ("an epoch's end", "log_epoch"),
    ("a model version", "log_model"),
    ("what a resumed run holds", "recorded"),
    ("close the run", "finish"),
]


def method_source(tool, name):
    """The source of the adapter's method `name`, as written (docstring and comments dropped for counting)."""
    import ast
    import inspect
    import textwrap

    import trackers

    cls = trackers.get(PREFIX[tool]).tracker
    fn = cls.__dict__.get(name)
    if fn is None:
        return None, 0
    src = textwrap.dedent(inspect.getsource(fn))
    body = ast.parse(src).body[0].body
    if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant):
        body = body[1:]
    lines = {n for node in body for n in range(node.lineno, node.end_lineno + 1)}
    code = src.splitlines()
    counted = [code[i - 1] for i in sorted(lines) if code[i - 1].strip() and not code[i - 1].strip().startswith("#")]
    return src, len(counted)


def api_section():
    out = [heading("The same logging in each tool's API", 1, "sec-api")]
    out.append(
        par(
            "Each tool's adapter (trackers/<tool>_tracker.py) makes the same job's calls. The lines of code each "
            "takes (the method's body, without its docstring, blank lines and comments), then each tool's model version "
            "as written:"
        )
    )
    rows = []
    for what, name in API_FEATURES:
        rows.append([what, *(str(method_source(t, name)[1]) for t in TOOLS)])
    out.append(table(["2fr", *["1fr"] * len(TOOLS)], ["what the job logs", *TOOLS], rows, 7.5))
    cells = []
    for t in TOOLS:
        src, n = method_source(t, "log_model")
        cells.append(Raw(f"[#strong({s(t)}) #raw({s(src, code=True)}, block: true)]"))
    out.append("#block[#set text(size: 7pt)\n#grid(columns: (1fr, 1fr), gutter: 6pt, " + ", ".join(cells) + ")]\n\n")
    return out


def document(recs, ev, facts, rates, cells, extras, work, runs):
    bench = ev.bench
    names = ", ".join(TOOLS[:-1]) + f" and {TOOLS[-1]}"
    out = [
        f"""#set document(title: {s(f"Which experiment tracker in 2026: {names}")}, date: none)
#set page(paper: "a4", margin: (x: 1.7cm, y: 1.6cm), numbering: "1 / 1")
#set text(size: 9pt, hyphenate: false)
#set par(justify: true)
#set heading(numbering: "1.")
#show heading: set block(above: 1.1em, below: 0.55em)
#align(center)[#text(size: 16pt, weight: "bold")[#{s(f"Which experiment tracker in 2026: {names}")}]]
#align(center)[#{s("One AlexNet/CIFAR-10 training job tracked with each, compared from what each stored and from measurements")}]
#align(center)[#text(size: 8pt, fill: gray)[#{s(f"Built by report/build.py. {commit_line(runs)}.")}]]
"""
    ]
    out += decision_page(recs, ev, facts, extras, runs)
    out.append("#pagebreak()\n")
    out += study_section(facts, rates)
    if bench:
        out += costs_section(bench, work)
    out += team_section(ev, facts)
    out += api_section()
    out += matrix_section(facts, cells)
    if all(recs[t].get("search") for t in TOOLS):
        out += search_section(recs, ev, facts, extras["search_default"], work)
    out += closing(recs, ev, facts)
    out.append(
        '#pagebreak()\n#counter(heading).update(0)\n#set heading(numbering: "A.1.")\n'
        + "#heading(numbering: none, [Appendix: the evidence in detail]) <appendix>\n"
    )
    out += overview(recs, ev)
    out += results(recs, work)
    out += rubric_facts_section(facts, rates)
    if bench:
        out += costs_appendix(bench, work, extras["footprint"])
    out += records_section(recs, ev, extras, work, runs)
    out += evaluation_section(recs, ev, facts, work)
    out += resume_section(recs, extras["torchrun"])
    if extras["export"]:
        out.append(heading("The export of the Neptune run"))
        out.append(par("neptune_export.py on this report's Neptune run, into W&B (report/collect.py):"))
        out.append(code_block(extras["export"]))
    out.append(heading("Reproduce it"))
    out.append(
        code_block(
            "make run                  # each tool's script offline, 25 epochs, and runs/report.pdf of them\n"
            "make search               # runs/search: a search recorded by each tool\n"
            "make benchmark            # runs/benchmark.json: the costs\n"
            "make evidence             # replace report/evidence with the runs in runs/\n"
            "make report               # this PDF, from report/evidence alone",
            8,
        )
    )
    return "".join(out)


OPTIMIZER_NAMES = {"sgd": "SGD with Nesterov momentum 0.9", "adam": "Adam", "adamw": "AdamW"}


def overview(recs, ev):
    w = recs["W&B"]
    cfg = w["config"]
    test = {t: recs[t]["summary"].get("test/acc") for t in TOOLS}
    hw = cfg.get("device_name") or cfg.get("cpu")
    versions = {t: ev.probes[t]["version"] for t in TOOLS}
    out = [heading("The job, and how its records were read")]
    trackers_by_name = {t.name: t for t in trackers.TOOLS}
    out.append(
        par(
            f"The job: the original study's CIFAR-10 AlexNet ({cfg['model_params']:,} parameters), trained with the "
            f"'{cfg['recipe']}' recipe ({OPTIMIZER_NAMES.get(cfg['optimizer'], cfg['optimizer'])}, peak learning rate {cfg['lr']:g}, batch {cfg['batch_size']}, "
            f"{plural(int(cfg['warmup_epochs']) if float(cfg['warmup_epochs']).is_integer() else cfg['warmup_epochs'], 'warmup epoch')}, "
            f"{cfg['schedule']} schedule, label smoothing {cfg['label_smoothing']:g}, seed {cfg['seed']}) for "
            f"{plural(len(w['epochs']), 'epoch')} on {recs['W&B']['train_images']:,} training images, with "
            f"{recs['W&B']['val_images']:,} held out for validation and {recs['W&B']['test_images']:,} test images. "
            f"The data is {recs['W&B']['data_source']}."
        )
    )
    out.append(
        par(
            "The same command line ran once per script: "
            + ", ".join(f"{trackers_by_name[t].script} ({t} client {versions[t]})" for t in TOOLS)
            + f", each offline, on {cfg['device']} ({hw}, {plural(cfg['cpu_count'], 'core')}, "
            f"torch {cfg['torch_version']}). The scripts drive one training engine through one tracker interface, so a "
            f"difference between the records is a difference between the tools."
            + (
                ' Each run was stopped with Ctrl-C and continued with --resume ("An interrupted run" below).'
                if all(len(recs[t]["segments"]) > 1 for t in TOOLS if recs[t]["segments"])
                else ""
            )
            + "".join(
                f" {t}'s segment {i + 1} was also killed before it could end, and its run continued again with --resume."
                for t in TOOLS
                for i, seg in enumerate(recs[t]["segments"])
                if seg["killed"]
            )
        )
    )
    same = None not in test.values() and len({round(v, 6) for v in test.values()}) == 1
    out.append(
        par(
            "Test accuracy of the best-validation checkpoint, as each tool recorded it: "
            + ", ".join(f"{t} {'—' if test[t] is None else pct(test[t])}" for t in TOOLS)
            + (
                ": the same in every record, since on a CPU the engine computes the same numbers whatever tracks it."
                if same
                else "."
            )
        )
    )
    out.append(
        par(
            "Everything in this report is read back from each tool's own local records with its official reader ("
            + "; ".join(f"{t}: {recs[t]['reader']}" for t in TOOLS)
            + "), from the benchmark, or from probes of the installed clients run while this report was built. Each "
            "rating comes from a rubric of checkable facts, not from impressions."
        )
    )
    return out


def results(recs, work):
    out = [heading("Training results from each tool's record")]
    path = os.path.join(work, "curves.png")
    curves_figure(recs, path)
    out.append(
        figure(
            path,
            "Per-epoch values as each tool recorded them: "
            + ", ".join(f"{t} {MARK_NAMES[STYLES[t][1]]}" for t in TOOLS)
            + ".",
        )
    )
    rows = []
    for key in records.SUMMARY_KEYS:
        values = [recs[t]["summary"].get(key) for t in TOOLS]
        rows.append(
            [key, *[("—" if v is None else str(int(v)) if key == "best/epoch" else f"{v:.4f}") for v in values]]
        )
    out.append(table(["2fr", *["1fr"] * len(TOOLS)], ["final value (best checkpoint on the test set)", *TOOLS], rows))
    return out


def rubric_facts_section(facts, rates):
    out = [heading("The rubric: every fact, for every tool")]
    out.append(
        par(
            "A tool has a level of a criterion when every fact of it, and of the levels below, holds. Each fact with "
            "the evidence it was established from:"
        )
    )
    for name, has, more in rubric.CRITERIA:
        rows = []
        for level, ids in ((2, has), (3, more)):
            for fid in ids:
                text, source, _ = rubric.FACTS[fid]
                cells = []
                for t in TOOLS:
                    value = facts[fid][t]
                    cells.append(
                        Raw(
                            f"[#{mark(bool(value and value[0]))} #text(size: 7pt)[#{s(breakable(value[1]) if value else 'no evidence')}]]"
                        )
                    )
                rows.append([f"{level}: {text} ({source})", *cells])
        out.append(
            f"#strong({s(name)}) #h(1fr) #{s('ratings: ' + ', '.join(f'{t} {rates[name][t]}' for t in TOOLS))}\n"
        )
        out.append(table(["2.2fr", *["1.6fr"] * len(TOOLS)], ["level: fact (source)", *TOOLS], rows, 7.5))
    return out


def matrix_section(facts, cells):
    out = [heading("What works offline", 1, "sec-offline")]
    out.append(
        par(
            "Each cell follows from facts of the rubric: a feature works offline where its offline fact holds, needs a "
            "server where only its server fact holds, and is unavailable otherwise. The evidence column names the "
            "deciding fact for each tool."
        )
    )

    def why(feature, works, server, t):
        offline = facts[works][t][1] if facts[works][t] else "no evidence"
        if cells[feature][t] == rubric.SERVER:
            return f"{offline}; on a server: {facts[server][t][1]}"
        return offline

    rows = [
        [
            feature,
            *(cells[feature][t] for t in TOOLS),
            "; ".join(f"{t}: {why(feature, works, server, t)}" for t in TOOLS),
        ]
        for feature, works, server in rubric.MATRIX
    ]
    out.append(table(["1.6fr", *["1fr"] * len(TOOLS), "3.6fr"], ["feature", *TOOLS, "evidence"], rows, 7))
    return out


def per_thousand_values(b, tool):
    """CPU seconds (the caller's, the background's, the finish's) per 1,000 values at the sweep's busiest point."""
    q = max((q for q in b["load_sweep"]["points"] if q["tool"] == tool), key=lambda q: (q["keys"], q["rate"]))
    return q["cpu_s_per_1000_values"]


def cost_rows(b):
    """The cost table's rows (the report's and docs/costs.md's): ratios with intervals, verdicts, own work."""
    o, tr = b["overhead"], b["trackers"]
    p = {t: PREFIX[t] for t in TOOLS}
    return [
        [
            f"training time / none, log every {b['method']['default_log_every']} steps (default)",
            *(ratio_text(o[p[t]]["default"]) for t in TOOLS),
            f"A/A {interval_text(o['aa_control'])}",
        ],
        [
            "training time / none, log every step",
            *(ratio_text(o[p[t]]["every_step"]) for t in TOOLS),
            f"A/A {interval_text(o['aa_control_every_step'])}",
        ],
        [
            "one logging call (2 values), training thread",
            *(seconds(tr[p[t]]["every_step"]["call_ms"] / 1e3) for t in TOOLS),
            "mean, every-step blocks",
        ],
        [
            f"own CPU per epoch ({b['method']['epoch_steps']} steps of batch 256, "
            f"{seconds(tr['wandb']['default']['epoch_s'])} here), default interval",
            *(seconds(tr[p[t]]["default"]["cpu_s_per_epoch"]) for t in TOOLS),
            "calls + threads + processes",
        ],
        [
            "its threads' and processes' CPU while the run is open, default interval",
            *(f"{tr[p[t]]['default']['background_cpu_share'] * 100:.1f}% of a core" for t in TOOLS),
            "over the rounds",
        ],
        [
            f"own CPU per 1,000 values, {max(b['load_sweep']['keys']):,} a call",
            *(seconds(per_thousand_values(b, p[t])) for t in TOOLS),
            f"load sweep, {max(b['load_sweep']['rates'])} calls/s asked, finish included",
        ],
        [
            "peak memory of its own processes",
            *(
                size(tr[p[t]]["default"]["children_peak_rss_bytes"])
                if tr[p[t]]["default"]["children_peak_rss_bytes"]
                else "none"
                for t in TOOLS
            ),
            "resident set",
        ],
        [
            "run start / epoch end / finish",
            *(
                " / ".join(seconds(tr[p[t]]["default"][k]) for k in ("start_s", "epoch_end_s", "finish_s"))
                for t in TOOLS
            ),
            "medians of 3 runs",
        ],
    ]


def sweep_rows(b):
    """The load sweep at its highest call rate, per tool and keys per call."""
    top = max(b["load_sweep"]["rates"])
    rows = []
    for t in TOOLS:
        for q in sorted(
            (q for q in b["load_sweep"]["points"] if q["tool"] == PREFIX[t] and q["rate"] == top),
            key=lambda q: q["keys"],
        ):
            rows.append(
                [
                    t,
                    f"{q['keys']:,}",
                    f"{q['achieved_rate']:.0f}/s",
                    f"{q['call_ms_median']:.3g} / {q['call_ms_p99']:.3g} ms",
                    f"{q['background_cpu_s_per_s']:.2f}",
                    size(max(0, q["rss_growth_bytes"]))
                    + (f"; its processes {size(q['children_peak_rss_bytes'])}" if q["children_peak_rss_bytes"] else ""),
                    size(q["local_bytes"]),
                    seconds(q["finish_s"]),
                    f"{q['values_recorded']:,} of {q['values_logged']:,}",
                ]
            )
    return rows, top


def machine(hw, m, made=None):
    """The machine a benchmark ran on (and the commit it measured, where the benchmark says)."""
    gpu = f"{hw['device_name']}" if hw["device"] != "cpu" else "no GPU"
    at = ""
    if made and made.get("commit"):
        at = f"at commit {made['commit'][:10]}{' with local changes' if made.get('changed_files') else ''} "
    return (
        f"{at}on {hw['cpu']}, {plural(hw['cpu_count'], 'core')}, {gpu}, PyTorch {hw['torch_version'].split('+')[0]} "
        f"on {plural(m['threads'], 'thread')}"
    )


def profiled(pr, code=lambda x: x):
    script = sum(r["own_s"] for r in pr["top_tool"] if r["function"].startswith("neptune_integration.py"))
    return (
        f"Neptune logging every step, under cProfile (the training thread, {pr['steps']} steps; the profiler "
        f"slows Python code more than the training step): {seconds(pr['calls_wall_s'] / max(1, pr['calls']))} "
        f"a call, {pr['calls_wall_s'] / pr['train_s'] * 100:.2f}% of the training time; the entries of the "
        f"client and the script with the most own time: "
        + "; ".join(f"{code(r['function'])} {seconds(r['own_s'])} in {r['calls']} calls" for r in pr["top_tool"][:5])
        + f". The script's own code is {script / pr['calls_wall_s'] * 100:.0f}% of the calls' time; the rest is "
        "the client's: each value becomes an operation, serialized and put on the offline disk queue on the "
        "calling thread."
    )


def markdown_table(header, rows):
    return "\n".join(
        [
            "| " + " | ".join(header) + " |",
            "|" + " --- |" * len(header),
            *("| " + " | ".join(str(c) for c in row) + " |" for row in rows),
        ]
    )


def decision_table(ev, facts):
    """The README's decision: for each situation, the tool whose facts fit it, and why (markdown)."""
    rows = []
    for situation, fit, together, asked in rubric.decide(ev, facts):
        why = "; ".join(rubric.FACTS[f][0] for f in asked)
        if fit:
            rows.append([situation, choice_text(fit, together, lambda t: f"**{t}**"), why])
        else:
            rows.append([situation, "none has all of it", why])
    return markdown_table(["situation", "choose", "what holds for it"], rows) + "\n"


def headline(recs, rates, b):
    """The README's headline table: each tool's test accuracy from its own record and its costs, from
    the committed evidence (a test keeps them equal)."""
    o, m = b["overhead"], b["method"]
    w = recs[TOOLS[0]]
    rows = [
        [
            f"test accuracy in its own record ({plural(len(w['epochs']), 'epoch')}, "
            f"{w['train_images']:,} training images)",
            *(pct(recs[t]["summary"]["test/acc"]) for t in TOOLS),
        ],
        *epoch_rows(b)[:2],
        [
            f"training time with it / without on this CPU, logging every {m['default_log_every']} steps",
            *(ratio_text(o[PREFIX[t]]["default"]) for t in TOOLS),
        ],
    ]
    return (
        markdown_table(["", *TOOLS], rows)
        + f"\n\nCosts: `make benchmark` {machine(b['hardware'], m, b.get('made'))}; GPU steps simulated, as "
        f"[docs/costs.md](docs/costs.md) says; ratios with 95% intervals (the A/A control, no tracker against "
        f"no tracker, {interval_text(o['aa_control'])}).\n"
    )


def cost_tables(b):
    """docs/costs.md's tables, from the same benchmark output as the report's (a test keeps them equal)."""
    hw, m, pr = b["hardware"], b["method"], b.get("profile", {}).get("neptune_every_step")
    md = markdown_table
    rows, top = sweep_rows(b)
    text = [
        f"What each tool adds to an epoch at a GPU's pace: `make benchmark` ({b['seconds'] / 60:.0f} min) "
        f"{machine(hw, m, b.get('made'))}. {epoch_method(b)}",
        "",
        md(["measure", *TOOLS], epoch_rows(b)),
        "",
        f"On this CPU's own steps (the same run), synthetic "
        f"data, batch {m['batch']}; ratios with 95% intervals ({m['interval']}); "
        f"`report/evidence/benchmark.json`:",
        "",
        md(["measure", *TOOLS, "note"], cost_rows(b)),
        "",
        f"The load sweep at {top} calls a second (a {1000 / top:g} ms step), values read back with each tool's reader:",
        "",
        md(
            [
                "tool",
                "values a call",
                "calls kept up",
                "call, median / p99",
                "background CPU s/s",
                "memory growth; peak",
                "local data",
                "finish",
                "values recorded",
            ],
            rows,
        ),
    ]
    if pr:
        text += ["", profiled(pr, lambda f: f"`{f}`")]
    return "\n".join(text) + "\n"


def costs_section(b, work):
    hw, m = b["hardware"], b["method"]
    o, tr = b["overhead"], b["trackers"]
    out = [heading("What each tool costs", 1, "sec-costs")]
    out.append(heading("At a GPU's pace: what a tool adds to an epoch", 2))
    out.append(par(epoch_method(b)))
    out.append(table(["2.2fr", *["1.3fr"] * len(TOOLS)], ["measure", *TOOLS], epoch_rows(b), 7.5))
    out.append(heading("On this CPU's steps", 2))
    out.append(
        par(
            f"Measured by benchmarks/run.py{' --quick' if b.get('quick') else ''} (make benchmark, "
            f"{b['seconds'] / 60:.0f} minutes) {machine(hw, m, b.get('made'))}, synthetic CIFAR-sized data, batch {m['batch']}. "
            f"Design: {m['design']}; blocks of {plural(m['block_steps'], 'step')}, {o['aa_control']['rounds']} rounds at "
            f"the default interval and {o['aa_control_every_step']['rounds']} logging every step. Intervals: "
            f"{m['interval']}. The A/A control (no tracker against no tracker) is the noise floor: "
            f"{interval_text(o['aa_control'])} at the default interval. A verdict says no difference where a ratio's "
            "interval holds 1.0, and gives the change with its interval where it does not. The ratios measure what "
            "the training thread waits for (the calls, and any contention they cause); the tools' threads and "
            "processes, open through every block, are counted apart as their own work."
        )
    )
    out.append(table(["2.2fr", *["1.3fr"] * len(TOOLS), "1fr"], ["measure", *TOOLS, "note"], cost_rows(b), 7.5))
    own = {t: tr[PREFIX[t]]["default"]["cpu_s_per_epoch"] for t in TOOLS}
    most, _ = extreme(own, lowest=False)
    found = [t for t in TOOLS if detectable(o[PREFIX[t]]["default"])]
    spare = m["threads"] < hw["cpu_count"]
    out.append(
        par(
            f"At the default interval, {', '.join(found) if found else 'no tool'} "
            f"{'shows' if len(found) <= 1 else 'show'} a training-time difference outside its interval on this "
            f"machine. The tools' own work, counted directly (its calls on the training thread, its threads and "
            f"processes, named in the appendix), is largest for {most} ({seconds(own[most])} of CPU per epoch)"
            + (
                "; with the training on fewer threads than cores it runs beside the training, as on a GPU machine with "
                "cores to spare; where every core trains, it is taken from the training."
                if spare
                else "; here every core trains, so it is taken from the training."
            )
        )
    )
    return out


def costs_appendix(b, work, footprint):
    out = [heading("Costs in detail")]
    out.append(
        par(
            "The threads and processes each tool runs beside the training (their CPU is the tool's own work): "
            + "; ".join(
                f"{t}: {', '.join(b['trackers'][PREFIX[t]]['default']['threads_and_processes']) or 'none'}"
                for t in TOOLS
            )
            + "."
        )
    )
    if "profile" in b:
        out.append(par(profiled(b["profile"]["neptune_every_step"])))
    rows, top = sweep_rows(b)
    out.append(heading("Under load: more values, faster steps", 2))
    out.append(
        par(
            f"Each tool's tracker (offline) logs {', '.join(f'{k:,}' for k in b['load_sweep']['keys'])} values a call at "
            f"{', '.join(f'{r}' for r in b['load_sweep']['rates'])} "
            f"calls a second for {b['load_sweep']['seconds']:g} s; between calls the thread sleeps, as while a GPU "
            "computes a step. The record is then read back with the tool's own reader. The table is at "
            f"{top} calls a second (a {1000 / top:g} ms step); the figure has every point."
            + (f" This sweep was {b['load_sweep']['measured_apart']}." if b["load_sweep"].get("measured_apart") else "")
        )
    )
    out.append(
        table(
            ["0.8fr", "0.6fr", "0.7fr", "1.1fr", "0.8fr", "0.8fr", "0.8fr", "0.7fr", "1.3fr"],
            [
                "tool",
                "values a call",
                "calls kept up",
                "call, median / p99",
                "background CPU s/s",
                "memory growth; peak",
                "local data",
                "finish",
                "values recorded",
            ],
            rows,
            7,
        )
    )
    path = os.path.join(work, "load.png")
    load_figure(b, path)
    out.append(
        figure(
            path,
            "The load sweep: the caller's time per call (left) and the tool's background CPU "
            "(right), by values per call, at each call rate.",
        )
    )
    out.append(
        par(
            f"The engine itself: {seconds(b['engine_step_s'])} a training step at batch 256 against "
            f"{seconds(b['bare_step_s'])} for a bare PyTorch loop (medians; their ratio "
            f"{b['engine_step_s'] / b['bare_step_s']:.3f}); batched augmentation {b['augment_speedup_vs_pil']:.1f} times the "
            "study's per-image PIL pipeline on one thread."
        )
    )
    if footprint:
        out.append(heading("Disk use of the real run", 2))
        rows = [
            [
                t,
                plural(f["checkpoints"], "file"),
                size(f["checkpoint_bytes"]),
                plural(f["tool_files"], "file"),
                size(f["tool_bytes"]),
                f["what"],
            ]
            for t, f in footprint["tools"].items()
        ]
        out.append(
            table(
                ["0.9fr", "0.8fr", "0.9fr", "0.8fr", "0.9fr", "3fr"],
                ["tool", "checkpoints", "their size", "tool's own data", "its size", "what the tool keeps"],
                rows,
                7.5,
            )
        )
        out.append(
            par(
                f"Measured by report/collect.py on the runs' folders. The virtual environment takes "
                f"{size(footprint['venv_bytes'])}."
                if footprint.get("venv_bytes")
                else "Measured by report/collect.py on the runs' folders."
            )
        )
    return out


def records_section(recs, ev, extras, work, runs):
    out = [heading("What each run stored, seen through each tool")]
    rows = []
    for t in TOOLS:
        r = recs[t]
        rows.append([t, r["dataset"]["kind"], r["dataset"]["version"] or "—", r["dataset"]["hash_note"]])
    out.append(heading("Dataset versions", 2))
    out.append(table(["0.8fr", "1.5fr", "1.6fr", "3fr"], ["tool", "recorded as", "version", "hash"], rows, 7.5))
    out.append(heading("Model versions", 2))
    rows = []
    for t in TOOLS:
        for i, m in enumerate(recs[t]["models"]):
            meta = ", ".join(
                f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in sorted(m["metadata"].items())
            )
            rows.append([t if i == 0 else "", str(i + 1), meta, ", ".join(m["aliases"]) or "—"])
    out.append(par("; ".join(f"{t}: {recs[t]['models_kind']}" for t in TOOLS) + "."))
    out.append(
        table(
            ["0.8fr", "0.5fr", "3.4fr", "2fr"],
            ["tool", "version", "metadata", "aliases (W&B: as each version was logged; MLflow: now)"],
            rows,
            7,
        )
    )
    if extras["leet"]:
        out.append(heading("W&B: the run in wandb leet", 2))
        out.append(
            par(
                "The terminal UI W&B ships for offline runs, on the real run (captured by report/collect.py with tmux):"
            )
        )
        out.append(code_block(extras["leet"]))
    out.append(heading("Neptune: the operation log", 2))
    excerpt = neptune_excerpt(runs)
    out.append(
        par(
            f"Neptune's offline record is {recs['Neptune']['record_format']}. A few of the first segment's "
            "lines: the first step's loss, epoch 1's validation accuracy, the dataset version and the best "
            "model's validation accuracy:"
        )
    )
    out.append(code_block(excerpt))
    ui = os.path.join(runs, "mlflow_ui.png")
    if os.path.isfile(ui):
        out.append(heading("MLflow: the run in MLflow's UI", 2))
        shutil.copy(ui, os.path.join(work, "mlflow_ui.png"))
        out.append(
            figure(
                os.path.join(work, "mlflow_ui.png"),
                "mlflow ui on the local store of the real run, as "
                "headless Chromium showed it (trackers/mlflow_probe.py, show).",
            )
        )
    return out


def neptune_excerpt(runs, width=150):
    from trackers import neptune_record

    lines = []
    for q in sorted(neptune_record.find_queues(os.path.join(runs, "neptune", ".neptune")), key=lambda q: q.created)[:1]:
        for e in q.log.entries:
            op = e["obj"]
            path = "/".join(op["path"])
            if (
                op["type"] == "LogFloats"
                and path in ("val/acc", "epoch", "train/batch_loss")
                and op["values"][0]["step"] in (1, 50)
            ) or path in ("dataset/version", "model/best/val_acc"):
                text = json.dumps({"obj": op, "version": e["version"]})
                lines.append(text if len(text) <= width else text[: width - 3] + "...")
    return "\n".join(lines[:8])


def evaluation_section(recs, ev, facts, work):
    out = [heading("The test evaluation in each record")]
    same = all(np.array_equal(recs["W&B"]["confusion"], recs[t]["confusion"]) for t in TOOLS)
    path = os.path.join(work, "confusion.png")
    confusion_figure(recs["W&B"], path)
    out.append(
        par(
            "Confusion matrix of the best checkpoint on the test set: "
            + "; ".join(f"{t}: {recs[t]['confusion_kind']}" for t in TOOLS)
            + ". "
            + ("Every record holds the same counts." if same else "The records' counts differ.")
        )
    )
    out.append(figure(path, "Test confusion matrix, from W&B's table (rows: true class).", "75%", float=True))
    path = os.path.join(work, "per_class.png")
    per_class_figure(recs, path)
    out.append(figure(path, "Test accuracy per class, from each tool's record."))
    mistakes = recs["W&B"]["mistakes"]
    indices = {t: [m["index"] for m in recs[t]["mistakes"]] for t in TOOLS}
    agree = len({tuple(v) for v in indices.values()}) == 1
    path = os.path.join(work, "mistakes.png")
    mistakes_figure(mistakes, path)
    out.append(
        par(
            f"The {plural(len(mistakes), 'most confident mistake')} of the test set, as W&B's table holds "
            "them (image, test index, true and predicted class, probability). "
            + (
                "The other records hold the same test images in the same order."
                if agree
                else "The other records hold other images."
            )
        )
    )
    out.append(
        figure(
            path, "Most confident mistakes: test index, true class as predicted class (probability).", "88%", float=True
        )
    )
    hist = recs["W&B"]["histograms"]
    if hist:
        names = [n for n in ("parameters/classifier.6.weight", "gradients/classifier.6.weight") if n in hist]
        path = os.path.join(work, "histograms.png")
        histogram_figure(hist, names, path)
        without = [f"{t} {ev.probes[t]['version']}" for t in TOOLS if not rubric.holds(facts, "histograms", t)]
        out.append(
            par(
                f"W&B's weight and gradient histograms: {plural(len(hist), 'tensor')} binned at each epoch's "
                f"end, {plural(len(next(iter(hist.values()))), 'epoch')}; the last linear layer below. "
                + (
                    f"{' and '.join(without)} {'has' if len(without) == 1 else 'have'} no histogram type "
                    "(the rubric's Model visualization)."
                    if without
                    else ""
                )
            )
        )
        out.append(
            figure(
                path,
                "Histograms of the last layer's weights and gradients over the epochs (W&B's record; "
                "colour: log count).",
            )
        )
    return out


def resume_section(recs, torchrun):
    out = [heading("An interrupted run and a torchrun launch, as each tool recorded them")]
    rows = []
    for t in TOOLS:
        for i, seg in enumerate(recs[t]["segments"]):
            ep = seg["epochs"]
            span = (f"epochs {ep[0]}-{ep[-1]}" if len(ep) > 1 else f"epoch {ep[0]}") if ep else "no epoch"
            rows.append(
                [t if i == 0 else "", str(i + 1), seg["id"], f"{span} ({plural(len(ep), 'epoch')})", seg["end"]]
            )
    out.append(
        table(["0.8fr", "0.5fr", "2fr", "1.6fr", "1.6fr"], ["tool", "segment", "id", "epochs recorded", "ended"], rows)
    )
    counts = {t: sorted(e["epoch"] for e in recs[t]["epochs"]) for t in TOOLS}
    once = all(c == list(range(1, len(c) + 1)) for c in counts.values())
    out.append(
        par(
            "; ".join(f"{t}: {recs[t]['segments_note']}" for t in TOOLS)
            + ". "
            + ("Each record holds every epoch exactly once." if once else "Some epoch is missing or repeated.")
        )
    )
    if torchrun:
        rows = [
            [t, str(v["processes"]), plural(v["runs"], "run"), ", ".join(map(str, v["epochs"]))]
            for t, v in torchrun["tools"].items()
        ]
        one = [t for t, v in torchrun["tools"].items() if v["runs"] == 1]
        out.append(
            par(
                f"torchrun --standalone --nproc_per_node {torchrun['processes']} with each script "
                f"({torchrun['args']}), run by report/collect.py: "
                + (f"{', '.join(one)}: one tracker run per launch." if one else "more than one run per launch.")
            )
        )
        out.append(
            table(["1fr", "1fr", "1fr", "2fr"], ["tool", "processes", "tracker runs created", "epochs recorded"], rows)
        )
    restarted = (torchrun or {}).get("restarted")
    if restarted:
        tools = restarted["tools"]
        rows = [
            [
                t,
                plural(v["runs"], "run"),
                str(v["segments"]),
                ", ".join(map(str, v["epochs"])),
                str(v["model_versions"]),
                str(v["exit_code"]),
                str(v["tracebacks"]),
            ]
            for t, v in tools.items()
        ]
        whole = [
            t
            for t, v in tools.items()
            if v["runs"] == 1
            and v["epochs"] == sorted(set(v["epochs"]))
            and v["exit_code"] == 0
            and v["tracebacks"] == 0
        ]
        out.append(
            par(
                f"The same launch restarted: {restarted['killed']}; torchrun ({restarted['launch']}) stopped "
                "the other worker and started both again with the same command line, which continued from the "
                "last resume state. "
                + (
                    f"{', '.join(whole)}: one tracker run, each epoch recorded once, exit 0, no traceback."
                    if whole
                    else "No tool kept it as one run with each epoch once."
                )
                + " Segments are the parts a tool keeps apart (W&B: one offline log per process start, "
                "Neptune: one offline queue; MLflow and Trackio continue the same run)."
            )
        )
        out.append(
            table(
                ["0.8fr", "0.8fr", "0.7fr", "1fr", "0.9fr", "0.6fr", "0.8fr"],
                ["tool", "tracker runs", "segments", "epochs recorded", "model versions", "exit", "tracebacks"],
                rows,
            )
        )
    return out


SEARCHED = ("lr", "weight_decay", "label_smoothing", "warmup_epochs")


def search_trials(recs):
    """Each tool's trials by number, and whether the three records agree on every trial."""
    trials = {t: recs[t]["search"]["trials"] for t in TOOLS}
    numbers = sorted(trials["W&B"])
    agree = all(sorted(trials[t]) == numbers for t in TOOLS) and all(
        trials[t][n]["params"] == trials["W&B"][n]["params"]
        and trials[t][n]["state"] == trials["W&B"][n]["state"]
        and np.allclose(trials[t][n]["val_acc"], trials["W&B"][n]["val_acc"])
        for t in TOOLS
        for n in numbers
    )
    return trials, numbers, agree


def importances(trials):
    """fANOVA importances of the searched parameters for the validation accuracy at the last epoch
    every trial reached (a pruned trial has no final value), from one record's trials (Optuna's
    evaluator on a study rebuilt from the record); None where fewer than two trials reached it."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    reached = [t for t in trials.values() if t["val_acc"] and all(np.isfinite(t["val_acc"]))]
    if len(reached) < 2:
        return None
    epoch = min(len(t["val_acc"]) for t in reached)
    low = {k: min(t["params"][k] for t in reached) for k in SEARCHED}
    dists = {
        k: optuna.distributions.FloatDistribution(
            low[k], max(t["params"][k] for t in reached) + 1e-12, log=k in ("lr", "weight_decay") and low[k] > 0
        )
        for k in SEARCHED
    }
    study = optuna.create_study(direction="maximize")
    study.add_trials(
        [
            optuna.trial.create_trial(params=t["params"], distributions=dists, value=t["val_acc"][epoch - 1])
            for t in reached
        ]
    )
    ranked = optuna.importance.get_param_importances(
        study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0)
    )
    return {"epoch": epoch, "trials": len(reached), **ranked}


def search_figure(trials, numbers, agree, path):
    from matplotlib.lines import Line2D

    pyplot = plt()
    fig, (left, right) = pyplot.subplots(1, 2, figsize=(7.2, 2.8))
    for tool in TOOLS:
        _, style, ms = STYLES[tool]
        best, so_far = [], 0.0
        for n in numbers:
            so_far = max(so_far, max(trials[tool][n]["val_acc"], default=0.0))
            best.append(so_far)
        left.plot(numbers, best, style, color=COLORS[tool], ms=ms, lw=2, label=tool)
    left.set(xlabel="trial", ylabel="best validation accuracy so far", title="Optimization history")
    left.legend(fontsize=7)
    ends = {"complete": ("-", "tab:green"), "pruned": ("--", "tab:gray"), "failed": (":", "tab:red")}
    for n in numbers:
        t = trials["W&B"][n]
        style, color = ends.get(t["state"], (":", "black"))
        right.plot(range(1, len(t["val_acc"]) + 1), t["val_acc"], style, color=color, marker="o", ms=2.5, lw=1)
    seen = sorted(
        {trials["W&B"][n]["state"] for n in numbers if trials["W&B"][n]["state"] in ends}, key=list(ends).index
    )
    right.legend(
        handles=[Line2D([], [], ls=ends[e][0], color=ends[e][1], marker="o", ms=2.5, label=e) for e in seen], fontsize=7
    )
    right.set(
        xlabel="epoch",
        ylabel="validation accuracy",
        title="Each trial (W&B's record" + ("; the others equal)" if agree else ")"),
    )
    epoch_axis(right)
    for ax in (left, right):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    pyplot.close(fig)


def made_at(made):
    """ ", at commit C" for runs all made at one commit; per tool where they differ; "" where none is known."""
    commits = {
        t: m["commit"][:10] + (" with local changes" if m.get("changed_files") else "")
        for t, m in made.items()
        if m.get("commit")
    }
    if not commits:
        return ""
    if len(set(commits.values())) == 1 and set(commits) == set(TOOLS):
        return f", at commit {next(iter(commits.values()))}"
    return ", at commits " + ", ".join(f"{c} ({t})" for t, c in commits.items())


def search_section(recs, ev, facts, default, work):
    out = [heading("A hyperparameter search in each tool", 1, "sec-search")]
    trials, numbers, agree = search_trials(recs)
    sweep = ev.probes["W&B"]["sweep_offline"]
    if default:
        c = default["config"]
        ran = {t: sum(trials[t][n]["duration_s"] or 0 for n in numbers) for t in TOOLS}
        out.append(
            par(
                f"The searches: each script with --search {len(numbers)} --train-size {c['train_size']} --epochs "
                f"{c['epochs']} --batch-size {c['batch_size']} (seed {c['seed']}; CIFAR-10, the shared JPEG-derived copy: "
                f"{round(c['train_size'] * (1 - c['val_fraction'])):,} training and {round(c['train_size'] * c['val_fraction']):,} "
                f"validation images; offline), one after another on {c.get('cpu_count', '?')} CPU cores ({c.get('cpu', c.get('device_name'))}), "
                f"no GPU{made_at(default.get('made', {}))}; their trials took "
                + ", ".join(f"{t} {seconds(ran[t])}" for t in TOOLS)
                + " in all."
            )
        )
    out.append(
        par(
            f"Each script ran --search {len(numbers)} with the same flags and seed: an Optuna study (TPE sampler "
            "seeded by --seed and the trial's number, median pruner from epoch 2) over the peak learning rate and the "
            "weight decay (log scales), label smoothing and warmup, each trial trained by the same engine and recorded "
            "as a run. Offline, Optuna is the search engine of every tool: W&B Sweeps need a W&B server (wandb.sweep "
            f"offline: {sweep['said']}). How each tool grouped the search: "
            + "; ".join(f"{t}: {recs[t]['search']['grouping']}" for t in TOOLS)
            + ". "
            + (
                "The records hold the same trials: the same parameters, validation accuracies by epoch and "
                "ends, as the main job's records agree."
                if agree
                else "The records differ (see the table)."
            )
        )
    )
    rows = []
    for n in numbers:
        t = trials["W&B"][n]
        rows.append(
            [
                str(n),
                *(f"{t['params'][k]:.3g}" for k in SEARCHED),
                " ".join(f"{v:.3f}" for v in t["val_acc"]),
                t["state"] or "none",
                *(seconds(trials[tool][n]["duration_s"]) if trials[tool][n]["duration_s"] else "—" for tool in TOOLS),
            ]
        )
    out.append(
        table(
            ["0.5fr", "0.8fr", "0.9fr", "0.9fr", "0.8fr", "2fr", "0.9fr", *["0.8fr"] * len(TOOLS)],
            [
                "trial",
                "peak lr",
                "weight decay",
                "label smoothing",
                "warmup epochs",
                "validation accuracy by epoch",
                "end",
                *(f"time in {t}" for t in TOOLS),
            ],
            rows,
            7,
        )
    )
    path = os.path.join(work, "search.svg")
    search_figure(trials, numbers, agree, path)
    out.append(
        figure(
            path,
            "The search as each tool recorded it: the best validation accuracy after each trial "
            "(left) and each trial's validation accuracy by epoch, by how the trial ended (right).",
        )
    )
    ranked = {t: importances(trials[t]) for t in TOOLS}
    if all(ranked.values()):
        r = ranked["W&B"]
        out.append(
            par(
                f"Parameter importances (Optuna's fANOVA, seed 0) from each record, for the validation "
                f"accuracy at epoch {r['epoch']}, the last that all {r['trials']} trials reached (a pruned "
                "trial has no final value); from so few trials they rank rather than measure:"
            )
        )
        out.append(
            table(
                ["1.2fr", *["1fr"] * len(TOOLS)],
                ["parameter", *TOOLS],
                [[k, *(f"{ranked[t][k]:.2f}" for t in TOOLS)] for k in SEARCHED],
            )
        )
    studies = {t: recs[t]["search"]["studies"][0] for t in TOOLS}
    best = studies["W&B"]["best"]
    line = (
        f"Each tool's study record names trial {best} best ("
        + ", ".join(f"{t} {studies[t]['best']}" for t in TOOLS)
        + f"), at validation accuracy {pct(studies['W&B']['best_val_acc'])}."
    )
    if default:
        gap = 100 * (studies["W&B"]["best_val_acc"] - max(default["val_acc"]))
        ends = [trials["W&B"][n]["state"] for n in numbers]
        pruned = sum(e == "pruned" for e in ends)
        line += (
            f" The default recipe trained with the same flags reached {pct(max(default['val_acc']))} (its best "
            f"epoch; test {pct(default['summary']['test/acc'])}): the search "
            + (
                f"beat it, by {gap:.1f} points."
                if gap > 0
                else f"did not beat it (its best trial is {abs(gap):.1f} points below). Its {len(numbers)} trials "
                f"sample a space around the recipe, which was itself fitted to this budget by its own rules; "
                f"{pruned} of them were stopped by the pruner at an early epoch, where the recipe's warmup still "
                "holds the rate low, and the sampler's first trials are random draws."
            )
        )
    out.append(par(line))
    cost = {}
    for tool in TOOLS:
        done = [t for t in trials[tool].values() if t["duration_s"]]
        cost[tool] = (sum(t["duration_s"] for t in done) / sum(len(t["val_acc"]) for t in done), len(done))
    line = (
        "Cost per trial, from the durations each record holds (training, validation, the test evaluation of "
        "a finished trial, the tracker's opening and closing): "
        + "; ".join(f"{t} {seconds(cost[t][0])} per epoch trained ({cost[t][1]} trials)" for t in TOOLS)
    )
    if default:
        untracked = sum(default["epoch_time_s"]) / len(default["epoch_time_s"])
        line += (
            f"; the default recipe's epochs without a tracker took {seconds(untracked)} of training each. These are "
            "single searches, one tool after another, on a shared machine whose other work slows some more than "
            'others: they do not measure what a tool costs ("What each tool costs" measures that side by side).'
        )
    out.append(par(line))
    if default and default.get("neptune_plots", {}).get("files"):
        plots = default["neptune_plots"]
        out.append(
            par(
                f"Neptune's study run holds Optuna's plots as {plots['files']} HTML pages, "
                f"{size(plots['bytes'] / plots['files'])} each (plotly.js inside each page), "
                f"{size(plots['bytes'])} in all (left out of the committed evidence)."
            )
        )
    viewer = {t: facts["local_viewer"][t] for t in TOOLS}
    out.append(
        par(
            "What each tool shows of the search offline: "
            + "; ".join(
                f"{t}: {'a local viewer' if v and v[0] else 'no local viewer'} ({v[1] if v else 'no evidence'})"
                for t, v in viewer.items()
            )
            + ". The integrations, probed with a complete, a pruned and a failed trial: "
            + "; ".join(f"{t}: {ev.probes[t]['optuna_study']['said']}" for t in TOOLS)
            + "."
        )
    )
    return out


def closing(recs, ev, facts):
    out = [heading("Leaving Neptune", 1, "sec-neptune")]
    ext = ev.external["hosted_service"]["Neptune"]
    targets = [t for t in TOOLS if rubric.holds(facts, "export_target", t)]
    out.append(
        par(
            f"neptune.ai's hosted app is gone: {ext['says']} ({ext['source']}, checked {ext['checked']}). The "
            "Neptune client still records offline and to a self-hosted Neptune server, but a run recorded "
            "offline, or still queued on disk, has nowhere else to go: Neptune's neptune-exporter reads a live "
            "server. This repository's neptune_export.py reads the local queue and writes each run into "
            + " or ".join(targets)
            + ", the segments of a resumed run as one run; its tests show the export equal to the native runs of the "
            "same job (docs/neptune-export.md). The appendix shows it on this report's Neptune run."
        )
    )
    return out


def main():
    p = argparse.ArgumentParser(
        description="Build the tracker comparison report from each tool's offline run of one job."
    )
    p.add_argument(
        "--runs", default=EVIDENCE, help="holds a folder per tool, named by its key (default: report/evidence)"
    )
    p.add_argument(
        "--cost-tables",
        action="store_true",
        help="print docs/costs.md's tables from the benchmark (default: report/evidence/benchmark.json)",
    )
    p.add_argument(
        "--headline",
        action="store_true",
        help="print the README's headline table from the records in --runs and the benchmark",
    )
    p.add_argument(
        "--bench",
        default=None,
        help="benchmarks/run.py --json output (default: RUNS/benchmark.json if "
        "there; without one the costs are left out)",
    )
    p.add_argument(
        "--pdf",
        default=None,
        help="where to write the PDF (default: report/report.pdf from the evidence, else RUNS/report.pdf)",
    )
    a = p.parse_args()
    if a.cost_tables or a.headline:
        try:
            bench = read_benchmark(a.bench or os.path.join(a.runs, "benchmark.json"))
            if a.cost_tables:
                print(cost_tables(bench), end="")
            else:
                ev = evidence(a.runs, bench)
                print(headline(ev.records, evaluate(ev)[1], bench), end="")
        except (OSError, BenchmarkError) as e:
            sys.exit(f"error: {e}")
        return
    for tool in trackers.TOOLS:
        if not os.path.isdir(os.path.join(a.runs, tool.key)):
            sys.exit(
                f"error: {os.path.join(a.runs, tool.key)} not found: run `make run` first (see docs/quickstart.md)"
            )
    if a.bench and not os.path.isfile(a.bench):
        sys.exit(f"error: {a.bench} not found: run `make benchmark` first")
    pdf = a.pdf or (
        os.path.join(HERE, "report.pdf") if os.path.abspath(a.runs) == EVIDENCE else os.path.join(a.runs, "report.pdf")
    )
    try:
        build(a.runs, pdf, a.bench)
    except BenchmarkError as e:
        sys.exit(f"error: {e}")
    print(f"wrote {pdf}")


if __name__ == "__main__":
    main()
