# distill-bench: `make run` (set up + run the embedded demo + report) and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# torch 2.14.1 + torchvision 0.29.1: a CUDA build that also runs on CPU (see README).
TORCH_PINS := torch==2.14.1 torchvision==0.29.1

.PHONY: setup run test lint bench-data bench-postgres clean

setup: $(STAMP) bench-data bench-postgres

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH_PINS)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Debian's dataset-fashion-mnist puts the IDX files under /usr/share/datasets/fashion-mnist.
bench-data:
	@if [ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then :; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		(apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 || \
		 (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q dataset-fashion-mnist >/dev/null)) \
		|| echo "warning: could not install dataset-fashion-mnist; see README (Fashion-MNIST)"; \
	else \
		echo "note: apt is not usable here: install dataset-fashion-mnist (sudo apt-get install dataset-fashion-mnist)"; \
		echo "      or put the four Fashion-MNIST IDX files in \$$BENCH_DATA/fashion-mnist (see README)"; \
	fi

# The multi-worker tests start a throw-away PostgreSQL server (initdb + pg_ctl) on 127.0.0.1.
bench-postgres:
	@if command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then :; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		(apt-get install -y -q postgresql >/dev/null 2>&1 || \
		 (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q postgresql >/dev/null)) \
		|| echo "warning: could not install postgresql; the PostgreSQL worker tests will fail"; \
	else \
		echo "note: install the PostgreSQL server (sudo apt-get install postgresql) for the worker tests"; \
	fi

run: setup
	$(BIN)/bench run --grid studies/demo.yaml
	$(BIN)/bench report

test: setup
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) results.db results.db-* reports/*.md reports/*.png
