# distill-bench: `make run` (set up + run the embedded demo + report) and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# torch 2.14.1 + torchvision 0.29.1: a CUDA build that also runs on CPU (see README).
TORCH_PINS := torch==2.14.1 torchvision==0.29.1

.PHONY: setup run test lint docs bench-data browser bench-postgres bench-slurm clean

setup: $(STAMP) bench-data browser bench-postgres bench-slurm

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH_PINS)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# $(call apt_install,CHECK,PACKAGE,WHY): install a Debian package when CHECK fails and apt is usable
# (as root); otherwise say what to do. Never fails set-up: the tests that need it say so loudly.
define apt_install
	@if $(1); then :; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		(apt-get install -y -q $(2) >/dev/null 2>&1 || \
		 (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q $(2) >/dev/null)) \
		|| echo "warning: could not install $(2): $(3)"; \
	else \
		echo "note: apt is not usable here: sudo apt-get install $(2) ($(3))"; \
	fi
endef

# Debian's dataset-fashion-mnist puts the IDX files under /usr/share/datasets/fashion-mnist.
bench-data:
	$(call apt_install,[ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ],dataset-fashion-mnist,\
	the demo needs it; or put the four IDX files in $$BENCH_DATA/fashion-mnist - see README)

# Debian's chromium renders report.html headless in the report tests (CI fails loudly without it).
browser:
	$(call apt_install,command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1,\
	chromium,the HTML report screenshot test needs it)

# The multi-worker tests start a throw-away PostgreSQL server (initdb + pg_ctl) on 127.0.0.1.
bench-postgres:
	$(call apt_install,command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1,\
	postgresql,the PostgreSQL worker tests need it)

# The live-SLURM tests start munged, slurmctld and slurmd (one node on 127.0.0.1, config in a temp dir) as root.
bench-slurm:
	$(call apt_install,command -v slurmctld >/dev/null 2>&1 && command -v slurmd >/dev/null 2>&1 && command -v munged >/dev/null 2>&1,\
	slurm-wlm munge,the live-SLURM tests of bench launch need them)

run: setup
	$(BIN)/bench run --grid studies/demo.yaml
	$(BIN)/bench run --grid studies/demo-matched.yaml  # the steps-matched scratch arm
	$(BIN)/bench report

test: setup
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check .

# The documentation site (mkdocs-material, offline): reference pages generated from the code, then a strict build
# (a broken link fails). `make test` builds it too (tests/test_docs.py).
docs: setup
	$(BIN)/python tools/docs_reference.py
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

clean:
	rm -rf build docs/reference $(VENV) results.db results.db-* artifacts reports/report.md reports/*.png reports/*.svg reports/*.html reports/*.csv reports/*.tex
