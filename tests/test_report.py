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
import rubric  # noqa: E402

import trackers  # noqa: E402

EVIDENCE = os.path.join(ROOT, "report", "evidence")
BUILT = re.compile(r"Built \d{4}-\d{2}-\d{2} by")


def pdf_text(path):
    text = "\n".join(page.extract_text() for page in pypdf.PdfReader(str(path)).pages)
    return BUILT.sub("Built <date> by", text)


@pytest.fixture(scope="module")
def evidence():
    return build.evidence(EVIDENCE, build.read_benchmark(os.path.join(EVIDENCE, "benchmark.json")))


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
    study = rubric.load_study()
    assert study["source"] in text.replace(" ", "")  # the study's report, cited
    for name, _, _ in rubric.CRITERIA:  # the tenth, hyperparameter optimization integration, among them
        assert name in text
        c = study["criteria"][name]
        quoted = (c["definition"] or c["definition_elsewhere"]["text"]).split(". ")[0]
        assert " ".join(quoted.split()[:8]) in text  # its own definition, quoted
    for name, (w, n) in rubric.STUDY.items():  # the study's own ratings beside ours
        assert (w, n) == tuple(study["criteria"][name]["ratings"][t] for t in ("W&B", "Neptune"))


def test_the_body_is_at_most_eight_pages_and_page_one_is_the_decision(evidence):
    pages = [page.extract_text() for page in pypdf.PdfReader(os.path.join(ROOT, "report", "report.pdf")).pages]
    [appendix] = [i for i, p in enumerate(pages) if "Appendix: the evidence in detail" in p]
    assert appendix <= 8, f"the body takes {appendix} pages"
    first = " ".join(pages[0].split())
    assert "Neptune in 2026" in first and "Which tool, for which situation" in first
    for tool, made in json.load(open(os.path.join(EVIDENCE, "commit.json")))["tools"].items():
        assert tool in first and (not made["commit"] or f"runs made at commit {made['commit'][:10]}" in first)
    for situation, fit, together, _ in rubric.decide(evidence, build.evaluate(evidence)[0]):
        assert f"{situation} {build.choice_text(fit, together, str) if fit else 'none has all of it'}" in first


def test_every_cited_fact_has_its_source_and_the_date_it_was_read(evidence):
    with open(rubric.FACTS_FILE) as f:
        facts = {k: v for k, v in json.load(f).items() if not k.startswith("_")}
    for key, per_tool in facts.items():
        assert set(per_tool) <= set(rubric.TOOLS), key
        for tool in set(rubric.TOOLS) - set(per_tool):  # a tool without the fact has it from a probe here
            assert evidence.probes[tool].get(rubric.PROBED_FIRST.get(key)), (key, tool)
        for tool, e in per_tool.items():
            assert e["source"].startswith("https://") and re.fullmatch(r"\d{4}-\d{2}-\d{2}", e["checked"]), (key, tool)
            assert e["says"] and isinstance(e["holds"], bool), (key, tool)
    study = rubric.load_study()
    assert study["source"].startswith("https://github.com/") and study["checked"]


def test_a_changed_cited_fact_and_a_changed_measurement_change_the_page_and_the_rating(evidence, tmp_path):
    facts, rates, cells = build.evaluate(evidence)
    page = build.document(evidence.records, evidence, facts, rates, cells, EXTRAS, str(tmp_path), EVIDENCE)
    assert rates["Collaboration"]["W&B"] == 3
    closed = copy.deepcopy(evidence)
    closed.external["access_control"]["W&B"]["holds"] = False  # as if W&B published no access control
    facts2, rates2, cells2 = build.evaluate(closed)
    assert rates2["Collaboration"]["W&B"] == 2
    page2 = build.document(closed.records, closed, facts2, rates2, cells2, EXTRAS, str(tmp_path), EVIDENCE)
    hosted = "A team that wants a hosted service"
    assert (
        page2 != page and "W&B" in decision(evidence, facts)[hosted] and "W&B" not in decision(closed, facts2)[hosted]
    )
    slow = copy.deepcopy(evidence)
    tool = next(t for t in rubric.TOOLS if rates["Usability"][t] == 3)  # one whose epoch cost holds today
    c = slow.bench["critical_path"][rubric.BENCH_PREFIX[tool]]
    c["ms_per_epoch"], c["ci95"] = 42.0, [40.0, 44.0]
    for p in c["by_step_ms"].values():
        p["ms_per_epoch"], p["ci95"] = 42.0, [40.0, 44.0]
    facts3, rates3, cells3 = build.evaluate(slow)
    assert rates3["Usability"][tool] == 2 and rates["Usability"][tool] == 3
    page3 = build.document(slow.records, slow, facts3, rates3, cells3, EXTRAS, str(tmp_path), EVIDENCE)
    assert "+42.0 ms [+40.0, +44.0]" in page3 and "+42.0 ms" not in page


EXTRAS = {"footprint": None, "leet": None, "torchrun": None, "export": None, "search_default": None}


def decision(ev, facts):
    return {situation: fit for situation, fit, _, _ in rubric.decide(ev, facts)}


def test_a_tool_leads_alone_only_where_its_interval_sets_it_apart(evidence):
    """Where several tools fit a situation, the one that adds least to an epoch comes first; those whose
    95% intervals overlap its interval are named with it, as the measure cannot tell them apart."""
    facts = build.evaluate(evidence)[0]
    situation, fit, _, _ = next(d for d in rubric.decide(evidence, facts) if len(d[1]) >= 2 and "GPUs" not in d[0])
    for step in (3.0, 0.5):  # the fitting tools' costs 3 ms apart (intervals apart), then 0.5 ms (overlapping)
        ev = copy.deepcopy(evidence)
        for i, tool in enumerate(reversed(fit)):  # the last of them becomes the cheapest
            c = ev.bench["critical_path"][rubric.BENCH_PREFIX[tool]]
            ms = 1.0 + step * i
            for p in (c, *c["by_step_ms"].values()):
                p["ms_per_epoch"], p["ci95"] = ms, [ms - 1.0, ms + 1.0]
        facts2 = build.evaluate(ev)[0]
        [(again, together)] = [(f, n) for s, f, n, _ in rubric.decide(ev, facts2) if s == situation]
        assert again == list(reversed(fit)) and together == (1 if step == 3.0 else len(fit))
        table = build.decision_table(ev, facts2)
        named = " or ".join(f"**{t}**" for t in again[:together]) if together > 1 else f"**{again[0]}** (then"
        assert named.replace(" or ", ", ", together - 2) in table


def test_the_readme_headline_is_the_committed_evidences(evidence):
    """The README's headline table (test accuracy per record, costs) is what the evidence gives."""
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
