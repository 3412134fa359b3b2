"""Build the comparison report (report/report.pdf) from the runs in --out-dir and a benchmark.

    python report/build.py --out-dir runs --bench runs/benchmark.json

--out-dir holds the two runs of the same job as `make run` writes them: wandb/ (W&B offline)
and neptune/ (Neptune offline). Every number in the report is read from those records (each
tool's own, not the engine's), from the benchmark's JSON, or from probes of the installed clients.
"""
import argparse
import json
import os
import sys
import tempfile
import textwrap
import time

import matplotlib
import numpy as np

matplotlib.use("Agg")
from matplotlib import pyplot as plt  # noqa: E402
from matplotlib.backends.backend_pdf import PdfPages  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import records  # noqa: E402
from tracking import first_line  # noqa: E402

A4 = (8.27, 11.69)
SECTIONS = ["1. What was compared and how", "2. The nine criteria", "3. Offline capability matrix",
            "4. Measured cost", "5. Training results from each tool's records", "6. Which tool for whom, in 2026"]
W_COLOR, N_COLOR = "#d9a400", "#1f5fbf"


def probe_offline(work):
    """Ask the installed clients, in offline mode, for what the matrix claims they refuse."""
    import neptune
    import wandb
    found = {}
    os.environ["NEPTUNE_DATA_DIRECTORY"] = os.path.join(work, ".neptune")
    try:
        neptune.init_model(key="PROBE", project="probe/probe", mode="offline")
        found["neptune_registry"] = "accepted"
    except Exception as e:
        found["neptune_registry"] = f"{type(e).__name__}: {first_line(e)}"
    run = wandb.init(mode="offline", dir=work, project="probe", settings=wandb.Settings(silent=True))
    try:
        run.use_artifact("dataset:latest")
        found["wandb_use_artifact"] = "accepted"
    except Exception as e:
        found["wandb_use_artifact"] = f"{type(e).__name__}: {first_line(e)}"
    run.finish()
    found["versions"] = {"wandb": wandb.__version__, "neptune": neptune.__version__}
    return found


class Report:
    def __init__(self, pdf):
        self.pdf, self.page = pdf, 0

    def new_page(self, title=None):
        self.page += 1
        fig = plt.figure(figsize=A4)
        fig.text(0.5, 0.025, f"W&B vs Neptune on AlexNet/CIFAR-10 - page {self.page}", ha="center", size=7, color="grey")
        if title:
            fig.text(0.07, 0.95, title, size=15, weight="bold")
        return fig

    def save(self, fig):
        self.pdf.savefig(fig)
        plt.close(fig)

    @staticmethod
    def text(fig, y, paragraphs, size=9.5, width=98, x=0.07, gap=0.6):
        """Wrapped paragraphs from height y down; returns the height below them."""
        line = size / 72 / A4[1] * 1.45
        for para in paragraphs:
            bold = para.startswith("## ")
            wrapped = textwrap.wrap(para[3:] if bold else para, width=width) or [""]
            for text in wrapped:
                fig.text(x, y, text, size=size + (1.5 if bold else 0), weight="bold" if bold else "normal", va="top",
                         family="monospace" if para.startswith("    ") else "sans-serif")
                y -= line
            y -= line * gap
        return y

    @staticmethod
    def table(fig, top, columns, rows, widths, size=7.5, header_color="#e8e8e8"):
        """A table whose cells wrap to their column's width in characters; returns the height below it."""
        line = size / 72 / A4[1] * 1.35
        x0, total = 0.07, 0.86
        scale = total / sum(widths)
        y = top
        for r, row in enumerate([columns] + rows):
            # ~9/size characters per width unit; bold (header, first column) is wider
            cells = [textwrap.wrap(str(c), width=max(4, int(w * 9 / size * (0.85 if r == 0 or k == 0 else 1))))
                     or [""] for k, (c, w) in enumerate(zip(row, widths))]
            height = max(len(c) for c in cells) * line + line * 0.6
            x = x0
            for c, (lines, w) in enumerate(zip(cells, widths)):
                fig.patches.append(plt.Rectangle((x, y - height), w * scale, height, transform=fig.transFigure,
                                                 fill=r == 0, facecolor=header_color, edgecolor="#999999", lw=0.5))
                for k, text in enumerate(lines):
                    fig.text(x + 0.005, y - line * (0.35 + k) - line * 0.3, text, size=size, va="top",
                             weight="bold" if r == 0 or c == 0 else "normal")
                x += w * scale
            y -= height
        return y - 0.015


