# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo validate test check-full lint bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# Reinstall when the project's metadata changes.
$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e ".[dev]"
	touch $(STAMP)

DEMO_DB ?= demo-db
DEMO_SQL ?= SELECT formula, spacegroup_symbol AS sg, nsites, round(max_frequency_cm1, 1) AS max_cm1, round(cm1_to_thz(max_frequency_cm1), 2) AS max_thz, likely_unstable FROM material_summary ORDER BY max_frequency_cm1 DESC LIMIT 12

# The main job on the built-in default: build the demo database, then query it with DuckDB.
demo: $(STAMP)
	$(VENV)/bin/vgnn build --source demo --models mvn,kmvn --out $(DEMO_DB)
	$(VENV)/bin/vgnn query "$(DEMO_SQL)" --release $(DEMO_DB)

# Exactness check of the physics path against phonopy's example force constants.
validate: $(STAMP)
	$(VENV)/bin/vgnn demo

test: $(STAMP)
	$(PY) -m pytest -m "not slow" -q

check-full: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check vgnn_core storage flows tests benchmarks

bench: $(STAMP)
	$(PY) benchmarks/bench_inference.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
