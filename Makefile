# degflow quick start (see README):
#   make run    set up .venv and run the workflow on the bundled example (results/ filled)
#   make test   set up .venv and run the test suite
# Variables: CORES (default all), PYTHON (a Python 3.11 interpreter), SNAKEMAKE_ARGS (extra snakemake flags).
PYTHON ?= python3.11
VENV ?= .venv
CORES ?= all
SNAKEMAKE_ARGS ?=
UV_VERSION := 0.13.9

.PHONY: run test setup report clean

run: $(VENV)/.installed
	$(VENV)/bin/snakemake --cores $(CORES) $(SNAKEMAKE_ARGS)

test: $(VENV)/.installed
	$(VENV)/bin/python -m pytest

report: $(VENV)/.installed
	$(VENV)/bin/snakemake --cores $(CORES) $(SNAKEMAKE_ARGS) --report results/report.html

setup: $(VENV)/.installed

# Exact versions come from requirements.lock (made with `uv pip compile pyproject.toml --extra test --extra slurm --extra harmony`).
$(VENV)/.installed: pyproject.toml requirements.lock
	$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "degflow needs Python 3.11: make PYTHON=/path/to/python3.11"'
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(VENV)/bin/uv pip install --quiet --compile-bytecode --python $(VENV)/bin/python -r requirements.lock
	$(VENV)/bin/uv pip install --quiet --python $(VENV)/bin/python --no-deps -e .
	touch $@

clean:
	rm -rf results logs .snakemake