def pct(ratio):
    return f"{(ratio - 1) * 100:+.1f}%"


class BenchmarkError(Exception):
    """The benchmark file is empty or incomplete (a stopped benchmark)."""


BENCH_KEYS = ("hardware", "engine_vs_bare_step_ratio", "wandb_overhead_ratio", "neptune_overhead_ratio",
              "wandb_start_s", "neptune_start_s", "wandb_local_bytes_per_run", "wandb_log_call_ms",
              "augment_speedup_vs_pil")


def read_benchmark(path):
    """The last JSON line of benchmarks/run.py --json output, with every figure the report uses."""
    with open(path) as f:
        lines = [line for line in f.read().splitlines() if line.strip().startswith("{")]
    try:
        bench = json.loads(lines[-1])
    except (IndexError, ValueError):
        raise BenchmarkError(f"{path} holds no benchmark result (a stopped or failed run?): run "
                             "`make benchmark` again") from None
    missing = [k for k in BENCH_KEYS if k not in bench]
    if missing:
        raise BenchmarkError(f"{path} is an incomplete benchmark (no {', '.join(missing)}): run `make benchmark` again")
    return bench


def build(out_dir, bench_path, pdf_path):
    """The report of the runs in out_dir; without a benchmark (bench_path None) its costs are left out."""
    w = records.read_wandb(os.path.join(out_dir, "wandb"))
    n = records.read_neptune(os.path.join(out_dir, "neptune"))
    bench = read_benchmark(bench_path) if bench_path else None
    probes = probe_offline(tempfile.mkdtemp(prefix="probe-"))
    cfg, hw = w["config"], (bench or {}).get("hardware", {"cpu": w["config"].get("cpu"), "cpu_count": w["config"].get("cpu_count"), "device": w["config"].get("device")})
    data_source = next(json.loads(a["metadata"]) for a in w["dataset_artifacts"])["source"]
    shared_copy = "checksums not verified" in data_source
    os.makedirs(os.path.dirname(os.path.abspath(pdf_path)), exist_ok=True)
    with PdfPages(pdf_path) as pdf:
        rep = Report(pdf)
        overview(rep, w, n, cfg, hw, probes, data_source, shared_copy)
        criteria(rep, w, n, bench, probes)
        what_was_stored(rep, w, n)
        offline_matrix(rep, w, n, probes)
        if bench:
            costs(rep, bench)
        curves(rep, w, n)
        evaluation(rep, w, n)
        verdict(rep, w, n, bench)
        info = pdf.infodict()
        info["Title"] = "Weights & Biases vs Neptune, 2026: one AlexNet/CIFAR-10 job tracked twice"
    return {"pages": rep.page, "wandb": w, "neptune": n, "bench": bench}


