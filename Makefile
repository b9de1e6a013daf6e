# bsnc: `make demo` sets everything up and runs the main job; `make test` sets everything up
# and runs the whole test suite. Both start from a clean clone.

PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
# TORCH=default: torch and torchvision from PyPI, pinned to the builds that lie on this project's
# machines (on Linux x86-64 that is the CUDA build, ~6 GB with its libraries).
# TORCH=cpu: the same versions, CPU-only, from PyTorch's own index (~0.2 GB); it needs access to
# download.pytorch.org, which this project's machines lack: that path is not exercised here.
TORCH  ?= default
TORCH_PINS := torch==2.14.1 torchvision==0.29.1
TORCH_INDEX_cpu := https://download.pytorch.org/whl/cpu
STAMP  := $(VENV)/.installed-$(TORCH)

.PHONY: setup demo test bench bench-parse fuzz clean graphviz

setup: $(STAMP) graphviz

$(STAMP): pyproject.toml
	@case "$(TORCH)" in default|cpu) ;; *) \
	  echo "error: TORCH=$(TORCH): expected TORCH=default (PyPI's build) or TORCH=cpu (CPU-only build)" >&2; exit 1;; esac
	@for other in $(VENV)/.installed-default $(VENV)/.installed-cpu; do \
	  if [ -e "$$other" ] && [ "$$other" != "$(STAMP)" ]; then \
	    echo "error: $(VENV) was set up with $${other##*.installed-} torch; run 'make clean' before 'make setup TORCH=$(TORCH)'" >&2; \
	    exit 1; fi; done
	@command -v $(PYTHON) >/dev/null 2>&1 || { \
	  echo "error: $(PYTHON) not found; bsnc's set-up needs Python 3.10 or later (run: make PYTHON=python3.X ...)" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet $(TORCH_PINS) $(if $(TORCH_INDEX_$(TORCH)),--index-url $(TORCH_INDEX_$(TORCH)))
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

define USE_BSNC
	@echo
	@echo "bsnc is installed in $(VENV). To use it:"
	@echo "  . $(VENV)/bin/activate      # then: bsnc --help, bsnc check cnf_w8, ..."
	@echo "  or run $(VENV)/bin/bsnc directly"
endef

demo: setup
	$(PY) examples/demo.py
	$(USE_BSNC)

# DEVICE=cuda[:N] measures the search step, the executor's strategies and the memory layout on
# a GPU (the other benchmarks stay on the CPU)
DEVICE ?= cpu
bench: setup
	$(PY) benchmarks/bench.py
	$(PY) benchmarks/bench_search.py --device $(DEVICE)
	$(PY) benchmarks/bench_strategies.py --device $(DEVICE)
	$(PY) benchmarks/bench_layout.py --device $(DEVICE)

# a long fuzzing campaign of the front end and code generator: make fuzz MINUTES=240
MINUTES ?= 60
fuzz: setup
	$(PY) -m tests.fuzz --minutes $(MINUTES)

# parse time against file size (parsing is linear)
bench-parse: setup
	$(PY) benchmarks/bench_parse.py

test: setup
	$(PY) -m pytest -q -n 2
	$(USE_BSNC)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache demo-out runs fuzz-failures
