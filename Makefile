# darwin-release: `make install`, `make release`, `make test`. See README.md.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU wheel on machines like ours; on a GPU box: make install TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"
TORCH_SPEC ?= torch==2.13.0
CONFIG ?= configs/default.yaml
HUB_ROOT ?= .hub
HUB_PORT ?= 8765

export HF_HUB_DISABLE_TELEMETRY := 1
export GRADIO_ANALYTICS_ENABLED := False

.PHONY: install test release hub space watch bench zoo clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet $(TORCH_SPEC)
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

test: install
	$(BIN)/python -m pytest -q

release: install
	$(BIN)/darwin-release run $(CONFIG)

# Serve the embedded default's Hub store again (read-only without a token) at the same URL.
hub: install
	$(BIN)/python -m release.localhub --root $(HUB_ROOT) --port $(HUB_PORT)

# Chat locally with the child pushed by the last `make release`.
space: install
	$(BIN)/darwin-release space-serve $(CONFIG)

# The search's live dashboard (trackio; search.track: true) on 127.0.0.1.
watch: install
	$(BIN)/darwin-release watch $(CONFIG)

bench: install
	$(BIN)/python -m bench

# Retrain the trained tiny zoo (release/zoo/: models, tasks, SHA256SUMS) on CPU, one thread, deterministic.
# `make release` never trains: it uses the committed files. Check instead: python -m release.zoo --check
zoo: install
	OMP_NUM_THREADS=1 $(BIN)/python -m release.zoo

clean:
	rm -rf runs $(HUB_ROOT) bench/out