def overview(rep, w, n, cfg, hw, probes, data_source, shared_copy):
    fig = rep.new_page()
    fig.text(0.07, 0.93, "Weights & Biases vs Neptune, 2026", size=20, weight="bold")
    fig.text(0.07, 0.905, "One AlexNet/CIFAR-10 training job, tracked twice, compared from what each tool stored",
             size=11, color="#444444")
    fig.text(0.07, 0.885, f"Built {time.strftime('%Y-%m-%d')} by report/build.py from the runs and a benchmark "
                          "in this repository", size=8, color="grey")
    epochs = len(w["epochs"])
    data_line = (f"The data is the shared JPEG-derived copy of CIFAR-10 (re-encoded images; per-channel means "
                 f"agree with the official release to 4 decimals, standard deviations are about 1% lower), loaded "
                 f"with --skip-checksum: {data_source}." if shared_copy else f"Data: {data_source}.")
    rep.text(fig, 0.85, [
        "## " + SECTIONS[0],
        f"The job: the original study's CIFAR-10 AlexNet (5 convolutions, 3 linear layers, "
        f"{cfg['model_params']:,} parameters), trained with the '{cfg['recipe']}' recipe: {cfg['optimizer']} "
        f"at lr {cfg['lr']}, batch {cfg['batch_size']}, {cfg['warmup_epochs']} warmup epoch(s), {cfg['schedule']} "
        f"schedule, label smoothing {cfg['label_smoothing']}, seed {cfg['seed']}, {cfg['val_fraction']:.0%} of the "
        f"training images held out for validation, {cfg['epochs']} epochs"
        + (f" on a {cfg['train_size']:,}-image subset of the training set" if cfg.get("train_size") else "") + ".",
        data_line,
        f"The same job ran twice from the same command line and seed: once with wandb_setup_script.py (W&B client "
        f"{probes['versions']['wandb']}), once with neptune_integration.py (Neptune client "
        f"{probes['versions']['neptune']}), both in offline mode on {cfg['device']} ({cfg['device_name']}, "
        f"{cfg['cpu_count']} cores), torch {cfg['torch_version']}. Both scripts drive one training engine through the "
        "same tracker interface, so a difference between the two runs is a difference between the tools. Each run "
        f"recorded {epochs} epochs (W&B: {w['segments']} log segment(s), Neptune: {n['segments']}).",
        "Everything below is read back from each tool's own local records: W&B's .wandb transaction log through "
        "its official reader (wandb leet inspect --json) and Neptune's offline operation log (JSON lines under "
        ".neptune/). The costs come from benchmarks/run.py, run on one machine in one process: "
        f"{hw['cpu']}, {hw['cpu_count']} cores.",
        "## What changed since the original study",
        "neptune.ai's hosted app closed on 2026-03-05 and its data was deleted. The Neptune client (1.14) still "
        "works offline and against self-hosted Neptune servers; its model registry is deprecated and refuses "
        f"offline mode (asked now: \"{probes['neptune_registry']}\"). W&B refuses use_artifact offline (asked now: "
        f"\"{probes['wandb_use_artifact']}\"), so an offline run can produce a dataset version but not consume one. "
        "Neptune's offline mode records the path of an uploaded file, not its content: a file changed before "
        "`neptune sync` uploads the changed bytes, so every checkpoint here is its own, never rewritten file.",
        "## How to read the ratings",
        "The original study rated each tool 1-3 on nine criteria from impressions. Here the scale is the same "
        "(1: does not have it, 2: satisfactory, 3: works well and is easy), and every rating states the evidence "
        "that earns it: what the runs stored, what the clients refused, and what was measured.",
    ])
    rep.save(fig)


