"""The rubric: for each criterion, the checkable facts behind each level of the study's scale, and
the code that establishes each fact and derives the ratings from them. It holds no rating itself.

A fact is established for each tool by a probe of the installed client (trackers/<key>_probe.py),
the records of the report's runs (trackers/<key>_record.py), a measurement (benchmarks/run.py), or a dated
external fact with its source (report/facts.json). A tool rated 2 has every fact of level 2; 3,
every fact of levels 2 and 3; otherwise 1.
"""

import json
import os
import sys
from dataclasses import dataclass

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import trackers  # noqa: E402

TOOLS = tuple(tool.name for tool in trackers.TOOLS)
SCALE = {1: "lacks it", 2: "has it", 3: "has it, and it is easy or has more"}
BENCH_PREFIX = {tool.name: tool.key for tool in trackers.TOOLS}  # a tool's name in benchmark.json

STUDY_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "study.json")


def load_study(path=STUDY_FILE):
    """The 2023 study's report as report/study.json cites it: its source, and per criterion its own
    definition (quoted) and ratings."""
    with open(path) as f:
        return json.load(f)


# The study's own ratings (W&B, Neptune) on the same scale, from its report (report/study.json); it
# defined hyperparameter optimization integration (its section 3.4.5) but never rated it.
STUDY = {name: (c["ratings"]["W&B"], c["ratings"]["Neptune"]) for name, c in load_study()["criteria"].items()}
ONBOARDING_S = 180.0  # level 3 of understandability: installed alone and a first run recorded within this
EPOCH_MS, EPOCH_CI_MS = 10.0, 15.0  # level 3 of usability: what it adds to a GPU-paced epoch, and its interval's top


@dataclass
class Evidence:
    records: dict  # tool -> its record reader's reading of its run (and search)
    probes: dict  # tool -> its probe's findings
    bench: dict  # benchmarks/run.py --json, or None
    external: dict  # report/facts.json
    onboarding: dict = None  # benchmarks/onboarding.py --json, or None


FACTS_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "facts.json")


def load_external(path=FACTS_FILE):
    with open(path) as f:
        return {k: v for k, v in json.load(f).items() if not k.startswith("_")}


def said(probe):
    return probe["said"]


def external(ev, key, tool):
    entry = ev.external[key].get(tool)
    if entry is None:
        return None
    return entry["holds"], f"{entry['says']} ({entry['source']}, checked {entry['checked']})"


# Each check returns (holds, evidence) for one tool: the evidence is printed beside the fact.
def dataset_version_recorded(ev, tool):
    d = ev.records[tool]["dataset"]
    return d["recorded"], f"{d['kind']}: {d['version']}" if d["recorded"] else "no dataset version in the record"


def dataset_hashed_by_tool(ev, tool):
    d = ev.records[tool]["dataset"]
    return (
        d["files"] > 0 and d["hashed_by_tool"] == d["files"],
        f"{d['hashed_by_tool']} of {d['files']} data files hashed by the client offline ({d['hash_note']})",
    )


def model_versions_recorded(ev, tool):
    models = ev.records[tool]["models"]
    return len(models) >= 2, f"{len(models)} model versions in the record ({ev.records[tool]['models_kind']})"


def model_aliases(ev, tool):
    models = ev.records[tool]["models"]
    aliases = sorted({a for m in models for a in m["aliases"]})
    reserved = ev.probes[tool].get("latest_alias")
    note = f"; `latest` is MLflow's own ({said(reserved)})" if reserved and not reserved["accepted"] else ""
    return bool(aliases), (
        f"aliases {', '.join(aliases)}{note}"
        if aliases
        else "no alias type: the script's fields (model/best, model/latest, model/final) name the versions"
    )


def model_metadata(ev, tool):
    final = ev.records[tool]["models"][-1] if ev.records[tool]["models"] else {"metadata": {}}
    keys = sorted(final["metadata"])
    return {"epoch", "val_acc", "test_acc"} <= set(keys), f"final version's metadata: {', '.join(keys) or 'none'}"


PROBED_FIRST = {
    "self_hosted_server": "server_here",
    "reports_on_server": "reports_here",
    "registry_on_server": "registry_online",
}
"""A cited fact read only for a tool whose probe could not ask it here (fact: probe)."""


def probe_or_external(ev, tool, fact):
    """What the tool's probe found where it asks it here, else the dated external fact."""
    found = ev.probes[tool].get(PROBED_FIRST[fact])
    return (found["accepted"], said(found)) if found else external(ev, fact, tool)


