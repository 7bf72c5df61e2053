"""A finished run resumed with changed settings recomputes exactly what changed, and every file says so.

Items are kept under the fingerprint of the settings that made them: the dataset, the report and the card
cover only the items of the settings in effect; the call cache answers every call made before.
"""

from __future__ import annotations

import json
from pathlib import Path

from charter.agreement.api import agreement_report
from charter.agreement.config import AgreementConfig
from charter.agreement.labels import new_label, open_labels, put_labels
from charter.agreement.sampling import spotcheck
from charter.cli import main
from charter.hub.push import publish
from charter.pipeline.api import run
from charter.pipeline.report.write import write_report
from charter.pipeline.status.record import status
from charter.runs.items import stored_chains, stored_pair
from charter.runs.store import RunStore
from charter.runs.usage import stored_usage


def usage(run_dir: Path) -> dict[str, tuple[int, int]]:
    """role -> (answered calls, cache hits), summed over every process of the run."""
    with RunStore(run_dir) as store:
        return {u.role: (u.calls, u.cached) for u in stored_usage(store)}


def rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "data/preferences.jsonl").read_text().splitlines()]


def card(run_dir: Path, out: Path) -> str:
    publish(run_dir, "org/x", dry_run=out)
    return (out / "README.md").read_text()


def test_more_principles_per_pair_recomputes_exactly_the_judgments(make_config, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run(make_config())
    first = usage(run_dir)
    assert first["judge"] == (6 * 2 * 2, 0)  # 6 pairs, 2 principles, 2 orders
    assert all(len(r["principle_ids"]) == 2 for r in rows(run_dir))
    before = {r["pair_id"]: r["settings_fingerprint"] for r in rows(run_dir)}

    result = run(make_config(judge={"model": "scripted:cai", "principles_per_pair": 3}))
    after = usage(run_dir)
    # policy and critic: not asked again (the chains are reused from the store, not even from the cache)
    assert after["policy"] == first["policy"] and after["critic"] == first["critic"]
    # judge: one new principle per pair in both orders; the two unchanged principles came from the cache
    assert after["judge"] == (first["judge"][0] + 6 * 2, 6 * 2 * 2)
    new_rows = rows(run_dir)
    assert len(new_rows) == 6 == result.counts["preferences"]
    assert all(len(r["principle_ids"]) == 3 for r in new_rows)
    assert set(before) == {r["pair_id"] for r in new_rows}  # same pairs...
    assert {r["settings_fingerprint"] for r in new_rows}.isdisjoint(before.values())  # ...new settings

    text = card(run_dir, tmp_path / "out")
    assert "Principles per pair: **3**" in text and "Principles per pair: **2**" not in text
    report = write_report(run_dir)[0].read_text()
    assert "3 principle(s) per pair" in report and "2 principle(s)" not in report
    data = status(run_dir)
    assert any("judge.principles_per_pair 2 -> 3" in note for note in data["notes"])
    assert any("left out of the dataset: 6 judgments" in note for note in data["notes"])


def test_more_critique_rounds_remake_the_chains_and_their_pairs(make_config, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run(make_config())
    first = usage(run_dir)
    run(make_config(critique={"rounds": 2}))
    after = usage(run_dir)
    # initial answers and round 1 come from the cache; only round 2 is new: a critique and a revision each
    assert after["policy"][0] == first["policy"][0] and after["policy"][1] == 6
    assert after["critic"][0] == first["critic"][0] + 6 * 2
    with RunStore(run_dir) as store:
        fp = store.fingerprints()
        assert store.count("chains") == 12 and len(list(stored_chains(store, fp.critique))) == 6
        assert all(len(chain.rounds) == 2 for chain in stored_chains(store, fp.critique))
    sft = [json.loads(line) for line in (run_dir / "data/sft.jsonl").read_text().splitlines()]
    assert len(sft) == 6 and {r["rounds"] for r in sft} == {2}


def test_another_judge_mode_is_what_rows_and_card_say(make_config, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run(make_config())
    run(make_config(judge={"model": "scripted:cai", "principles_per_pair": 2, "mode": "verdict"}))
    assert {r["judge_mode"] for r in rows(run_dir)} == {"verdict"}
    text = card(run_dir, tmp_path / "out")
    assert "Mode: **verdict**" in text and "Mode: **logprobs**" not in text


def test_going_back_to_earlier_settings_reuses_their_items(make_config, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run(make_config())
    run(make_config(judge={"model": "scripted:cai", "principles_per_pair": 1}))
    calls = usage(run_dir)
    run(make_config())
    assert usage(run_dir)["judge"][0] == calls["judge"][0]  # the first settings' judgments were still there
    assert all(len(r["principle_ids"]) == 2 for r in rows(run_dir))


def test_agreement_then_run_keeps_every_calibrated_probability(make_config, tmp_path: Path, capsys) -> None:
    n = 24
    config = make_config(
        prompts={"inline": [f"Question {i}: how do I do thing {i}?" for i in range(n)]},
        filters={"drop_inconsistent": False},
    )
    run_dir = tmp_path / "run"
    assert main(["run", str(config)]) == 0
    sample = spotcheck(run_dir, n, seed=0)
    with open_labels(run_dir) as store:
        # people agree with the judge on most pairs: the judge prefers the revision
        labels = []
        for i, spot in enumerate(sample):
            pair = stored_pair(store, spot.pair_id)
            revision = "a" if pair.a_source == "revision" else "b"
            other = "b" if revision == "a" else "a"
            labels.append(new_label(spot.pair_id, "alice", revision if i % 4 else other, spot.shown_order))
        put_labels(store, labels)
    summary = agreement_report(run_dir, AgreementConfig(bootstrap_samples=100, min_calibration_labels=10))
    assert summary.calibration is not None and summary.calibration.method == "temperature"
    calibrated = {r["pair_id"]: r["p_chosen_calibrated"] for r in rows(run_dir)}
    assert calibrated and None not in calibrated.values()

    assert main(["run", str(config)]) == 0  # the quickstart's advice: run again (e.g. to add training stages)
    assert {r["pair_id"]: r["p_chosen_calibrated"] for r in rows(run_dir)} == calibrated
    text = card(run_dir, tmp_path / "out")
    assert f"`p_chosen_calibrated` on **{len(calibrated)} of the {len(calibrated)}** published rows" in text


def test_a_local_judge_in_another_precision_is_another_judge(make_config) -> None:
    """bfloat16 changes a local model's answers: the judgments of a run resumed in another precision are redone."""
    import pytest

    pytest.importorskip("torch")
    from charter.constitutions import load_constitution
    from charter.pipeline.config import load_run_config
    from charter.pipeline.settings import dataset_settings

    def settings(dtype: str):
        judge = {"model": "local:smollm2-135m-instruct", "options": {"dtype": dtype, "device": "cpu"}}
        config = load_run_config(make_config(judge=judge))
        return dataset_settings(config, load_constitution(config.constitution), "r", "2026-01-01T00:00:00Z")

    exact, fast = settings("float32"), settings("bfloat16")
    assert (
        exact.fingerprints.judge != fast.fingerprints.judge and exact.fingerprints.dataset != fast.fingerprints.dataset
    )
    assert exact.fingerprints.critique == fast.fingerprints.critique  # the scripted policy's chains are kept
    # what the report and the card say the judge was
    assert (exact.models["judge"], fast.models["judge"]) == (
        "local:smollm2-135m-instruct",
        "local:smollm2-135m-instruct@bfloat16",
    )
    assert fast.models["policy"] == "scripted:cai"


def test_the_judges_call_schedule_changes_no_fingerprint_call_or_row(make_config, tmp_path: Path) -> None:
    """`judge.warm_cache` changes when calls are sent, never what is asked: a run whose pairs were judged with all
    their calls at once resumes under the warm schedule with no new call, and a new run on the same call cache asks
    nothing of the model and writes the same rows."""
    judge = {"model": "scripted:cai", "principles_per_pair": 2}
    run(make_config(judge={**judge, "warm_cache": False}))
    first, before = usage(tmp_path / "run"), rows(tmp_path / "run")
    assert first["judge"] == (6 * 2 * 2, 0)

    run(make_config(judge=judge))  # resumed: every judgment is kept
    assert usage(tmp_path / "run") == first and rows(tmp_path / "run") == before

    run(make_config(judge=judge, output_dir=str(tmp_path / "again")))  # a new store, the same call cache
    assert usage(tmp_path / "again")["judge"] == (0, 6 * 2 * 2)  # every judge call answered by the cache
    assert judged(rows(tmp_path / "again")) == judged(before)  # the same judgments, settings fingerprint included


def judged(made: list[dict]) -> dict[str, dict]:
    """Rows by pair id, without what names the run that wrote them (its id, the time)."""
    return {r["pair_id"]: {k: v for k, v in r.items() if k not in ("run_id", "created_at")} for r in made}