def criteria(rep, w, n, bench, probes):
    wm, nm = w["model_artifacts"], n["checkpoints"]
    w_ds = w["dataset_artifacts"][0]
    refs = [e for e in w_ds["manifest"]["contents"] if e.get("ref")]
    hashed = sum(1 for _, h in n["tracked_files"] if h)
    rows = [
        ["Dataset versioning", 3, 2,
         f"W&B: a 'dataset' artifact, digest {w_ds['digest'][:12]}, over dataset.json and {len(refs)} data files "
         f"checksummed in place (md5 per file in the manifest) - computed offline. Neptune: track_files recorded "
         f"{len(n['tracked_files'])} paths, {hashed} with a hash: offline the artifact hash is only computed at "
         f"`neptune sync`, so a file changed before sync changes the version; dataset/version field "
         f"{n['dataset'].get('version')}. W&B cannot use_artifact offline (lineage needs a server)."],
        ["Model versioning", 3, 2,
         f"W&B: {len(wm)} 'model' artifact versions with aliases ({', '.join(sorted(set(a for m in wm for a in m['aliases'])))}) "
         f"and metadata (epoch, val acc, test acc on the final); the registry link needs a server. Neptune: "
         f"{len(nm)} checkpoint uploads under model/checkpoints/ plus model/best and model/final fields; the model "
         "registry is deprecated and refuses offline mode, and offline uploads record paths, not bytes."],
        ["Collaboration", 3, 1,
         "Both share runs only through a server. W&B: hosted service and self-hosted server, teams, `wandb sync` "
         "of offline runs. Neptune: the hosted app closed on 2026-03-05; sharing now needs running your own "
         "Neptune server, and offline segments of one resumed run arrive as separate runs."],
        ["Framework integration", 3, 2,
         f"PyTorch: W&B recorded gradient and parameter histograms {w['histogram_logs']} times (wandb.watch's "
         f"histograms, binned by the script once an epoch); Neptune's core client has no histogram type. Both took the "
         f"same tracker interface in one file; both run under torchrun with one run per launch."],
        ["Report generation and management", 2, 1,
         "Neither builds a report offline: this PDF is built from their records by report/build.py. W&B Reports "
         "and Neptune dashboards live on a server; W&B's remains available as a service, Neptune's needs a "
         "self-hosted server."],
        ["Model visualization", 3, 2,
         f"W&B: native confusion matrix (wandb.plot.confusion_matrix), per-class bar chart, a table of the "
         f"{w['mistakes']} most confident mistakes with images, gradient histograms. Neptune: a confusion-matrix "
         f"figure (rendered here with matplotlib), per-class fields, {n['mistakes']} mistake images with "
         "descriptions; no histograms."],
        ["Understandability", 3, 3,
         "W&B: the offline log is binary but its official reader prints every record as JSON and `wandb leet` "
         "shows the run in a terminal. Neptune: the offline log is plain JSON lines, one operation per line, "
         "readable with any tool. Both use the same metric names here, so the two records read alike."],
        ["Usability", 3, 2,
         (f"Start: W&B {bench['wandb_start_s']:.1f} s, Neptune {bench['neptune_start_s']:.1f} s; finish: "
          f"{bench['wandb_finish_s']:.1f} s and {bench['neptune_finish_s']:.1f} s. " if bench else
          "Start and finish times: not measured (no benchmark given). ") + "W&B: API key from "
         "https://wandb.ai/authorize, works without a server of your own. Neptune: token from the app's user "
         "menu, a workspace/project name, and in 2026 a server you run yourself; `neptune sync` needs "
         "setuptools<81 for pkg_resources."],
        ["Debuggability", 3, 2,
         f"Both captured the console (W&B {w['console_records']} console records, Neptune {n['console_lines']} "
         f"stdout/stderr lines) and system metrics (W&B {w['system_metric_records']} samples, Neptune "
         f"{n['hardware_points']} CPU/memory points); Neptune also uploaded the source files. A failed run is "
         "marked failed by both. Interrupted and resumed offline, W&B's segments merge on sync by run id; "
         "Neptune's do not (custom_run_id is not kept offline)."],
    ]
    for part, chunk in ((1, rows[:5]), (2, rows[5:])):
        fig = rep.new_page(f"{SECTIONS[1]} ({part}/2)")
        y = 0.92
        if part == 1:
            y = rep.text(fig, y, ["Scale: 1 does not have it, 2 satisfactory, 3 works well and is easy. "
                                  "Evidence: what the offline runs of the same job stored, what the clients "
                                  "refused, and the benchmark."])
        rep.table(fig, y, ["Criterion", "W&B", "Neptune", "Evidence (from the runs and measurements)"],
                  [[c, str(a), str(b), e] for c, a, b, e in chunk], [20, 6, 9, 65], size=8)
        if part == 2:
            total_w, total_n = sum(r[1] for r in rows), sum(r[2] for r in rows)
            fig.text(0.07, 0.12, f"Total over the nine criteria: W&B {total_w} / 27, Neptune {total_n} / 27.",
                     size=11, weight="bold")
        rep.save(fig)


