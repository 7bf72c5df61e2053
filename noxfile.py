"""The RL frameworks' test environments, one a framework: `nox -s frameworks` (run by `make test`) makes each with
uv and runs that framework's tests in it against the framework's own code (`pytest --framework NAME`; the list of
tests is `tests/frameworks.py`). Their pins conflict with each other's and charter's (verifiers: mcp==2.0.0 and
openai<3; OpenEnv: fastmcp<4, so mcp<2; verl: transformers<5.11), so no one environment can hold them; each is what
the resolver makes of charter's extras (`CHARTER_EXTRAS`) and the framework's extra in pyproject.toml, where the
versions are, less what its `[tool.uv]` overrides drop (uv reads them where it runs: the checkout). uv links every
environment's packages from its one cache, so torch and the rest are downloaded once and a warm environment is made
in seconds."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import nox

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tests.frameworks import FRAMEWORK_TESTS  # noqa: E402 - the tests of each framework, which pytest reads too

nox.options.default_venv_backend = "uv"
nox.options.sessions = ["frameworks"]
nox.options.error_on_missing_interpreters = True

PYTHON = "3.11"
#: Each framework's extra in pyproject.toml; a framework with no tests yet is made and imported, so that its
#: environment is known to resolve and install.
FRAMEWORKS = ("verifiers", "openenv", "verl", "openrlhf", "agentdojo")
#: The packages each framework's environment installs beside charter (the example verifiers environment, installed
#: as environments are: the docs and tests load it by id).
EXTRA_PACKAGES = {"verifiers": ["./examples/verifiers-constitution"]}
#: The modules that import a framework, type-checked in its environment, where its types are (the main check leaves
#: them out: pyproject.toml's `[tool.pyright]`).
TYPED = {
    "verifiers": ["src/charter/integrations/verifiers.py"],
    "openenv": ["src/charter/integrations/openenv.py"],
    "agentdojo": ["src/charter/integrations/agentdojo.py"],
}
#: charter's extras in every framework's environment: the reward server, the rank scoring's Plackett–Luce fit
#: (`agreement`: choix) and the tests' own needs.
CHARTER_EXTRAS = "serve,agreement,test"


def _pyright(session: nox.Session, modules: list[str]) -> None:
    """pyright (the main environment's: `dev` pins it) over `modules`, with the session's environment's packages."""
    env = Path(session.virtualenv.location)
    folder = Path(session.create_tmp()).resolve()
    config = folder / "pyrightconfig.json"
    settings = {  # pyright takes a config's paths relative to its folder
        "include": [os.path.relpath(Path(m).resolve(), folder) for m in modules],
        "extraPaths": [os.path.relpath(Path("src").resolve(), folder)],
        "venvPath": str(env.parent),
        "venv": env.name,
        "pythonVersion": PYTHON,
        "typeCheckingMode": "basic",
    }
    config.write_text(json.dumps(settings))
    pyright = shutil.which("pyright") or str(Path(sys.executable).parent / "pyright")
    session.run(pyright, "--project", str(config), external=True)


def _find_links() -> list[str]:
    """The wheel folders pip is told of (`PIP_FIND_LINKS`, where this machine keeps torch's CPU wheel), for uv, which
    does not read pip's configuration."""
    links = os.environ.get("UV_FIND_LINKS") or os.environ.get("PIP_FIND_LINKS") or ""
    return [arg for link in links.split() for arg in ("--find-links", link)]


@nox.session(python=PYTHON)
@nox.parametrize("framework", FRAMEWORKS, ids=list(FRAMEWORKS))
def frameworks(session: nox.Session, framework: str) -> None:
    """One framework's environment, made afresh, and its tests."""
    # uv runs in the checkout, so it applies pyproject.toml's `[tool.uv]` overrides: what is never installed
    # (OpenRLHF's flash-attn and deepspeed, which would build CUDA kernels from source)
    session.install(*_find_links(), "-e", f".[{CHARTER_EXTRAS},{framework}]", *EXTRA_PACKAGES.get(framework, []))
    if framework in TYPED:
        _pyright(session, TYPED[framework])
    if framework in FRAMEWORK_TESTS:
        session.run(
            "python", "-m", "pytest", "-q", "-p", "no:cacheprovider", "--framework", framework, *session.posargs
        )
    else:
        session.run("python", "-c", f"import {framework}; print({framework}.__name__, 'imports')")
