"""The report builder turns a pair of offline runs into a PDF with every section, drawn from the
trackers' own records."""
import json
import os
import sys

import pypdf
import pytest

from conftest import NEPTUNE_TOKEN, ROOT, WANDB_KEY, neptune_ops, quick_args, run_script

sys.path.insert(0, os.path.join(ROOT, "report"))
import build  # noqa: E402
import records  # noqa: E402

BENCH = {"hardware": {"cpu": "test CPU", "cpu_count": 2, "torch_threads": 2, "device": "cpu", "torch_version": "x"},
         "quick": True, "wandb_epoch_end_s": 0.3, "neptune_epoch_end_s": 0.01, "overhead_run_spread": 0.05, "engine_step_s": 0.9, "bare_step_s": 0.89, "engine_vs_bare_step_ratio": 1.01,
         "wandb_overhead_ratio": 1.01, "neptune_overhead_ratio": 1.005, "wandb_overhead_ratio_every_step": 1.2,
         "neptune_overhead_ratio_every_step": 1.05, "wandb_start_s": 2.1, "wandb_finish_s": 1.2,
         "neptune_start_s": 0.5, "neptune_finish_s": 0.4, "wandb_local_bytes_per_run": 600000,
         "wandb_local_files_per_run": 40, "neptune_local_bytes_per_run": 200000, "neptune_local_files_per_run": 5,
         "wandb_log_call_ms": 0.33, "neptune_log_call_ms": 0.05, "augment_pil_img_s": 4000,
         "augment_batched_img_s": 90000, "augment_speedup_vs_pil": 22.5}


@pytest.fixture(scope="module")
def runs(cifar_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("pair")
    for script, tool, env in (("wandb_setup_script.py", "wandb", {"WANDB_API_KEY": WANDB_KEY}),
                              ("neptune_integration.py", "neptune", {"NEPTUNE_API_TOKEN": NEPTUNE_TOKEN})):
        result = run_script(script, quick_args(cifar_dir, out / tool), out, **env)
        assert result.returncode == 0, result.stderr[-2000:]
    (out / "bench.json").write_text("benchmark log line\n" + json.dumps(BENCH) + "\n")
    return out


def test_pdf_has_every_section_criterion_and_fact(runs):
    pdf = runs / "report.pdf"
    result = build.build(str(runs), str(runs / "bench.json"), str(pdf))
    reader = pypdf.PdfReader(str(pdf))
    assert len(reader.pages) == result["pages"] >= 8
    text = " ".join(" ".join(page.extract_text().split()) for page in reader.pages)
    for needle in build.SECTIONS + ["Dataset versioning", "Model versioning", "Collaboration",
                                    "Framework integration", "Report generation", "Model visualization",
                                    "Understandability", "Usability", "Debuggability",
                                    "2026-03-05", "Weights & Biases", "Neptune", "works offline",
                                    "needs a server", "Cannot use artifact when in offline mode",
                                    "can't be initialized in OFFLINE mode"]:
        assert needle in text, needle
    test_acc = result["neptune"]["summary"]["test/acc"]
    assert f"{test_acc:.4f}" in text


def test_curves_come_from_the_trackers_records(runs):
    w, n = records.read_wandb(str(runs / "wandb")), records.read_neptune(str(runs / "neptune"))
    with open(next(p for p in (runs / "wandb").rglob("history.json"))) as f:
        engine = json.load(f)["epochs"]
    curves = build.curve_data(w, n)
    assert curves["W&B"]["val/acc"] == [e["val/acc"] for e in engine] == curves["Neptune"]["val/acc"]
    [log] = list((runs / "neptune" / ".neptune").rglob("data-1.log"))
    lines = log.read_text().splitlines()
    edited = []
    for line in lines:
        op = json.loads(line)
        if op["obj"]["type"] == "LogFloats" and op["obj"]["path"] == ["val", "acc"] and op["obj"]["values"][0]["step"] == 1:
            op["obj"]["values"][0]["value"] = 0.123
        edited.append(json.dumps(op))
    log.write_text("\n".join(edited) + "\n")
    changed = build.curve_data(w, records.read_neptune(str(runs / "neptune")))
    assert changed["Neptune"]["val/acc"][0] == 0.123 and changed["Neptune"]["val/acc"][1:] == curves["Neptune"]["val/acc"][1:]
    assert len(neptune_ops(str(runs / "neptune"))) == len(lines)