def what_was_stored(rep, w, n):
    fig = rep.new_page("What each run stored: versions")
    rows = []
    for a in w["dataset_artifacts"] + w["model_artifacts"]:
        meta = json.loads(a.get("metadata") or "{}")
        detail = (f"version {meta.get('version')}, {meta.get('train_size')} train / {meta.get('val_size')} val / "
                  f"{meta.get('test_size')} test" if a["type"] == "dataset" else
                  f"epoch {meta.get('epoch')}, val acc {meta.get('val_acc', 0):.4f}"
                  + (f", test acc {meta['test_acc']:.4f}" if "test_acc" in meta else ""))
        rows.append([f"{a['type']} {a['name']}", a["digest"][:16], ", ".join(a["aliases"]), detail])
    y = rep.text(fig, 0.92, ["## W&B artifacts (from the .wandb log)"])
    y = rep.table(fig, y, ["Artifact", "Digest", "Aliases", "Metadata"], rows[:14], [30, 18, 22, 34], size=7)
    y = rep.text(fig, y - 0.01, ["## Neptune fields and uploads (from the operation log)"])
    nrows = [[p, os.path.basename(f or "")] for p, f in n["checkpoints"]][:12]
    nrows += [["model/best", json.dumps(n["model_best"])[:80]], ["model/final", json.dumps(n["model_final"])[:80]],
              ["dataset/files (track_files)", f"{len(n['tracked_files'])} paths; hashes recorded offline: "
                                              f"{sum(1 for _, h in n['tracked_files'] if h)}"],
              ["dataset/version", str(n["dataset"].get("version"))]]
    rep.table(fig, y, ["Field", "Value (uploads: the recorded file path)"], nrows, [35, 69], size=7)
    rep.save(fig)


def offline_matrix(rep, w, n, probes):
    works, server, none = "works offline", "needs a server", "unavailable"
    hashed = sum(1 for _, h in n["tracked_files"] if h)
    rows = [
        ["Config, metrics, summary", works, works, f"{len(w['epochs'])} / {len(n['epochs'])} epochs recorded"],
        ["System metrics", works, works, f"{w['system_metric_records']} W&B samples; {n['hardware_points']} Neptune points"],
        ["Console capture", works, works, f"{w['console_records']} / {n['console_lines']} records"],
        ["Dataset version (hash)", works, server if not hashed else works,
         f"W&B digest {w['dataset_artifacts'][0]['digest'][:12]} offline; Neptune track_files: {hashed} of "
         f"{len(n['tracked_files'])} hashed offline (at sync otherwise)"],
        ["Dataset lineage (use a version)", server, none, f"W&B offline: {probes['wandb_use_artifact']}"],
        ["Model versions", works, works + " (paths only)",
         f"{len(w['model_artifacts'])} W&B artifacts; {len(n['checkpoints'])} Neptune uploads by path"],
        ["Model registry", server, none, f"Neptune offline: {probes['neptune_registry']}"],
        ["Confusion matrix, image tables", works, works, f"W&B table of {w['mistakes']}; Neptune {n['mistakes']} images"],
        ["Gradient histograms", works, none, f"wandb.Histogram: {w['histogram_logs']} logs; no Neptune 1.14 equivalent"],
        ["Resume the same run", works + " (merged at sync)", server,
         "W&B segments share the run id; Neptune keeps no custom_run_id offline: segments sync as separate runs"],
        ["Local viewer", works, none, "`wandb leet` (terminal UI); Neptune's UI is its server"],
        ["Sharing, reports, dashboards", server, server, "hosted W&B, or a self-hosted server of either"],
    ]
    fig = rep.new_page(SECTIONS[2])
    y = rep.text(fig, 0.92, ["Each cell is established by the offline runs of this report (the records they left) or "
                             "by asking the installed client now, in offline mode."])
    y = rep.table(fig, y, ["Feature", "W&B 0.31", "Neptune 1.14", "How it was established"], rows, [24, 17, 17, 46])
    colors = {works: "#2e7d32", server: "#ef6c00", none: "#c62828"}
    rep.text(fig, y, [f"{k}: " + {works: "recorded locally, syncs later", server: "recorded only with a server",
                                  none: "not available in this client"}[k] for k in colors], size=8)
    rep.save(fig)


