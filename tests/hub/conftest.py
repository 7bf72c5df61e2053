"""Fixtures for the hub tests: a run directory in the exact format of docs/reference/formats.md, and a loopback Hub."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from charter.agreement.api import agreement_report
from charter.agreement.config import AgreementConfig
from charter.records import UsageRow
from tests.support.rundir import RunBuilder

from .fakehub import Server

TOKEN = "hf_" + "FakeLoopbackToken0123456789abcdefgh"

CONSTITUTION = """\
name: tiny-hhh
version: "2"
description: A two-principle constitution for tests.
principles:
  - id: harmless
    description: Avoid helping with harm.
    critique_request: "How is this response harmful? {response}"
    revision_request: Rewrite it to be harmless.
    comparison: Which response is less harmful?
    weight: 2
  - id: honest
    description: Say only what is true | and admit uncertainty.
    critique_request: How is this response dishonest?
    revision_request: Rewrite it to be honest.
    comparison: Which response is more honest?
"""


def build_run(
    run_dir: Path,
    *,
    n_pairs: int = 12,
    human_labels: int = 4,
    agreement: dict | None = None,
    config_extra: dict | None = None,
    responses: dict[int, str] | None = None,
    constitution_text: str = CONSTITUTION,
) -> Path:
    """A complete run directory through the shared builder: pairs, judgments, chains, usage, human labels, the
    agreement summary, data files. The stored config also holds secret-looking keys (published stripped).
    `responses` replaces response `a` of pair i (to plant text in what a model wrote); `constitution_text` is the
    constitution's YAML (its principles include `harmless`, which the judgments name)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    constitution = run_dir.parent / f"{run_dir.name}-constitution.yaml"
    constitution.write_text(constitution_text, encoding="utf-8")
    config = {
        "filters": {"min_confidence": 0.05, "drop_inconsistent": False},
        "policy": {"model": "scripted:cai", "params": {"temperature": 0.7, "max_tokens": 256}},
        **({"agreement": agreement} if agreement is not None else {}),
    }
    secrets = {
        "models": {"policy": {"model": "scripted:cai", "api_key_env": "OPENAI_API_KEY"}},
        "provider": {"api_key": "", "headers": {"Authorization": "Bearer abc-not-a-real-token"}},
        **(config_extra or {}),
    }
    with RunBuilder(run_dir, config=config, constitution=constitution, extra_config=secrets) as run:
        for i in range(n_pairs):
            prompt_id = f"prompt-{i // 2}"
            if i % 2 == 0:
                run.chain(
                    prompt_id,
                    ["harmless"],
                    initial=f"No{i}.",
                    final=f"I cannot help with that, {i}.",
                    text=f"Prompt number {i // 2}?",
                )
            short, long = f"No{i}.", f"I cannot help with that, but here is a safer idea number {i}."
            a, b = (long, short) if i % 3 else (short, long)
            a = (responses or {}).get(i, a)
            run.pair(
                f"pair-{i}", prompt_id, a, b, a_source="revision", b_source="initial", text=f"Prompt number {i // 2}?"
            )
            p_ab, p_ba = (0.8, 0.7) if i % 4 else (0.7, 0.4)
            run.judgment(f"pair-{i}", (p_ab + p_ba) / 2, p_ab=p_ab, p_ba=p_ba, principles=["harmless"])
        run.usage(
            UsageRow(
                role="policy",
                model="scripted:cai",
                calls=12,
                cached=2,
                prompt_tokens=900,
                completion_tokens=300,
                cost_usd=0.0123,
            ),
            UsageRow(
                role="judge",
                model="scripted:cai",
                calls=24,
                cached=0,
                prompt_tokens=2400,
                completion_tokens=24,
                cost_usd=0.0042,
            ),
        )
        run.spot_sample((f"pair-{i}", "harmless", "ab" if i % 3 else "ba") for i in range(human_labels))
        for i in range(human_labels):
            run.label(f"pair-{i}", "ann", "a" if i % 2 else "b", "ab" if i % 3 else "ba", created_at=1735776000.0 + i)
        run.write_dataset()
    if human_labels:
        agreement_report(run_dir, AgreementConfig(bootstrap_samples=100, calibration="none"))
    return run_dir


@pytest.fixture
def make_run(tmp_path: Path) -> Callable[..., Path]:
    """Build a run directory under tmp_path: make_run(name="run", **build_run options)."""

    def make(name: str = "run", **options: Any) -> Path:
        return build_run(tmp_path / name, **options)

    return make


@pytest.fixture
def fake_hub(monkeypatch: pytest.MonkeyPatch):
    """huggingface_hub pointed at a loopback Hub, with a token. huggingface_hub reads HF_ENDPOINT once, at import,
    into `constants.ENDPOINT` (and the download URL template); HfApi reads those when built, so they are patched."""
    from huggingface_hub import constants

    with Server() as hub:
        monkeypatch.setattr(constants, "ENDPOINT", hub.url)
        monkeypatch.setattr(
            constants, "HUGGINGFACE_CO_URL_TEMPLATE", hub.url + "/{repo_id}/resolve/{revision}/{filename}"
        )  # built from ENDPOINT at import
        monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
        monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True, raising=False)
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
        monkeypatch.setenv("HF_TOKEN", TOKEN)
        yield hub


@pytest.fixture(scope="session")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One dry-run export shared by the read-only tests (the CLI path, as a user runs it); its run is beside it."""
    from charter.cli import main

    base = tmp_path_factory.mktemp("export")
    run = build_run(base / "run")
    assert main(["push", str(run), "--repo-id", "org/tiny-hhh", "--dry-run", str(base / "out")]) == 0
    return base / "out"


@pytest.fixture(autouse=True)
def _no_ambient_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests see no real keys from the machine they run on."""
    for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(name, raising=False)
