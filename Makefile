# aiida-cgcnn: the README's commands.
#
#   make demo    set everything up, then train a CGCNN through AiiDA on EMT alloys, predict, query provenance
#   make test    the whole test suite (slow tests included); extra pytest arguments in PYTEST_ARGS
#   make docs    the Sphinx site, warnings as errors, into docs/_build/html
#   make lint    ruff check and ruff format --check
#   make typecheck  mypy on the package (strict on the AiiDA layer; settings in pyproject.toml)
#   make clean   remove build outputs and runs (keeps .venv; `make distclean` removes it too)

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The stamp records a finished install; it is redone when the project's requirements change.
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
LINT_PATHS := aiida_cgcnn tests benchmarks

.DEFAULT_GOAL := help
.PHONY: help venv demo test docs lint typecheck clean distclean

help:
	@sed -n '3,8s/^#  //p' Makefile

venv: $(STAMP)

# constraints.txt pins torch to the CPU build that lies on the project's machines; without it pip
# would pull a CUDA build of several GB.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -c constraints.txt -e '.[tests,docs,dev,phonons]'
	touch $@

# the embedded default profile (verdi presto: SQLite, localhost, no service) unless one exists
demo: $(STAMP)
	$(BIN)/verdi profile show >/dev/null 2>&1 || $(BIN)/verdi presto
	$(BIN)/verdi run examples/train_and_predict.py

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadfile $(PYTEST_ARGS)

docs: $(STAMP)
	$(BIN)/sphinx-build -W --keep-going -b html docs docs/_build/html

lint: $(STAMP)
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)

typecheck: $(STAMP)
	$(BIN)/mypy aiida_cgcnn

clean:
	rm -rf docs/_build runs build dist .pytest_cache .ruff_cache .mypy_cache
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) *.egg-info
