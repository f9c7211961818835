# Two commands do all the set-up on a fresh machine:
#   make search   virtual environment + the full architecture search on two moons
#   make test     virtual environment + lint, format check, type check, tests, notebooks
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch is pinned in the same pip command: left open, pip may pull a GPU build of
# several GB
TORCH ?= torch==2.13.0
PIP_INSTALL = $(BIN)/python -m pip install --disable-pip-version-check -q

.PHONY: search random test lint notebooks benchmark clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.core: pyproject.toml | $(BIN)/python
	$(PIP_INSTALL) "$(TORCH)" -e .
	touch $@

$(VENV)/.test: pyproject.toml | $(BIN)/python
	$(PIP_INSTALL) "$(TORCH)" -e ".[test]"
	touch $@ $(VENV)/.core

$(VENV)/.notebooks: pyproject.toml | $(BIN)/python
	$(PIP_INSTALL) "$(TORCH)" -e ".[notebooks,distributed]"
	touch $@ $(VENV)/.core

# a second `make search` continues an interrupted run (or shows a finished one's
# summary); delete runs/search to start again
search: $(VENV)/.core
	if [ -f runs/search/run.json ]; then \
		$(BIN)/python -m automl_lib search --resume runs/search; \
	else \
		$(BIN)/python -m automl_lib search --out runs/search; \
	fi

random: $(VENV)/.core
	$(BIN)/python -m automl_lib random --num 5000 --out runs/random --overwrite

lint: $(VENV)/.test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy automl_lib

test: lint
	AUTOML_QUICK=1 $(BIN)/pytest

notebooks: $(VENV)/.notebooks
	$(BIN)/jupyter lab notebooks/

benchmark: $(VENV)/.core
	$(BIN)/python benchmarks/child_training.py

clean:
	rm -rf $(VENV) runs
