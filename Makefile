# make run        set up, train and track the job with each tool of the registry offline (no account needed),
#                 then build a report of those runs: $(OUT)/report.pdf
# make search     one hyperparameter search of TRIALS trials per tool offline, trained with the flags
#                 SEARCH, and the default recipe trained with the same flags: $(OUT)/search/
# make benchmark  the engine's and the trackers' costs, with intervals: $(OUT)/benchmark.json
# make evidence   replace report/evidence with the runs (and benchmark, and searches) in $(OUT)
# make report     rebuild the committed report/report.pdf from report/evidence alone
# make docs       print the figures of README.md and docs/ from report/evidence
# make lint       ruff check and ruff format --check (configured in pyproject.toml)
# make test       set up, then run the test suite
# make test-ddp   the two-process torchrun launch of each script, 30 times in a row (about an hour)
# Variables: DATA (CIFAR-10 folder, default data), OUT (default runs), ARGS (more flags for every script).
PY := .venv/bin/python
DATA ?= data
OUT ?= runs
ARGS ?=
SEARCH ?= --train-size 5000 --epochs 4 --batch-size 128
TRIALS ?= 20

.venv/installed: requirements.txt
	python3 -m venv .venv
	.venv/bin/pip install -q -r requirements.txt
	touch $@

# Each tool of the registry (trackers/__init__.py) as `key script`, one a line.
TOOLS = $(PY) -m trackers

run: .venv/installed
	$(TOOLS) | while read key script; do \
		$(PY) $$script --mode offline --data-dir $(DATA) --out-dir $(OUT)/$$key $(ARGS) < /dev/null || exit 1; done
	$(PY) report/build.py --runs $(OUT) --pdf $(OUT)/report.pdf

search: .venv/installed
	$(TOOLS) | while read key script; do \
		$(PY) $$script --mode offline --data-dir $(DATA) --out-dir $(OUT)/search/$$key $(SEARCH) --search $(TRIALS) \
			$(ARGS) < /dev/null || exit 1; done
	$(PY) wandb_setup_script.py --mode disabled --data-dir $(DATA) --out-dir $(OUT)/search/default $(SEARCH) $(ARGS)

benchmark: .venv/installed
	mkdir -p $(OUT)
	$(PY) benchmarks/run.py --quick --json > $(OUT)/benchmark.json.part
	mv $(OUT)/benchmark.json.part $(OUT)/benchmark.json

evidence: .venv/installed
	$(PY) report/collect.py --runs $(OUT) $(if $(wildcard $(OUT)/benchmark.json),--bench $(OUT)/benchmark.json) \
		$(if $(wildcard $(OUT)/search),--search $(OUT)/search)

report: .venv/installed
	$(PY) report/build.py --pdf report/report.pdf

docs: .venv/installed
	$(PY) report/docs.py

lint: .venv/installed
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

test: .venv/installed
	$(PY) -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder --durations=8 tests

test-ddp: .venv/installed
	DDP_REPEATS=30 $(PY) -m pytest -q -x tests/test_ddp.py -k again_and_again

.PHONY: run search benchmark evidence report docs lint test test-ddp