def costs(rep, b):
    fig = rep.new_page(SECTIONS[3])
    hw = b["hardware"]
    y = rep.text(fig, 0.92, [
        f"Measured by benchmarks/run.py{' --quick' if b.get('quick') else ''} on {hw['cpu']} ({hw['cpu_count']} cores, "
        f"{hw['device']}), in one process, variants alternated, medians of repeats. Training time is the engine's "
        "epoch time with the tracker offline divided by the same run with no tracker."])
    rows = [
        ["Logging call (one float), offline", f"{b['wandb_log_call_ms']:.3f} ms", f"{b['neptune_log_call_ms']:.3f} ms"],
        ["Run start (init, config)", f"{b['wandb_start_s']:.2f} s", f"{b['neptune_start_s']:.2f} s"],
        ["Epoch end (metrics, histograms, model version)", f"{b['wandb_epoch_end_s']:.2f} s",
         f"{b['neptune_epoch_end_s']:.2f} s"],
        ["Run finish (flush, close)", f"{b['wandb_finish_s']:.2f} s", f"{b['neptune_finish_s']:.2f} s"],
        ["Training time, log every 50 steps", pct(b["wandb_overhead_ratio"]), pct(b["neptune_overhead_ratio"])],
        ["Training time, log every step", pct(b["wandb_overhead_ratio_every_step"]),
         pct(b["neptune_overhead_ratio_every_step"])],
        ["Local run data (benchmark run)", f"{b['wandb_local_bytes_per_run'] / 1e6:.2f} MB, {b['wandb_local_files_per_run']} files",
         f"{b['neptune_local_bytes_per_run'] / 1e6:.2f} MB, {b['neptune_local_files_per_run']} files"],
    ]
    y = rep.table(fig, y, ["Measure", "W&B", "Neptune"], rows, [46, 29, 29], size=8.5)
    y = rep.text(fig, y, [
        "Training time includes each client's background work (W&B's service process, Neptune's "
        "hardware-metrics and console-capture threads). The overhead runs use batch 64 so that steps are short: "
        "at the real batch of 256 the same absolute cost is a smaller share. "
        f"Runs with no tracker differed by up to {b['overhead_run_spread']:.1%} among themselves: a ratio within "
        "that of 1 is no measurable cost. The epoch-end calls come once an epoch (about 100 s on these 2 cores): "
        "W&B hashes and stages the new model version and bins its gradient and parameter histograms (the script "
        "does what wandb.watch would, once an epoch); Neptune records the file's path. Start and finish are "
        "medians over repeated runs in one process, after each client has started its background service once.",
        f"The engine itself: {b['engine_step_s'] * 1e3:.0f} ms per training step at batch 256 against "
        f"{b['bare_step_s'] * 1e3:.0f} ms for a bare PyTorch loop on a fixed batch (ratio "
        f"{b['engine_vs_bare_step_ratio']:.3f}); batched augmentation {b['augment_batched_img_s']:,.0f} img/s against "
        f"{b['augment_pil_img_s']:,.0f} img/s for the study's per-image PIL pipeline on one thread "
        f"({b['augment_speedup_vs_pil']:.1f}x)."])
    ax = fig.add_axes([0.12, 0.1, 0.8, max(0.12, y - 0.16)])
    labels = ["log call (ms)", "start (s)", "finish (s)"]
    wv = [b["wandb_log_call_ms"], b["wandb_start_s"], b["wandb_finish_s"]]
    nv = [b["neptune_log_call_ms"], b["neptune_start_s"], b["neptune_finish_s"]]
    xs = range(len(labels))
    ax.bar([x - 0.2 for x in xs], wv, 0.4, label="W&B", color=W_COLOR)
    ax.bar([x + 0.2 for x in xs], nv, 0.4, label="Neptune", color=N_COLOR)
    ax.set_xticks(list(xs), labels)
    ax.set_ylabel("value (unit in the label)")
    ax.set_title("Per-call and per-run costs, offline")
    ax.legend()
    rep.save(fig)


