"""The committed report is what its committed evidence builds, its judgements follow the facts, and
its curves come from the trackers' records."""

import copy
import json
import os
import re
import shutil
import subprocess
import sys

import pypdf
import pytest
from conftest import ROOT

sys.path.insert(0, os.path.join(ROOT, "report"))
import build  # noqa: E402
import probes  # noqa: E402
import records  # noqa: E402
import rubric  # noqa: E402

import trackers  # noqa: E402

EVIDENCE = os.path.join(ROOT, "report", "evidence")
BUILT = re.compile(r"Built \d{4}-\d{2}-\d{2} by")


def pdf_text(path):
    text = "\n".join(page.extract_text() for page in pypdf.PdfReader(str(path)).pages)
    return BUILT.sub("Built <date> by", text)


@pytest.fixture(scope="module")
def evidence():
    return rubric.Evidence(
        records.read_all(EVIDENCE),
        probes.probe_all(),
        build.read_benchmark(os.path.join(EVIDENCE, "benchmark.json")),
        rubric.load_external(),
    )


def test_the_committed_pdf_is_what_the_committed_evidence_builds(tmp_path):
    """`make report` from report/evidence alone gives the committed PDF's text, word for word."""
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "report", "build.py"), "--pdf", str(tmp_path / "r.pdf")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "HOME": str(tmp_path)},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    rebuilt, committed = pdf_text(tmp_path / "r.pdf"), pdf_text(os.path.join(ROOT, "report", "report.pdf"))
    assert rebuilt == committed, "report/report.pdf is stale: run `make report` and commit it"


def test_the_report_states_the_real_job_and_each_tools_test_accuracy(evidence):
    text = " ".join(pdf_text(os.path.join(ROOT, "report", "report.pdf")).split())
    recs = evidence.records
    assert all(len(recs[t]["epochs"]) == 25 for t in rubric.TOOLS)
    assert recs["W&B"]["train_images"] == 45000 and "25 epochs on 45,000 training images" in text
    for tool in rubric.TOOLS:
        acc = recs[tool]["summary"]["test/acc"]
        assert acc >= 0.78 and f"{tool} {acc * 100:.2f}%" in text
    for name, _, _ in rubric.CRITERIA:  # the tenth, hyperparameter optimization integration, among them
        assert name in text
    for name, (w, n) in rubric.STUDY.items():  # the study's own ratings beside ours
        assert name in text and (w is None or f"{name} {w} {n}" in text)


def test_the_readme_headline_is_the_committed_evidences(evidence):
    """The README's headline table (test accuracy per record, rubric totals, costs) is what the evidence gives."""
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    _, rates, _ = build.evaluate(evidence)
    table = build.headline(evidence.records, rates, evidence.bench)
    assert table in readme
    for tool in rubric.TOOLS:  # the figures in it are the records'
        assert f"{evidence.records[tool]['summary']['test/acc'] * 100:.2f}%" in table


def test_a_changed_fact_changes_the_rating_and_the_matrix(evidence):
    facts, rates, cells = build.evaluate(evidence)
    assert rates["Understandability"]["W&B"] == 3 and cells["Viewer of the local record"]["W&B"] == rubric.WORKS
    no_viewer = copy.deepcopy(evidence)
    no_viewer.probes["W&B"]["resolves"]["leet"] = None  # as if the client had no `wandb leet`
    _, rates2, cells2 = build.evaluate(no_viewer)
    assert rates2["Understandability"]["W&B"] == 2
    assert cells2["Viewer of the local record"]["W&B"] == rubric.NONE
    assert {k: v for k, v in rates2.items() if k != "Understandability"} == {
        k: v for k, v in rates.items() if k != "Understandability"
    }
    reopened = copy.deepcopy(evidence)
    reopened.external["hosted_service"]["Neptune"]["holds"] = True  # as if neptune.ai's app were open
    assert rates["Collaboration"]["Neptune"] == 2 and build.evaluate(reopened)[1]["Collaboration"]["Neptune"] == 3


def test_the_curves_come_from_the_trackers_records(tmp_path):
    copy_dir = tmp_path / "neptune"
    shutil.copytree(os.path.join(EVIDENCE, "neptune"), copy_dir)
    before = build.curve_data({"Neptune": trackers.get("neptune").reader.read_run(str(copy_dir))})["Neptune"]["val/acc"]
    [log] = [
        p
        for p in copy_dir.rglob("data-1.log")
        if any('"val", "acc"' in line and '"step": 1,' in line for line in p.read_text().splitlines())
    ]
    lines = []
    for line in log.read_text().splitlines():
        op = json.loads(line)
        if (
            op["obj"]["type"] == "LogFloats"
            and op["obj"]["path"] == ["val", "acc"]
            and op["obj"]["values"][0]["step"] == 1
        ):
            op["obj"]["values"][0]["value"] = 0.123
        lines.append(json.dumps(op))
    log.write_text("\n".join(lines) + "\n")
    after = build.curve_data({"Neptune": trackers.get("neptune").reader.read_run(str(copy_dir))})["Neptune"]["val/acc"]
    assert after[0] == 0.123 and after[1:] == before[1:] and before[0] != 0.123


def test_an_empty_or_partial_benchmark_is_refused_in_one_line(tmp_path):
    for content in ("", "a log line, then nothing\n", json.dumps({"hardware": {}}) + "\n"):
        (tmp_path / "bench.json").write_text(content)
        result = subprocess.run(
            [
                sys.executable,
                os.path.join(ROOT, "report", "build.py"),
                "--bench",
                str(tmp_path / "bench.json"),
                "--pdf",
                str(tmp_path / "r.pdf"),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
        assert result.stderr.strip().startswith("error: ") and "make benchmark" in result.stderr
        assert not (tmp_path / "r.pdf").exists()


def test_make_run_builds_its_own_report_and_leaves_the_committed_one():
    dry = subprocess.run(["make", "-n", "run", "OUT=somewhere"], cwd=ROOT, capture_output=True, text=True).stdout
    assert "--pdf somewhere/report.pdf" in dry and "report/report.pdf" not in dry
    assert (
        "report/report.pdf" in subprocess.run(["make", "-n", "report"], cwd=ROOT, capture_output=True, text=True).stdout
    )


def test_the_tenth_criterion_comes_from_the_search_records_and_the_integration_probes(evidence):
    """Hyperparameter optimization integration: level 2 from each tool's record of its search, level 3
    from a probe of the vendor's Optuna integration; a record or probe changed, the rating follows."""
    _, rates, _ = build.evaluate(evidence)
    assert all(evidence.records[t]["search"]["trials"] for t in rubric.TOOLS)
    rated = rates["Hyperparameter optimization integration"]
    for tool in rubric.TOOLS:
        assert rated[tool] == (3 if evidence.probes[tool]["optuna_study"]["accepted"] else 2)
    lost = copy.deepcopy(evidence)
    next(iter(lost.records["MLflow"]["search"]["trials"].values()))["val_acc"] = []  # a trial without its epochs
    assert build.evaluate(lost)[1]["Hyperparameter optimization integration"]["MLflow"] == 1
    refused = copy.deepcopy(evidence)
    refused.probes["W&B"]["optuna_study"]["accepted"] = False
    assert build.evaluate(refused)[1]["Hyperparameter optimization integration"]["W&B"] == 2