def server_to_share(ev, tool):
    return probe_or_external(ev, tool, "self_hosted_server")


def hosted_service(ev, tool):
    return external(ev, "hosted_service", tool)


def upload_later(ev, tool):
    holds = ev.probes[tool]["resolves"]["sync"] is not None
    name = ev.probes[tool]["cli"]
    return holds, f"`{name} sync` {'is' if holds else 'is not'} a command of the installed client"


def pytorch_integration(ev, tool):
    p = ev.probes[tool]
    return p["pytorch_module"]["accepted"], f"{said(p['pytorch_module'])}: {said(p['pytorch_integration'])}"


def pytorch_in_base_client(ev, tool):
    p = ev.probes[tool]
    return p["pytorch_integration"]["accepted"], (
        f"usable with the client alone: {said(p['pytorch_integration'])}; "
        f"{len(p['integrations'])} framework modules shipped"
    )


def reports(ev, tool):
    return probe_or_external(ev, tool, "reports_on_server")


def report_from_code(ev, tool):
    p = ev.probes[tool]
    extra = p.get("report_api_extra")
    needs = (
        f" (it needs the vendor's package {said(extra).rsplit(' ', 1)[-1]}, not installed here)"
        if extra and not extra["accepted"]
        else ""
    )
    return p["report_api"]["accepted"], f"{said(p['report_api'])}{needs}"


def evaluation_images(ev, tool):
    r = ev.records[tool]
    holds = r["confusion"].size > 0 and len(r["mistakes"]) > 0
    return holds, f"confusion matrix ({r['confusion_kind']}) and {len(r['mistakes'])} mistake images in the record"


def interactive_confusion(ev, tool):
    r = ev.records[tool]
    return r["confusion_chart"], r["confusion_kind"]


def histograms(ev, tool):
    p, r = ev.probes[tool], ev.records[tool]
    return p["histogram_type"]["accepted"] and bool(
        r["histograms"]
    ), f"{said(p['histogram_type'])}; {sum(len(v) for v in r['histograms'].values())} histograms in the record"


def record_readable(ev, tool):
    r = ev.records[tool]
    return bool(r["epochs"]), f"{len(r['epochs'])} epochs read back with {r['reader']}"


def local_viewer(ev, tool):
    p = ev.probes[tool]
    name = p["cli"]
    found = [c for c in ("leet", "ui") if p["resolves"][c]]
    if found:
        return True, f"`{name} {found[0]}` shows the local record" + (
            f" (it is `{name} {p['resolves'][found[0]]}`)" if p["resolves"][found[0]] != found[0] else ""
        )
    return False, f"its CLI has {', '.join(p['commands'])}: no viewer of the local record"


def plain_text_record(ev, tool):
    r = ev.records[tool]
    return r["plain_text"], r["record_format"]


def works_offline(ev, tool):
    r = ev.records[tool]
    return bool(r["epochs"]) and r["summary"].get(
        "test/acc"
    ) is not None, f"the report's run: offline, no account, {len(r['epochs'])} epochs and the test accuracy recorded"


def team_server_today(ev, tool):
    """A team can share runs today without a contract: a hosted service open to new users, or a
    server that runs from the installed client."""
    hosted, here = external(ev, "hosted_service", tool), ev.probes[tool].get("server_here")
    if here and here["accepted"]:
        return True, said(here)
    if hosted and hosted[0]:
        return True, f"hosted: {hosted[1]}"
    return False, "no hosted service open to new users, and no server in the installed client" + (
        f" ({hosted[1]})" if hosted else ""
    )


def access_control(ev, tool):
    return external(ev, "access_control", tool)


def self_hosted_access(ev, tool):
    return external(ev, "self_hosted_access_control", tool)


def sso(ev, tool):
    return external(ev, "sso", tool)


def onboarding(ev, tool):
    o = ev.onboarding and ev.onboarding["tools"].get(BENCH_PREFIX[tool])
    return o


def first_run_alone(ev, tool):
    o = onboarding(ev, tool)
    if not o:
        return False, "not measured (no onboarding measurement given)"
    return bool(o.get("recorded")), (
        f"installed alone into a new virtual environment ({o['packages']} packages), its quickstart's "
        f"{o['snippet_lines']} lines recorded a run offline"
        if o.get("recorded")
        else f"its quickstart did not record a run: {o.get('error', 'nothing recorded')}"
    )


