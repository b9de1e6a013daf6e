# bsnc: `make demo` sets everything up and runs the main job; `make test` sets everything up
# and runs the whole test suite. Both start from a clean clone.

PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
# torch and torchvision are pinned to the builds that lie on this project's machines.
TORCH  := torch==2.14.1 torchvision==0.29.1

.PHONY: setup demo test bench bench-parse fuzz clean graphviz

setup: $(STAMP) graphviz

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { \
	  echo "error: $(PYTHON) not found; bsnc's set-up needs Python 3.11 (or run: make PYTHON=python3.X ...)" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

graphviz:
	@if command -v dot >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = "0" ]; then \
	  echo "installing Debian's graphviz (for diagrams)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq graphviz >/dev/null; \
	else \
	  echo "error: Graphviz's 'dot' is missing and this is not root; install it with: sudo apt-get install graphviz" >&2; \
	  exit 1; \
	fi

demo: setup
	$(PY) examples/demo.py

bench: setup
	$(PY) benchmarks/bench.py

# a long fuzzing campaign of the front end and code generator: make fuzz MINUTES=240
MINUTES ?= 60
fuzz: setup
	$(PY) -m tests.fuzz --minutes $(MINUTES)

# parse time against file size (parsing is linear)
bench-parse: setup
	$(PY) benchmarks/bench_parse.py

test: setup
	$(PY) -m pytest -q -n 2

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache demo-out runs fuzz-failures