def curve_data(w, n):
    """The per-epoch values the curves page draws, from each tool's records."""
    return {tool: {k: [e[k] for e in rec["epochs"]] for k in ("epoch", "train/loss", "val/loss", "train/acc", "val/acc")}
            for tool, rec in (("W&B", w), ("Neptune", n))}


def curves(rep, w, n):
    fig = rep.new_page(SECTIONS[4])
    data = curve_data(w, n)
    rep.text(fig, 0.92, ["Per-epoch values as each tool recorded them (W&B: solid line; Neptune: markers). They "
                         "coincide because the job, seed and engine are the same: the trackers change nothing in "
                         "training."])
    for i, (key, label) in enumerate((("train/loss", "training loss"), ("val/loss", "validation loss"),
                                      ("train/acc", "training accuracy"), ("val/acc", "validation accuracy"))):
        ax = fig.add_axes([0.1 + (i % 2) * 0.45, 0.58 - (i // 2) * 0.29, 0.36, 0.2])
        ax.plot(data["W&B"]["epoch"], data["W&B"][key], "-", color=W_COLOR, lw=2, label="W&B")
        ax.plot(data["Neptune"]["epoch"], data["Neptune"][key], "o", color=N_COLOR, ms=4, label="Neptune")
        ax.set(xlabel="epoch", ylabel=label, title=label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    rows = [[k, f"{w['summary'].get(k, float('nan')):.4f}", f"{n['summary'].get(k, float('nan')):.4f}"]
            for k in records.SUMMARY_KEYS]
    rep.table(fig, 0.2, ["Final value (best-validation checkpoint on the test set)", "W&B record", "Neptune record"],
              rows, [50, 25, 25], size=8)
    rep.save(fig)


def evaluation(rep, w, n):
    fig = rep.new_page("5. Training results: confusion matrix and per-class accuracy")
    classes = w["classes"]
    for i, (rec, title) in enumerate(((w, "W&B: confusion_matrix table"), (n, "Neptune: confusion_matrix_counts"))):
        ax = fig.add_axes([0.1 + i * 0.46, 0.5, 0.36, 0.36])
        m = rec["confusion"]
        ax.imshow(m, cmap="Blues")
        for (r, c), v in np.ndenumerate(m):
            ax.text(c, r, v, ha="center", va="center", size=5, color="white" if v > m.max() / 2 else "black")
        ax.set_xticks(range(len(classes)), classes, rotation=90, size=6)
        ax.set_yticks(range(len(classes)), classes, size=6)
        ax.set(xlabel="predicted", ylabel="true", title=title)
    ax = fig.add_axes([0.12, 0.12, 0.8, 0.26])
    xs = range(len(classes))
    ax.bar([x - 0.2 for x in xs], [w["per_class_acc"].get(c, 0) for c in classes], 0.4, color=W_COLOR, label="W&B")
    ax.bar([x + 0.2 for x in xs], [n["per_class_acc"].get(c, 0) for c in classes], 0.4, color=N_COLOR, label="Neptune")
    ax.set_xticks(list(xs), classes, rotation=30, size=7)
    ax.set(ylabel="test accuracy", ylim=(0, 1), title="Test accuracy per class, from each tool's record")
    ax.legend(fontsize=7)
    rep.save(fig)


def verdict(rep, w, n, b):
    fig = rep.new_page(SECTIONS[5])
    rep.text(fig, 0.92, [
        "## Start with W&B if",
        "you want a hosted service today, dataset lineage and a model registry, versions whose digests are "
        "computed on your machine even offline, a histogram type for gradients and weights, and offline segments of an "
        "interrupted run that merge back into one run. "
        + (f"Its cost here: a larger local footprint "
           f"({b['wandb_local_bytes_per_run'] / 1e6:.1f} MB against {b['neptune_local_bytes_per_run'] / 1e6:.1f} MB for the "
           f"benchmark run) and slower logging calls ({b['wandb_log_call_ms']:.2f} ms against "
           f"{b['neptune_log_call_ms']:.2f} ms), neither of which mattered at the default interval." if b else
           "Its costs were not measured for this report (no benchmark given)."),
        "## Keep Neptune if",
        "you already run a self-hosted Neptune server or must keep every byte on premises with plain-text "
        "offline logs: its JSON-lines operation log is the easiest record to read and audit, its calls are the "
        "cheapest, and it captures source code by default. Know its 2026 limits: no hosted app since "
        "2026-03-05, a deprecated model registry that refuses offline mode, offline uploads and tracked files "
        "kept as paths (hashed only at sync), and resumed offline runs that sync as separate runs.",
        "## For a new project in 2026",
        "W&B, unless a self-hosted Neptune server already exists: the study rated the tools close; the closing "
        "of neptune.ai's hosted app and the offline limits measured above now separate them.",
        "## Reproduce every figure",
        "    make run                 # both scripts, offline, 25 epochs each, and a report of them",
        "    make benchmark report    # the costs, then this PDF",
        "or step by step:",
        "    python wandb_setup_script.py --mode offline --out-dir runs/wandb",
        "    python neptune_integration.py --mode offline --out-dir runs/neptune",
        "    python benchmarks/run.py --quick --json > runs/benchmark.json",
        "    python report/build.py --out-dir runs --bench runs/benchmark.json",
        "Add --data-dir DIR --skip-checksum for a copy of CIFAR-10 whose checksums differ (the shared "
        "JPEG-derived copy was made with ../shared/data/make_cifar10.py). This report's runs: "
        f"{len(w['epochs'])} epochs, "
        + (f"{w['config']['train_size']:,} training images" if w['config'].get('train_size') else "the full training set")
        + f", seed {w['config']['seed']}.",
    ])
    rep.save(fig)


def main():
    p = argparse.ArgumentParser(description="Build the W&B vs Neptune report from two offline runs and a benchmark.")
    p.add_argument("--out-dir", default="runs", help="holds wandb/ and neptune/, the two runs (default: runs)")
    p.add_argument("--bench", default=None, help="output of benchmarks/run.py --json (default: none, no costs section)")
    p.add_argument("--pdf", default=None, help="where to write the PDF (default: OUT-DIR/report.pdf; the "
                                              "committed report/report.pdf only when named)")
    a = p.parse_args()
    for need in (os.path.join(a.out_dir, "wandb"), os.path.join(a.out_dir, "neptune"), a.bench):
        if need and not os.path.exists(need):
            sys.exit(f"error: {need} not found: run `make run` (and `make benchmark` for the costs) first (see README)")
    pdf = a.pdf or os.path.join(a.out_dir, "report.pdf")
    try:
        result = build(a.out_dir, a.bench, pdf)
    except BenchmarkError as e:
        sys.exit(f"error: {e}")
    print(f"wrote {pdf}: {result['pages']} pages")


if __name__ == "__main__":
    main()
