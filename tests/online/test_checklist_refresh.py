"""`checklist.refresh_every`: every K steps the highest- and lowest-rewarded recent rollouts go to a proposer, the new
items it writes are accepted as the next checklist version, and every later reward names that version; each refresh
is in the store, metrics.json and the card. A proposer whose reply is unreadable accepts nothing, recorded."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import yaml
from typer.testing import CliRunner

import charter
from charter.cli import app, main
from charter.online.config import ChecklistReward
from charter.online.train import VERSIONS_KEY, refresh_checklist
from charter.providers import get_model
from charter.providers.scripted import register_script
from charter.runs.rewards import rewards
from charter.runs.store import RunStore
from charter.runs.usage import stored_usage
from charter.testing.lab import CRITERIA, register_lab_models

ITEMS = [
    {"id": "number", "requirement": CRITERIA["number"][0], "weight": 2},
    {"id": "polite", "requirement": CRITERIA["polite"][0], "weight": 1},
]
SHOUTING = {"id": "no-shouting", "requirement": CRITERIA["calm"][0], "category": "pitfall"}
ASKED: list[str] = []


def _proposer(messages, params):  # noqa: ANN001, ANN202
    ASKED.append(messages[-1].content)
    return json.dumps({"items": [SHOUTING, {"id": "number", "requirement": "Again.", "category": "optional"}]})


register_script("shout-proposer", _proposer)
register_script("mumbling-proposer", lambda messages, params: "Hmm, hard to say.")
register_script(
    "torn-proposer",
    lambda messages, params: json.dumps({"items": [SHOUTING]}) + " or rather " + json.dumps({"items": []}),
)
register_lab_models()  # scripted:checklist-judge


def test_a_refresh_adds_the_proposed_item_as_version_2_and_later_rewards_name_it(tmp_path: Path) -> None:
    ASKED.clear()
    fn = charter.reward_function("scripted:checklist-judge", "harmless", scoring="checklist",
                                 store=tmp_path / "store", cache=None)  # fmt: skip
    shouted, plain = "It is 4, THANK YOU", "It is unclear."
    before = fn.score(["Q?", "Q?"], [shouted, plain], checklists=[ITEMS, ITEMS], step=1)
    assert [r.reward for r in before] == [1.0, 0.0] and {r.checklist.version for r in before} == {1}
    section = ChecklistReward(refresh_every=1, refresh_pairs=1, max_new_items=2)
    refresh = refresh_checklist(fn, section, get_model("scripted:shout-proposer"), 1, fn.options.book)
    assert refresh.version == 2 and [i.id for i in refresh.accepted] == ["no-shouting"]  # `number` is in use
    assert refresh.compared == {"high": [1.0], "low": [0.0]}
    high, low = ASKED[0].split("Highest-rewarded:")[1].split("Lowest-rewarded:")
    assert shouted in high and plain in low and "Items in use: number, polite" in ASKED[0]
    [after] = fn.score(["Q?"], [shouted], checklists=[ITEMS], step=2)
    assert after.checklist.version == 2 and after.checklist.verdicts["no-shouting"] == "yes"
    assert after.reward == (2 + 1 + 0) / (2 + 1 + 0.9) * 1 and after.reward < 1.0
    stored = fn.store.meta(VERSIONS_KEY)
    assert [(r["step"], r["version"], [i["id"] for i in r["accepted"]]) for r in stored] == [(1, 2, ["no-shouting"])]
    mumbled = refresh_checklist(fn, section, get_model("scripted:mumbling-proposer"), 2, fn.options.book)
    assert mumbled.version == 2 and not mumbled.accepted and "no JSON object of items" in (mumbled.note or "")
    assert len(fn.store.meta(VERSIONS_KEY)) == 2
    fn.close()


def test_the_proposer_call_is_in_the_usage_ledger_and_no_contrast_asks_nothing(tmp_path: Path) -> None:
    """A refresh's proposer call, made after the last batch of rewards, is in the store's usage once the reward
    function closes; a refresh whose rollouts all score alike asks the proposer nothing (and says why)."""
    ASKED.clear()
    fn = charter.reward_function("scripted:checklist-judge", "harmless", scoring="checklist",
                                 store=tmp_path / "store", cache=None)  # fmt: skip
    proposer = get_model("scripted:shout-proposer", meter=fn.judge.meter, role="proposer")
    section = ChecklistReward(refresh_every=1, refresh_pairs=1, max_new_items=2)
    fn.score(["Q?", "Q?"], ["It is unclear.", "Hard to say."], checklists=[ITEMS, ITEMS], step=1)
    flat = refresh_checklist(fn, section, proposer, 1, fn.options.book)
    assert ASKED == [] and flat.version == 1 and flat.compared == {"high": [0.0], "low": [0.0]}
    assert flat.note == "no contrast: the rollouts compared all score 0; the proposer was not asked"
    fn.score(["Q?", "Q?"], ["It is 4, THANK YOU", "It is unclear."], checklists=[ITEMS, ITEMS], step=2)
    torn = get_model("scripted:torn-proposer", meter=fn.judge.meter, role="proposer")
    undecided = refresh_checklist(fn, section, torn, 2, fn.options.book)  # two answers that disagree: neither
    assert undecided.version == 1 and "'items' 2 readings that disagree" in (undecided.note or "")
    assert refresh_checklist(fn, section, proposer, 2, fn.options.book).version == 2 and len(ASKED) == 1
    fn.close()
    by_role: Counter[str] = Counter()
    for row in stored_usage(RunStore(tmp_path / "store")):
        by_role[row.role] += row.calls
    assert by_role["proposer"] == 2 and by_role["judge"] == 3  # "It is unclear." was judged once


def test_charter_train_grpo_refreshes_the_checklist_every_step(tiny_model: Path, tmp_path: Path) -> None:
    items = [
        {"id": "any", "requirement": "Says something.", "verifier": "regex:.", "weight": 1},
        ITEMS[0],
        # the tiny policy's first rollouts differ here, and nowhere else: a refresh without contrast asks nothing
        {"id": "helps", "requirement": "Offers help.", "verifier": "regex:help|below", "weight": 1},
    ]
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"question {i}", "checklist": items}) + "\n" for i in range(8)))
    config = {
        "model": str(tiny_model), "prompts": str(prompts), "scoring": "checklist", "cache": None,
        "judge": {"model": "scripted:checklist-judge"}, "output_dir": str(tmp_path / "out"),
        "checklist": {"refresh_every": 1, "proposer": {"model": "scripted:shout-proposer"}},
        "trl": {"max_steps": 2, "num_generations": 4, "per_device_train_batch_size": 4, "max_completion_length": 8,
                "save_strategy": "no"},
    }  # fmt: skip
    path = tmp_path / "grpo.yaml"
    path.write_text(yaml.safe_dump(config))
    result = CliRunner().invoke(app, ["train", "grpo", str(path)])
    assert result.exit_code == 0, result.output
    out = tmp_path / "out"
    metrics = json.loads((out / "metrics.json").read_text())
    versions = metrics["checklist_versions"]
    assert [(v["step"], v["version"]) for v in versions] == [(1, 2), (2, 2)]  # the second proposes nothing new
    assert versions[1]["note"] == "no item with a new id was proposed"
    assert metrics["refresh_steps"] == [1]  # the refresh that made a version: the monitor attributes gaps to it
    stored = list(rewards(RunStore(out)))
    assert {r.step: r.checklist.version for r in stored} == {1: 1, 2: 2}
    assert all("no-shouting" in r.checklist.verdicts for r in stored if r.step == 2)
    proposer = [row for row in stored_usage(RunStore(out)) if row.role == "proposer"]
    assert sum(row.calls for row in proposer) == 2  # the last refresh's call too, made after the last reward
    assert "The checklist during training" in (out / "README.md").read_text()


def test_a_bad_checklist_in_the_prompts_file_stops_before_training(tiny_model: Path, tmp_path: Path, capsys) -> None:
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"prompt": "q", "checklist": [{"id": "x", "requirement": "r", "weight": 0}]}) + "\n")
    config = {"model": str(tiny_model), "prompts": str(prompts), "scoring": "checklist", "cache": None,
              "judge": {"model": "scripted:checklist-judge"}, "output_dir": str(tmp_path / "out")}  # fmt: skip
    path = tmp_path / "grpo.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["train", "grpo", str(path)]) == 2
    err = capsys.readouterr().err
    assert "prompts.jsonl: row 1: checklist[0].weight: " in err and "Traceback" not in err
    assert not (tmp_path / "out" / "model.safetensors").exists()