def first_run_quick(ev, tool):
    o = onboarding(ev, tool)
    if not o or not o.get("recorded"):
        return False, "no first run recorded"
    total = o["install_s"] + o["first_run_s"]
    return total <= ONBOARDING_S, (
        f"install {o['install_s']:.0f} s + first run {o['first_run_s']:.1f} s (at most {ONBOARDING_S:.0f} s)"
    )


def epoch_cost_small(ev, tool):
    cp = ev.bench and ev.bench.get("critical_path", {}).get(BENCH_PREFIX[tool])
    if not cp:
        return False, "not measured (no benchmark given)"
    worst = max(cp["by_step_ms"].values(), key=lambda p: p["ci95"][1])
    return cp["ms_per_epoch"] <= EPOCH_MS and worst["ci95"][1] <= EPOCH_CI_MS, (
        f"{cp['ms_per_epoch']:+.1f} ms [{cp['ci95'][0]:+.1f}, {cp['ci95'][1]:+.1f}] added to a GPU-paced epoch at "
        f"{cp['at_step_ms']} ms a step (at most {EPOCH_MS:g} ms, interval under {EPOCH_CI_MS:g} ms)"
    )


def cli_without_pins(ev, tool):
    needs = ev.probes[tool]["cli_needs_pkg_resources"]
    return not needs, (
        "its CLI imports pkg_resources, which setuptools 81 removed: setuptools must be pinned below 81"
        if needs
        else "no extra pin needed for its CLI"
    )


def system_metrics(ev, tool):
    n = ev.records[tool]["system_samples"]
    return n > 0, f"{n} system-metric samples in the record"


def console_captured(ev, tool):
    n = ev.records[tool]["console_lines"]
    return n > 0, f"{n} console records" if n else "no console capture in the record"


def resumed_as_one_run(ev, tool):
    r = ev.records[tool]
    return r["one_run"], r["segments_note"]


def search_recorded(ev, tool):
    s = ev.records[tool].get("search")
    if not s:
        return False, "no search in the evidence"
    trials = s["trials"]
    whole = [
        n
        for n, t in trials.items()
        if all(v is not None for v in t["params"].values()) and t["val_acc"] and t["state"] and t["segments"] >= 1
    ]
    return (
        len(whole) == len(trials) > 0 and len(s["studies"]) == 1,
        f"{len(whole)} of {len(trials)} trials with parameters, validation accuracy by epoch and state; "
        f"{len(s['studies'])} study record; {s['grouping']}",
    )


def optuna_integration_every_trial(ev, tool):
    probe = ev.probes[tool]["optuna_study"]
    return probe["accepted"], said(probe)


def hpo_driver(ev, tool):
    probe = ev.probes[tool]["sweep_driver"]
    return probe["accepted"], said(probe)


