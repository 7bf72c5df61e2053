"""Fixtures for the hub tests: a run directory in the exact format of docs/FORMATS.md, and a loopback Hub."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from charter.constitutions import load_constitution
from charter.pipeline.store import RunStore

from .fakehub import FakeHub, Server

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

#: The agreement helper's label table (charter.agreement.labels), as documented in the brief.
HUMAN_LABELS_SQL = """CREATE TABLE IF NOT EXISTS human_labels (
  pair_id TEXT, annotator TEXT, label TEXT CHECK (label IN ('a', 'b', 'tie', 'skip')), shown_order TEXT,
  created_at REAL, replaced_count INTEGER DEFAULT 0, PRIMARY KEY (pair_id, annotator));"""


def _messages(role: str, text: str) -> list[dict]:
    return [{"role": role, "content": text}]


def _pair_and_judgment(i: int, prompt_id: str, run: dict) -> tuple[dict, dict]:
    short, long = f"No{i}.", f"I cannot help with that, but here is a safer idea number {i}."
    a, b = (long, short) if i % 3 else (short, long)
    pair = {"pair_id": f"pair-{i}", "prompt_id": prompt_id, "kind": "revision",
            "prompt": _messages("user", f"Prompt number {i // 2}?"), "a": a, "b": b,
            "a_source": "revision", "b_source": "initial", "a_model": run["policy"], "b_model": run["policy"]}
    p_ab, p_ba = (0.8, 0.7) if i % 4 else (0.7, 0.4)
    judgment = {"pair_id": pair["pair_id"], "status": "ok", "mode": "logprobs", "orders": "both",
                "p_a": (p_ab + p_ba) / 2, "p_a_ab": p_ab, "p_a_ba": p_ba,
                "position_consistent": (p_ab > 0.5) == (p_ba > 0.5),
                "principles": [{"principle_id": "harmless", "p_a": (p_ab + p_ba) / 2, "p_a_ab": p_ab,
                                "p_a_ba": p_ba, "consistent": (p_ab > 0.5) == (p_ba > 0.5),
                                "rationale_ab": None, "rationale_ba": None}],
                "judge_model": run["judge"], "prompt_tokens": 100, "completion_tokens": 1, "error": None,
                "raw": None}
    return pair, judgment


def _preference_row(pair: dict, judgment: dict, meta: dict) -> dict:
    p = judgment["p_a"]
    chosen, rejected = ("a", "b") if p >= 0.5 else ("b", "a")
    p_chosen = max(p, 1 - p)
    flip = (lambda x: x) if chosen == "a" else (lambda x: 1 - x)
    return {
        "prompt": pair["prompt"], "chosen": _messages("assistant", pair[chosen]),
        "rejected": _messages("assistant", pair[rejected]), "p_chosen": p_chosen, "p_chosen_calibrated": None,
        "margin": 2 * p_chosen - 1, "pair_id": pair["pair_id"], "prompt_id": pair["prompt_id"],
        "pair_kind": pair["kind"], "chosen_source": pair[f"{chosen}_source"],
        "rejected_source": pair[f"{rejected}_source"], "principle_ids": ["harmless"],
        "per_principle": json.dumps(judgment["principles"]),
        "per_order": json.dumps({"ab": flip(judgment["p_a_ab"]), "ba": flip(judgment["p_a_ba"])}),
        "position_consistent": judgment["position_consistent"],
        "constitution_name": meta["constitution"]["name"], "constitution_hash": meta["constitution"]["hash"],
        "policy_model": meta["models"]["policy"], "critic_model": meta["models"]["critic"],
        "judge_model": meta["models"]["judge"], "judge_mode": "logprobs", "run_id": meta["run_id"],
        "created_at": meta["created_at"], "synthetic": True, "generator": "charter 0.1.0",
    }


def _sft_row(pair: dict, meta: dict) -> dict:
    return {"messages": pair["prompt"] + _messages("assistant", pair["a"]), "prompt_id": pair["prompt_id"],
            "principle_ids": ["harmless"], "rounds": 1, "constitution_name": meta["constitution"]["name"],
            "constitution_hash": meta["constitution"]["hash"], "policy_model": meta["models"]["policy"],
            "critic_model": meta["models"]["critic"], "run_id": meta["run_id"], "created_at": meta["created_at"],
            "synthetic": True, "generator": "charter 0.1.0"}


def _write_rows(rows: list[dict], stem: Path) -> None:
    stem.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), f"{stem}.parquet")
    stem.with_suffix(".jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def build_run(run_dir: Path, *, n_pairs: int = 12, human_labels: int = 4, agreement: dict | None = None,
              config_extra: dict | None = None, row_patch: Callable[[list[dict]], None] | None = None) -> Path:
    """A complete run directory: store meta, pairs, judgments, usage, human labels, data files, YAML files."""
    (run_dir).mkdir(parents=True, exist_ok=True)
    (run_dir / "constitution.yaml").write_text(CONSTITUTION, encoding="utf-8")
    constitution = load_constitution(run_dir / "constitution.yaml")
    models = {"policy": "scripted:cai", "critic": "scripted:cai", "judge": "scripted:cai"}
    config: dict[str, Any] = {
        "constitution": "constitution.yaml",
        "models": {"policy": {"model": "scripted:cai", "api_key_env": "OPENAI_API_KEY"}},
        "preference": {"filters": {"min_confidence": 0.6, "drop_inconsistent": True}},
        "provider": {"api_key": "", "headers": {"Authorization": "Bearer abc-not-a-real-token"}},
        **(config_extra or {}),
    }
    if agreement is not None:
        config["agreement"] = agreement
    meta = {
        "run_id": "run-test-0001", "created_at": "2025-01-01T00:00:00Z", "config": config,
        "constitution": {"name": constitution.name, "version": constitution.version, "hash": constitution.hash,
                         "principles": constitution.principle_ids},
        "models": models,
        "sampling": {"policy": {"temperature": 0.7, "max_tokens": 256}, "critic": {"temperature": 0.0},
                     "judge": {"temperature": 0.0, "max_tokens": 1}},
        "judge": {"mode": "logprobs", "orders": "both", "principles_per_pair": 1, "clamp": [0.4, 0.6]},
        "counts": {"prompts_total": n_pairs // 2, "pairs": n_pairs, "judged": n_pairs, "judge_failures": 0,
                   "preferences_before_filters": n_pairs, "dropped_low_confidence": 0, "preferences": n_pairs},
        "agreement": {"n_labels": human_labels, "judge_human": {"kappa": {"value": 0.41, "ci_low": 0.12,
                                                                          "ci_high": 0.66, "n": human_labels}}},
    }
    pairs, judgments = zip(*[_pair_and_judgment(i, f"prompt-{i // 2}", models) for i in range(n_pairs)])
    with RunStore(run_dir, create=True) as store:
        store.set_meta(**meta)
        store.put_records("pairs", ("pair_id", "prompt_id", "kind"),
                          [((p["pair_id"], p["prompt_id"], p["kind"]), p) for p in pairs])
        store.put_records("judgments", ("pair_id", "status"), [((j["pair_id"], j["status"]), j) for j in judgments])
        store.add_usage([{"role": "policy", "model": "scripted:cai", "calls": 12, "cached": 2, "prompt_tokens": 900,
                          "completion_tokens": 300, "cost_usd": 0.0123},
                         {"role": "judge", "model": "scripted:cai", "calls": 24, "cached": 0,
                          "prompt_tokens": 2400, "completion_tokens": 24, "cost_usd": 0.0042}])
        store.ensure(HUMAN_LABELS_SQL)
        store.write("INSERT INTO human_labels (pair_id, annotator, label, shown_order, created_at)"
                    " VALUES (?, ?, ?, ?, ?)",
                    [(f"pair-{i}", "ann", "a" if i % 2 else "b", "ab" if i % 3 else "ba", 1735776000.0 + i)
                     for i in range(human_labels)])
    rows = [_preference_row(p, j, meta) for p, j in zip(pairs, judgments)]
    if row_patch:
        row_patch(rows)
    _write_rows(rows, run_dir / "data" / "preferences")
    _write_rows([_sft_row(p, meta) for p in pairs[::2]], run_dir / "data" / "sft")
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
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
        monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                            hub.url + "/{repo_id}/resolve/{revision}/{filename}")  # built from ENDPOINT at import
        monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
        monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True, raising=False)
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
        monkeypatch.setenv("HF_TOKEN", TOKEN)
        yield hub


@pytest.fixture(autouse=True)
def _no_ambient_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests see no real keys from the machine they run on."""
    for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(name, raising=False)
