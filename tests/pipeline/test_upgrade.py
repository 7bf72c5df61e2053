"""A run made by the release before (charter 0.1.0: store schema 2, a call cache without a schema version), kept in
tests/fixtures/legacy_0_1_0 as that release left it when it stopped at its budget half-way: this release opens it,
upgrades its store and cache (a copy of each kept), and the same command resumes it without asking again for
anything the old release was answered. After every schema change this must still hold.

The judge's prompt has changed since (comparison format 3, laid out for provider caching): the two pairs 0.1.0
judged are judged again under it (a dataset never mixes two prompts' judgments); the chains it made are not made
again."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from charter.cli import main
from charter.runs.history import older_items
from charter.runs.items import judged_ids
from charter.runs.stages import stage_states
from charter.runs.store import SCHEMA_VERSION, RunStore
from charter.runs.usage import stored_usage
from charter.testing.loopback import LoopbackServer

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "legacy_0_1_0"
#: The address the fixture's models were served from (a loopback address of its own: the same URL again here).
HOST, PORT = "127.0.0.77", 8077


def canonical(body: object) -> str:
    return json.dumps(body, sort_keys=True)


@pytest.fixture
def legacy(tmp_path: Path) -> Path:
    """A copy of the fixture, its config pointed at the copy, its budget lifted (what the user does to resume)."""
    folder = tmp_path / "legacy"
    shutil.copytree(FIXTURE, folder)
    config = yaml.safe_load((folder / "config.yaml").read_text())
    config.update(output_dir=str(folder / "run"), cache=str(folder / "calls.sqlite"), budget={})
    (folder / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return folder


def test_a_run_of_0_1_0_resumes_with_no_call_repeated(legacy: Path, capsys) -> None:
    old = [json.loads(line) for line in (legacy / "requests.jsonl").read_text().splitlines()]
    answered = {canonical(r["body"]) for r in old if r["code"] == 200}
    with RunStore(legacy / "run") as store:  # opening it upgrades it
        done = {"chains": store.count("chains"), "judgments": store.count("judgments", "status = 'ok'")}
        assert store.meta("schema_version") == SCHEMA_VERSION
    assert (legacy / "run" / "run.sqlite.v2.bak").exists()
    assert done == {"chains": 4, "judgments": 2}  # what 0.1.0 did before its budget stopped it (and 1 failed)

    with LoopbackServer().start(HOST, PORT) as server:
        assert main(["run", str(legacy / "config.yaml")]) == 0
    asked = [canonical(r.body) for r in server.requests]
    assert not set(asked) & answered  # nothing the old release was answered is asked again
    assert len(asked) == len(set(asked))
    # the 4 chains and 5 pairs left, the one item that failed before (tried again: it was never answered), and the
    # two pairs judged under the old prompt format, judged again under the new one
    assert len(asked) == 36
    assert (legacy / "calls.sqlite.v0.bak").exists()

    with RunStore(legacy / "run") as store:
        fingerprints = store.fingerprints()
        assert store.count("chains") == 8 and judged_ids(store, fingerprints.judge) and store.count("judgments") == 8
        assert older_items(store, fingerprints) == {"chains": 0, "samples": 0, "judgments": 0}  # moved or remade
        assert {s["status"] for s in stage_states(store).values()} == {"done"}
        assert sum(u.calls for u in stored_usage(store)) == 23 + 36  # both releases' calls, each counted once
    assert main(["status", str(legacy / "run")]) == 0
    assert "older" not in capsys.readouterr().out


def test_a_run_of_0_1_0_resumes_from_its_cache_where_the_store_lost_items(legacy: Path) -> None:
    """A kill -9 can leave a call in the cache that its item never reached the store with: such calls are answered
    from the old cache (its rows belong to this run's endpoint) and not asked again."""
    with RunStore(legacy / "run") as store:
        lost = store.execute("SELECT prompt_id FROM chains ORDER BY prompt_id LIMIT 1")[0][0]
        store.execute("DELETE FROM chains WHERE prompt_id = ?", (lost,))
    old = [json.loads(line) for line in (legacy / "requests.jsonl").read_text().splitlines()]
    answered = {canonical(r["body"]) for r in old if r["code"] == 200}
    with LoopbackServer().start(HOST, PORT) as server:
        assert main(["run", str(legacy / "config.yaml")]) == 0
    assert not {canonical(r.body) for r in server.requests} & answered and len(server.requests) == 36
