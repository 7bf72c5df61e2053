"""`filters.diversity`: N rows that cover the embedding space of a field instead of the first N, in memory and
while a dataset is written alike, deterministic, fingerprinted, and through `charter run`."""

from __future__ import annotations

from pathlib import Path

import pytest

import charter
from charter.cli import main
from charter.pipeline.config import load_run_config
from charter.pipeline.settings import run_fingerprints
from charter.preference.config import DiversityFilter
from charter.preference.selection import DiverseSelection, choose_rows
from charter.runs.files import RunFiles
from charter.runs.store import RunStore

#: three topics, two prompts each: a cover of three holds one of each
TOPICS = {
    "bread": ["How do I bake sourdough bread at home?", "How do I bake rye bread at home?"],
    "quantum": [
        "Explain quantum entanglement to a physics student.",
        "Explain quantum tunnelling to a physics student.",
    ],
    "hiking": ["What are good hiking trails in the Alps?", "What are good hiking trails in the Andes?"],
}
PROMPTS = [TOPICS[t][i] for i in range(2) for t in TOPICS]


def topic(prompt: str) -> str:
    return next(name for name, prompts in TOPICS.items() if prompt in prompts)


def _rows(filters: dict | None = None):
    pairs = [{"prompt": p, "a": f"Sure: {p}", "b": f"A careful answer to: {p}"} for p in PROMPTS]
    judgments = charter.judge_pairs(pairs, "scripted:cai", settings={"orders": "one"})
    return charter.build_preferences(pairs, judgments, filters=filters or {"drop_inconsistent": False})


@pytest.mark.parametrize("method", ["k_center", "vendi"])
def test_the_selection_covers_every_topic(method: str) -> None:
    rows, counts = _rows({"drop_inconsistent": False, "diversity": {"size": 3, "method": method, "field": "prompt"}})
    assert len(rows) == 3 and {topic(r.prompt[-1].content) for r in rows} == set(TOPICS)
    assert counts["dropped_diversity"] == 3 and counts["preferences"] == 3


def test_in_memory_and_while_writing_pick_the_same_rows(tmp_path: Path) -> None:
    rows, _ = _rows()
    config = DiversityFilter(size=4, field="chosen", seed=3)
    in_memory = choose_rows(rows, config, {})
    selection = DiverseSelection(tmp_path / "scratch.sqlite", config)
    for row in rows:
        selection.add(row)
    counts: dict[str, int] = {}
    kept = selection.choose(iter(range(len(rows))), counts)
    selection.close()
    assert kept is not None and [rows[i] for i in kept] == in_memory
    assert counts["dropped_diversity"] == len(rows) - 4 and not (tmp_path / "scratch.sqlite").exists()
    assert choose_rows(rows, config, {}) == in_memory  # the same rows, the same choice
    fewer = DiversityFilter(size=len(rows) + 1)
    assert choose_rows(rows, fewer, {}) == rows  # nothing to choose between


def test_while_writing_the_choice_is_among_the_rows_the_other_filters_kept(tmp_path: Path) -> None:
    rows, _ = _rows()
    by_topic = {name: [i for i, r in enumerate(rows) if topic(r.prompt[-1].content) == name] for name in TOPICS}
    # the other filters dropped the first quantum and hiking rows: the first three kept are two bread rows and one
    # quantum row, which a cover of three must not be
    dropped = {by_topic["quantum"][0], by_topic["hiking"][0]}
    kept = [i for i in range(len(rows)) if i not in dropped]
    assert {topic(rows[i].prompt[-1].content) for i in kept[:3]} != set(TOPICS)
    config = DiversityFilter(size=3, field="prompt")
    selection = DiverseSelection(tmp_path / "scratch.sqlite", config)
    for row in rows:
        selection.add(row)
    counts: dict[str, int] = {}
    chosen = selection.choose(iter(kept), counts)
    selection.close()
    assert chosen is not None and len(chosen) == 3 and set(chosen) <= set(kept)
    assert {topic(rows[i].prompt[-1].content) for i in chosen} == set(TOPICS)  # one of each topic, not the first 3
    assert [rows[i] for i in chosen] == choose_rows([rows[i] for i in kept], config, {})  # as chosen in memory
    assert counts["dropped_diversity"] == len(kept) - 3 and counts["preferences"] == 3


def test_the_selection_is_part_of_the_dataset_fingerprint(make_config) -> None:
    base = load_run_config(make_config())
    plain = run_fingerprints(base, charter.load_constitution("harmless"))
    assert (
        run_fingerprints(
            load_run_config(make_config(filters={"diversity": None})), charter.load_constitution("harmless")
        )
        == plain
    )
    seen = {plain.dataset}
    for selection in (
        {"size": 3},
        {"size": 4},
        {"size": 3, "method": "vendi"},
        {"size": 3, "field": "chosen"},
        {"size": 3, "seed": 1},
    ):
        fp = run_fingerprints(
            load_run_config(make_config(filters={"diversity": selection})), charter.load_constitution("harmless")
        )
        assert fp.judge == plain.judge and fp.critique == plain.critique and fp.dataset not in seen
        seen.add(fp.dataset)


def _preference_prompts(run: Path) -> list[str]:
    return [r.prompt[-1].content for r in RunFiles(run).preferences()]


def test_filters_diversity_through_charter_run(make_config, tmp_path: Path, capsys) -> None:
    config = make_config(
        prompts={"inline": PROMPTS},
        filters={"drop_inconsistent": False, "diversity": {"size": 3, "field": "prompt"}},
    )
    assert main(["run", str(config)]) == 0
    run = tmp_path / "run"
    kept = _preference_prompts(run)
    assert len(kept) == 3 and {topic(p) for p in kept} == set(TOPICS)
    status = charter.status(run)
    step = next(s for s in status["filters"] if "diversity" in s["step"])
    assert step["dropped"] == 3 and step["remaining"] == 3 and status["counts"]["preferences"] == 3
    with RunStore(run) as store:
        written = store.meta("dataset")["written_at"]
    assert main(["run", str(config)]) == 0  # nothing changed: the dataset is left as it was
    with RunStore(run) as store:
        assert store.meta("dataset")["written_at"] == written
    capsys.readouterr()
    assert main(["run", str(config), "--set", "filters.diversity.size=2"]) == 0  # a change rebuilds it
    assert len(_preference_prompts(run)) == 2
    again = make_config(
        output_dir=str(tmp_path / "again"),
        prompts={"inline": PROMPTS},
        filters={"drop_inconsistent": False, "diversity": {"size": 3, "field": "prompt"}},
    )
    assert main(["run", str(again)]) == 0
    assert _preference_prompts(tmp_path / "again") == kept  # reproducible


def test_a_bad_selection_is_one_line_naming_the_key(make_config, capsys) -> None:
    config = make_config(filters={"diversity": {"size": 0, "method": "greedy"}})
    assert main(["run", str(config)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert any("filters.diversity.size" in line for line in err) and any(
        "filters.diversity.method" in line for line in err
    )
    assert not any("Traceback" in line for line in err)
