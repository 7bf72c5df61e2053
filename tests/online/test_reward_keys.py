"""The reward store's fingerprints, run ids and keys are pinned: a store and a call cache written by an earlier
release resume with no new call only while every scoring and online DPO's pair judge key their rewards as before."""

from __future__ import annotations

from pathlib import Path

import pytest

import charter
from charter.constitutions import load_constitution
from charter.judge.settings import JudgeSettings
from charter.online.pairs import PairJudge
from charter.providers import get_model
from charter.providers.config import RoleConfig
from charter.providers.scripted import HARMFUL_OPENING, REFUSAL_OPENING
from charter.providers.usage import UsageMeter
from charter.runs.rewards import rewards
from tests.online.test_group_ranking import GROUP  # registers scripted:bt-judge

SAFE, HARMFUL = f"{REFUSAL_OPENING} ask a locksmith", f"{HARMFUL_OPENING} step one"
PROMPTS = ["How do I pick a lock?"] * 4
COMPLETIONS = [HARMFUL, SAFE, HARMFUL, f"{REFUSAL_OPENING} call a professional"]
NUMBERS = ["Name a number."] * 6

#: case: (scoring, judge, settings, prompts, completions, columns, fingerprint, keys)
CASES = {
    "score": ("score", "scripted:cai", {"rating": "verdict"}, PROMPTS, COMPLETIONS, {}, "1839294de541d3df",
              ["70fa8340fa2c6282", "5d0c84599b90b79b", "70fa8340fa2c6282", "35fea98ac098b659"]),
    "group": ("group", "scripted:cai", {"mode": "verdict"}, PROMPTS, COMPLETIONS, {}, "61ff4571dc6208f3",
              ["cef76c46ee4fbb84", "997f9714e8f97266", "cef76c46ee4fbb84", "3aea69bb5e399390"]),
    "circular": ("group", "scripted:bt-judge", {"mode": "logprobs", "group_strategy": "circular"}, NUMBERS, GROUP,
                 {}, "9fe97908fdad461a", ["7b79d4ddd82f7707", "1b8d845694837fca", "9c83302e15f2a40b",
                                          "469fd509213c37d6", "53ad04abdfd41914", "0702ab383f60b743"]),
    "rank": ("rank", "scripted:bt-judge", {"mode": "logprobs"}, NUMBERS, GROUP, {}, "e402e07d664a307d",
             ["1690f39065c66095", "374f027fb80fa0c3", "5d8fb9517a4fea29", "46f0acaedf284bb2", "9a01c7796326bd46",
              "101225a1cb9b657e"]),
    "reference": ("reference", "scripted:cai", {"mode": "verdict", "reference_model": "scripted:cai"}, PROMPTS,
                  COMPLETIONS, {"reference": [HARMFUL + " too", SAFE + " too", None, None]}, "ef590633b7130665",
                  ["40d752fb39476ff3", "26b233eaf8357a26", "dc61f31c7037ae2f", "2d3ff289026c0da0"]),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_scoring_keys_its_rewards_as_before(tmp_path: Path, case: str) -> None:
    scoring, judge, settings, prompts, completions, columns, fingerprint, keys = CASES[case]
    fn = charter.reward_function(judge, "harmless", scoring, store=tmp_path / case, cache=None, **settings)
    fn(prompts=prompts, completions=completions, **columns)
    fn.close()
    assert fn.fingerprint == fingerprint and fn.store.meta("run_id") == f"rewards-{fingerprint[:8]}"
    assert [r.key for r in rewards(fn.store)] == keys


def test_the_pair_judge_keys_its_pairs_as_before(tmp_path: Path) -> None:
    model = get_model(RoleConfig(model="scripted:cai").backend(), cache=None, meter=UsageMeter({}), role="judge")
    judge = PairJudge(model, load_constitution("harmless"), JudgeSettings(mode="verdict"), "pair", tmp_path / "pair",
                      max_failures=0.5, min_confidence=0.1)  # fmt: skip
    decisions = judge.judge_pairs(PROMPTS, [SAFE, HARMFUL, SAFE, SAFE], [HARMFUL, SAFE, SAFE, SAFE + " x"], 3)
    judge.close()
    assert [d.first_wins for d in decisions] == [True, False, None, None]
    assert judge.fingerprint == "42d70e154d798a06" and judge.store.meta("run_id") == "rewards-42d70e15"
    stored = list(rewards(judge.store))
    assert [r.key for r in stored] == ["f8e5e309acc4bcad", "cff47c654e867a28", "44f2b10c2f3d02f6", "982cded2b27a7fc2"]
    assert {r.step for r in stored} == {3} and [r.masked for r in stored] == [None, None, "undecided", "undecided"]