# Each fact: what it says, where it comes from, and its check.
FACTS = {
    "dataset_version_recorded": ("the run's record holds a version of its dataset", "record", dataset_version_recorded),
    "dataset_hashed_by_tool": ("the client hashed the data files itself, offline", "record", dataset_hashed_by_tool),
    "model_versions_recorded": (
        "each new best checkpoint and the final one are versions in the record",
        "record",
        model_versions_recorded,
    ),
    "model_aliases": (
        "versions carry aliases that move (best, latest, final; MLflow's champion)",
        "record",
        model_aliases,
    ),
    "model_metadata": ("the final version carries its epoch, validation and test accuracy", "record", model_metadata),
    "server_to_share": ("a server to share runs on can be run by the user", "probe or external", server_to_share),
    "hosted_service": ("a hosted service is open to a new user today", "external", hosted_service),
    "upload_later": ("the client uploads a local run to a server later, in one command", "probe", upload_later),
    "pytorch_integration": (
        "the vendor offers a PyTorch integration (in the client or a package of its own)",
        "probe",
        pytorch_integration,
    ),
    "pytorch_in_base_client": (
        "the PyTorch integration works with the installed client alone",
        "probe",
        pytorch_in_base_client,
    ),
    "reports": ("the tool's server builds report documents from runs", "external or probe", reports),
    "report_from_code": ("reports can be written from code with the vendor's client", "probe", report_from_code),
    "evaluation_images": ("the record holds the confusion matrix and the mistake images", "record", evaluation_images),
    "interactive_confusion": (
        "the confusion matrix is a chart type of the tool, not a picture",
        "record",
        interactive_confusion,
    ),
    "histograms": (
        "weight and gradient histograms are a type of the tool, recorded each epoch",
        "probe and record",
        histograms,
    ),
    "record_readable": ("every metric of the run reads back from the local record", "record", record_readable),
    "local_viewer": ("the client has a viewer for the local record", "probe", local_viewer),
    "plain_text_record": ("the local record is plain text", "record", plain_text_record),
    "works_offline": ("it records the whole job offline with no account or server", "record", works_offline),
    "team_server_today": (
        "a team can share runs today without a contract: a hosted service or a server in the client",
        "probe or external",
        team_server_today,
    ),
    "access_control": ("users and roles control who sees and changes a project", "external", access_control),
    "self_hosted_access": (
        "on a server you run, users and roles control who sees and changes a project",
        "external",
        self_hosted_access,
    ),
    "sso": ("single sign-on (SAML or OIDC) is published", "external", sso),
    "first_run_alone": (
        "installed alone into a new environment, its quickstart records a run offline",
        "measurement",
        first_run_alone,
    ),
    "first_run_quick": (
        f"from a new environment to a first recorded run in at most {ONBOARDING_S:.0f} s",
        "measurement",
        first_run_quick,
    ),
    "epoch_cost_small": (
        f"what it adds to a GPU-paced epoch is measured at most {EPOCH_MS:g} ms, its 95% interval under {EPOCH_CI_MS:g} ms",
        "measurement",
        epoch_cost_small,
    ),
    "cli_without_pins": ("its command line installs with current packages (no pin)", "probe", cli_without_pins),
    "system_metrics": ("the record holds system metrics", "record", system_metrics),
    "console_captured": ("the record holds the console output", "record", console_captured),
    "resumed_as_one_run": (
        "an interrupted and resumed run is one run in the tool's record",
        "record",
        resumed_as_one_run,
    ),
    "search_recorded": (
        "a search's trials are in the tool's record, each with its parameters, validation accuracy "
        "by epoch and state, grouped as one search",
        "record",
        search_recorded,
    ),
    "optuna_every_trial": (
        "the vendor's Optuna integration records a complete, a pruned and a failed trial offline",
        "probe",
        optuna_integration_every_trial,
    ),
    "hpo_driver": ("the client itself drives a hyperparameter search", "probe", hpo_driver),
}

# The rubric: level 2 ("has it") and level 3 ("easy, or more") of each criterion, as facts.
CRITERIA = [
    ("Dataset versioning", ["dataset_version_recorded"], ["dataset_hashed_by_tool"]),
    ("Model versioning", ["model_versions_recorded"], ["model_aliases", "model_metadata"]),
    ("Collaboration", ["server_to_share"], ["team_server_today", "access_control", "upload_later"]),
    ("Framework integration", ["pytorch_integration"], ["pytorch_in_base_client"]),
    ("Report generation and management", ["reports"], ["report_from_code"]),
    ("Model visualization", ["evaluation_images"], ["interactive_confusion", "histograms"]),
    ("Understandability", ["first_run_alone"], ["first_run_quick", "local_viewer"]),
    ("Usability", ["works_offline"], ["epoch_cost_small", "cli_without_pins"]),
    ("Debuggability", ["system_metrics"], ["console_captured", "resumed_as_one_run"]),
    ("Hyperparameter optimization integration", ["search_recorded"], ["optuna_every_trial"]),
]

# What each criterion measures here, against the study's definition: where ours is a proxy, it says so.
MEASURED = {
    "Dataset versioning": "the run's record: its dataset version, and whether the client hashed the files itself",
    "Model versioning": "the run's record: a version per new best checkpoint, their aliases and metadata",
    "Collaboration": "published facts (cited) and the installed client: a server to share on, access control, "
    "an upload of local runs",
    "Framework integration": "the installed client: its PyTorch integration",
    "Report generation and management": "the installed client and published facts: report documents from runs",
    "Model visualization": "the run's record: the confusion matrix, mistakes and histograms as the tool's types",
    "Understandability": "a proxy: the documentation is not measured; what its quickstart takes is (each client "
    "installed alone into a new environment, then its quickstart's calls), and a viewer of the local record",
    "Usability": "a proxy for day-to-day use: the whole job offline, what it adds to a GPU-paced epoch, "
    "an install without extra pins",
    "Debuggability": "the run's record: system metrics, the console, an interrupted run kept as one",
    "Hyperparameter optimization integration": "the searches' records and the vendor's Optuna integration",
}

