# Two set-up commands: `make demo` and `make test`. Both create .venv when missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# pytest-xdist workers for `make test` (auto: one per core; 0: one process).
TEST_WORKERS ?= auto

.PHONY: demo test lint clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

# The suite also runs the optional integrations (Hugging Face datasets, WebDataset, ONNX,
# TensorBoard, W&B offline, Lightning) instead of skipping them.
$(VENV)/.installed-extras: $(VENV)/.installed
	$(PY) -m pip install -q -e '.[dev,all]'
	touch $@

# The quickstart on the bundled digits: fit the teacher, distil with TAS, train the
# same student alone for comparison, and print both. --overwrite makes a second
# `make demo` start the two runs over (the fitted teacher stays in the teacher store and is reused).
demo: $(VENV)/.installed
	$(VENV)/bin/tasgen plan specs/quickstart.yaml
	$(VENV)/bin/tasgen train specs/quickstart.yaml --overwrite
	$(VENV)/bin/tasgen train specs/quickstart.yaml --set distill.method=none --set name=quickstart-alone --overwrite
	$(VENV)/bin/tasgen compare runs/quickstart-alone runs/quickstart

# One worker per core, each with one torch thread (tests/conftest.py); worksteal keeps
# both cores busy until the last slow test ends.
test: $(VENV)/.installed-extras
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist worksteal

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check tasgen cli tests

clean:
	rm -rf $(VENV) runs .pytest_cache
