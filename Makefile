# make run     set up, train and track the job with both tools offline (no account needed), then report
# make report  benchmark, then build report/report.pdf from the runs in $(OUT)
# make test    set up, then run the test suite
# Variables: DATA (CIFAR-10 folder, default data), OUT (default runs), ARGS (more flags for both scripts).
PY := .venv/bin/python
DATA ?= data
OUT ?= runs
ARGS ?=

.venv/installed: requirements.txt
	python3 -m venv .venv
	.venv/bin/pip install -q -r requirements.txt
	touch $@

run: .venv/installed
	$(PY) wandb_setup_script.py --mode offline --data-dir $(DATA) --out-dir $(OUT)/wandb $(ARGS)
	$(PY) neptune_integration.py --mode offline --data-dir $(DATA) --out-dir $(OUT)/neptune $(ARGS)
	$(MAKE) report

report: .venv/installed
	$(PY) benchmarks/run.py --quick --json > $(OUT)/benchmark.json
	$(PY) report/build.py --out-dir $(OUT) --bench $(OUT)/benchmark.json

test: .venv/installed
	$(PY) -m pytest -q --durations=8 tests

.PHONY: run report test