# The offline matrix: each feature is "works offline" where its first fact holds, "needs a server"
# where only its second does, otherwise "unavailable".
WORKS, SERVER, NONE = "works offline", "needs a server", "unavailable"
MATRIX = [
    ("Config, metrics, summary", "works_offline", None),
    ("System metrics", "system_metrics", None),
    ("Console capture", "console_captured", None),
    ("Dataset version hashed by the client", "dataset_hashed_by_tool", "dataset_hash_at_sync"),
    ("Record a dataset version as the run's input", "dataset_input_offline", "dataset_input_online"),
    ("Model versions", "model_versions_recorded", None),
    ("Model registry", "registry_offline", "registry_online"),
    ("Weight and gradient histograms", "histograms", None),
    ("Resume as the same run", "resumed_as_one_run", "resume_online"),
    ("Viewer of the local record", "local_viewer", None),
    ("Hyperparameter search driver", "hpo_driver_offline", "hpo_driver"),
    ("Upload a local run later", "upload_later", None),
]


def dataset_hash_at_sync(ev, tool):
    return ev.records[tool]["dataset"]["hash_at_sync"], ev.records[tool]["dataset"]["hash_note"]


def dataset_input_offline(ev, tool):
    probe = ev.probes[tool]["dataset_input_offline"]
    return probe["accepted"], said(probe)


def dataset_input_online(ev, tool):
    probe = ev.probes[tool]["dataset_input_online"]
    return probe["accepted"], said(probe)


def registry_offline(ev, tool):
    probe = ev.probes[tool]["registry_offline"]
    return probe["accepted"], said(probe)


def registry_online(ev, tool):
    return probe_or_external(ev, tool, "registry_on_server")


def resume_online(ev, tool):
    p = ev.probes[tool]["resume"]
    return p["accepted"], said(p)


def hpo_driver_offline(ev, tool):
    probe = ev.probes[tool]["search_driver_offline"]
    return probe["accepted"], said(probe)


FACTS.update(
    {
        "dataset_hash_at_sync": ("the data files are hashed when the run is synced", "record", dataset_hash_at_sync),
        "dataset_input_offline": (
            "a local run can record a dataset version as its input",
            "probe",
            dataset_input_offline,
        ),
        "dataset_input_online": (
            "a run on a server can record a dataset version as its input",
            "probe",
            dataset_input_online,
        ),
        "registry_offline": ("a model registry works without a server", "probe", registry_offline),
        "registry_online": ("a model registry works on the tool's server", "external or probe", registry_online),
        "resume_online": ("a run on a server continues under its id", "probe", resume_online),
        "hpo_driver_offline": ("the search driver works without a server", "probe", hpo_driver_offline),
    }
)


def establish(ev):
    """Every fact for every tool: {fact: {tool: (holds, evidence)}}; None where it does not apply."""
    return {fid: {tool: check(ev, tool) for tool in TOOLS} for fid, (_, _, check) in FACTS.items()}


def holds(facts, fid, tool):
    value = facts[fid][tool]
    return bool(value and value[0])


def rate(facts, has, more, tool):
    if not all(holds(facts, f, tool) for f in has):
        return 1
    return 3 if all(holds(facts, f, tool) for f in more) else 2


def ratings(facts):
    """{criterion: {tool: rating}}, from the facts alone."""
    return {name: {tool: rate(facts, has, more, tool) for tool in TOOLS} for name, has, more in CRITERIA}


def matrix(facts):
    """{feature: {tool: cell}}: works offline, needs a server, or unavailable, from the facts."""
    return {
        feature: {
            tool: WORKS if holds(facts, works, tool) else SERVER if server and holds(facts, server, tool) else NONE
            for tool in TOOLS
        }
        for feature, works, server in MATRIX
    }


def why_moved(facts, criterion, tool, then, now):
    """One line on why the rating is what it is, against the study's: the facts that decide it."""
    name, has, more = next(c for c in CRITERIA if c[0] == criterion)
    head = f"{then} → {now}" if then is not None else f"{now} (not rated by the study)"
    if now == 3:
        return f"{head}: " + "; ".join(FACTS[f][0] for f in more)
    missing = [FACTS[f][0] for f in (has if now == 1 else more) if not holds(facts, f, tool)]
    return f"{head}: lacks: " + "; ".join(missing)


# The first page: for each situation a reader may be in, the tools whose facts fit it, each reason a
# fact (established above) and the section that shows its evidence. A situation's tools are those for
# which every fact it asks holds; `order` ranks them (the first is the recommendation).
SITUATIONS = [
    (
        "On your own, offline, free",
        ["free_tier", "works_offline", "local_viewer", "epoch_cost_small"],
        "epoch_ms",
    ),
    ("A team that wants a hosted service", ["hosted_service", "access_control", "sso"], "epoch_ms"),
    (
        "Must self-host, with no contract",
        ["server_runs_here", "open_source_server", "self_hosted_access"],
        "epoch_ms",
    ),
    ("Leaving Neptune", ["export_target"], "epoch_ms"),
    ("Logging a lot on fast GPUs", ["epoch_cost_small", "keeps_up_at_load"], "load_ms"),
]


def free_tier(ev, tool):
    return external(ev, "free_tier", tool)


def open_source_server(ev, tool):
    return external(ev, "open_source_licence", tool)


def server_runs_here(ev, tool):
    here = ev.probes[tool].get("server_here")
    return (here["accepted"], said(here)) if here else (False, "no server in the installed client")


def export_target(ev, tool):
    holds = trackers.get(BENCH_PREFIX[tool]).exports
    return holds, (
        f"neptune_export.py --to {BENCH_PREFIX[tool]} moves Neptune's local runs into it, segments as one run"
        if holds
        else "not a target of neptune_export.py"
    )


def keeps_up_at_load(ev, tool):
    """At the load sweep's busiest point (1,000 values a call, the highest call rate), the calls keep up."""
    points = [p for p in (ev.bench or {}).get("load_sweep", {}).get("points", []) if p["tool"] == BENCH_PREFIX[tool]]
    if not points:
        return False, "not measured (no benchmark given)"
    top = max(points, key=lambda p: (p["keys"], p["rate"]))
    kept = top["achieved_rate"] >= 0.9 * top["rate"]
    return (
        kept,
        f"{top['achieved_rate']:.0f} of {top['rate']} calls a second kept up with {top['keys']:,} values a call",
    )


DECISION_FACTS = {
    "free_tier": ("free to use", "external", free_tier),
    "open_source_server": ("its server is open source", "external", open_source_server),
    "server_runs_here": ("its server runs from the installed client", "probe", server_runs_here),
    "export_target": ("a target of neptune_export.py", "probe", export_target),
    "keeps_up_at_load": ("keeps up with 1,000 values a call at 250 calls a second", "measurement", keeps_up_at_load),
}
FACTS.update(DECISION_FACTS)


def order_key(ev, tool, order):
    """How the tools that fit a situation are ranked, (measure, its 95% interval or None): the
    milliseconds added to a GPU-paced epoch, or the cheapest call at the load sweep's busiest point."""
    b = ev.bench or {}
    if order == "load_ms":
        points = [p for p in b.get("load_sweep", {}).get("points", []) if p["tool"] == BENCH_PREFIX[tool]]
        best = max(points, key=lambda p: (p["keys"], p["rate"]))["call_ms_median"] if points else float("inf")
        return best, None
    cp = b.get("critical_path", {}).get(BENCH_PREFIX[tool])
    return (cp["ms_per_epoch"], tuple(cp["ci95"])) if cp else (float("inf"), None)


def told_apart(first, other):
    """Whether `other` measured worse than `first` beyond doubt: their 95% intervals do not overlap
    (a measure without an interval is taken as it is)."""
    (a, a_ci), (b, b_ci) = first, other
    return b > a if a_ci is None or b_ci is None else b_ci[0] > a_ci[1]


def decide(ev, facts):
    """[(situation, [tools that fit], how many lead, the facts asked)]: the tools that lead are the best by
    the situation's measure and every other whose measure cannot be told apart from the best's, in the
    measure's order; the rest follow in that order."""
    out = []
    for situation, asked, order in SITUATIONS:
        keys = {t: order_key(ev, t, order) for t in TOOLS if all(holds(facts, f, t) for f in asked)}
        fit = sorted(keys, key=lambda t: keys[t][0])
        lead = [t for t in fit if not told_apart(keys[fit[0]], keys[t])]
        out.append((situation, lead + [t for t in fit if t not in lead], len(lead), asked))
    return out
