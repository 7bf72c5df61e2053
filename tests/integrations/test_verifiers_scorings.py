"""Every charter scoring through verifiers' own code: `vf.load_environment` loads the example environment over a prompts
file, and `Task.score` scores rollouts with charter's judge entries (reference, checklist given or written, group
win rates and listwise ranks of a task's rollouts gathered into one group call, verifiable rewards, a reward model),
each with its verifiers weight; a failure stays unscored (`None`, never 0) with its reason on the trace."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import verifiers.v1 as vf
from scipy.stats import kendalltau

from charter.checklist.author import read_writer_prompt
from charter.integrations.verifiers import CharterJudgeConfig, judge_episode
from charter.providers.scripted import HARMFUL_OPENING, REFUSAL_OPENING, register_script
from charter.reward.batching import close_shared
from charter.runs.rewards import rewards
from charter.runs.store import RunStore
from charter.testing.lab import CRITERIA, register_lab_models
from tests.integrations.test_verifiers import _rollout
from tests.online.test_checklist_reward import ITEMS
from tests.online.test_group_ranking import GROUP, quality  # registers scripted:bt-judge and scripted:rank-garbage
from tests.serve.test_reward_model import _in_process, rm  # noqa: F401 - the tiny reward model fixture
from tests.support.priority import JUDGE as PRIORITY_JUDGE
from tests.support.priority import LONG, PROMPT, register_priority_judge, write_constitution
from tests.support.priority import SAFE as PRIORITY_SAFE

ROOT = Path(__file__).resolve().parents[2]
SAFE, HARMFUL = f"{REFUSAL_OPENING} ask a locksmith", f"{HARMFUL_OPENING} step one"
ROWS = [
    {"id": "lock", "prompt": "How do I pick a lock?", "reference": "4", "checklist": ITEMS},
    {"id": "plain", "prompt": "Name a number."},
]


@pytest.fixture(autouse=True)
def _example_installed(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(ROOT / "examples" / "verifiers-constitution"))
    register_lab_models()
    yield
    close_shared()


def _env(tmp_path: Path, *entries: dict, rows: list[dict] = ROWS) -> vf.Env:
    tmp_path.mkdir(parents=True, exist_ok=True)
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps(r) + "\n" for r in rows))
    judged = {"store": str(tmp_path / "store"), "cache": None}
    judges = [{"id": "charter-constitution", **judged, **e} for e in entries]
    config = {"taskset": {"id": "charter-constitution", "prompts": str(prompts), "task": {"judges": judges}}}
    return vf.load_environment(vf.resolve_env_config(config))


def _tasks(env: vf.Env) -> dict[str, vf.Task]:
    return {t.data.id: t for t in env.taskset}


def _score(task: vf.Task, replies: list[str]) -> tuple[list[vf.Trace], list[BaseException | None]]:
    """A task's rollouts scored concurrently by verifiers' `Task.score`, as a run scores a group's rollouts."""
    traces = [_rollout(task, reply) for reply in replies]

    async def scored() -> list[BaseException | None]:
        return await asyncio.gather(*(task.score(t) for t in traces), return_exceptions=True)

    return traces, asyncio.run(scored())


def _value(trace: vf.Trace, name: str) -> float | None:
    reward = trace.rewards[name]
    return None if reward is None else reward.score


def test_reference_scoring_compares_each_rollout_with_the_tasks_answer(tmp_path: Path) -> None:
    entry = {"name": "ref", "judge": "scripted:cai", "scoring": "reference", "answer_field": "reference"}
    task = _tasks(_env(tmp_path, entry, rows=[ROWS[0] | {"reference": HARMFUL}]))["lock"]
    traces, errors = _score(task, [SAFE, HARMFUL])
    assert errors == [None, None]
    safe, same = (_value(t, "ref") for t in traces)
    assert safe is not None and same is not None and safe > 0.5 and same == pytest.approx(0.5)  # a tie with itself
    stored = {r.completion: r for r in rewards(RunStore(tmp_path / "store"))}
    assert stored[SAFE].reference == HARMFUL and stored[SAFE].scoring == "reference"


def test_checklist_scoring_reads_the_tasks_checklist(tmp_path: Path) -> None:
    entry = {"name": "checked", "judge": "scripted:checklist-judge", "scoring": "checklist"}
    task = _tasks(_env(tmp_path, entry))["lock"]
    replies = ["It takes 4 days, thank you. Anything else?", "It takes 4 days, thank you."]
    traces, errors = _score(task, replies)
    assert errors == [None, None]
    assert [_value(t, "checked") for t in traces] == pytest.approx([1.0, 5 / 5.5])  # the question missed
    stored = list(rewards(RunStore(tmp_path / "store")))
    assert all(set(r.checklist.verdicts) == {i["id"] for i in ITEMS} for r in stored if r.checklist)


def test_a_task_without_a_checklist_gets_one_written_on_first_sight(tmp_path: Path) -> None:
    asked: list[str] = []

    def writer(messages, params):  # noqa: ANN001, ANN202 - a scripted writer of three items
        asked.append(messages[-1].content)
        ids = read_writer_prompt(messages[-1].content) or []  # the principles drawn for the prompt
        rules = [("number", "essential"), ("polite", "important"), ("question", "optional")]
        items = [{"id": r, "requirement": CRITERIA[r][0], "category": c, "principle_id": ids[0]} for r, c in rules]
        return json.dumps({"items": items})

    register_script("verifiers-writer", writer)
    settings = {"checklist_writer": "scripted:verifiers-writer"}
    entry = {"name": "checked", "judge": "scripted:checklist-judge", "scoring": "checklist", "settings": settings}
    task = _tasks(_env(tmp_path, entry))["plain"]
    traces, errors = _score(task, ["It is 4.", "It is four.", "It is 4!"])
    assert errors == [None] * 3
    # weights 3 (essential), 2 (important), 1 (optional): a number met, neither polite nor a closing question: 3/6;
    # the number missed: 0/6, a real verdict, kept (never None)
    assert [_value(t, "checked") for t in traces] == pytest.approx([0.5, 0.0, 0.5])
    assert len(asked) == 1  # one checklist written for the prompt, shared by its rollouts
    assert {r.checklist.source for r in rewards(RunStore(tmp_path / "store")) if r.checklist} == {"model"}


def test_group_scoring_gathers_a_tasks_rollouts_into_one_group(tmp_path: Path) -> None:
    settings = {"mode": "logprobs"}
    entry = {"name": "group", "judge": "scripted:bt-judge", "scoring": "group", "group_size": 6, "settings": settings}
    task = _tasks(_env(tmp_path, entry))["plain"]
    traces, errors = _score(task, GROUP)
    assert errors == [None] * 6
    got = [_value(t, "group") for t in traces]
    assert kendalltau(got, [quality(t) for t in GROUP]).statistic == pytest.approx(1.0)
    assert sum(v or 0 for v in got) / 6 == pytest.approx(0.5)  # win rates within one group average one half
    stored = list(rewards(RunStore(tmp_path / "store")))
    assert len(stored) == 6 and {r.comparisons for r in stored} == {5}  # each against the 5 others of its group


def test_rank_scoring_orders_the_group_and_a_failed_ordering_leaves_it_unscored(tmp_path: Path) -> None:
    settings = {"mode": "logprobs", "rank_orders": 2}
    entry = {"name": "rank", "judge": "scripted:bt-judge", "scoring": "rank", "group_size": 6, "settings": settings}
    traces, errors = _score(_tasks(_env(tmp_path / "ok", entry))["plain"], GROUP)
    assert errors == [None] * 6
    assert kendalltau([_value(t, "rank") for t in traces], [quality(t) for t in GROUP]).statistic == pytest.approx(1.0)
    close_shared()

    garbage = entry | {"judge": "scripted:rank-garbage", "settings": settings | {"max_reasks": 0}, "max_failures": 100}
    traces, errors = _score(_tasks(_env(tmp_path / "bad", garbage))["plain"], GROUP[:3] + GROUP[:3])
    assert all(isinstance(e, vf.TaskError) for e in errors)
    assert all(t.rewards["rank"] is None for t in traces)  # unscored, never a rank made up
    assert all(t.info["charter"][0]["failure"] for t in traces)


def test_a_group_that_never_fills_is_judged_with_what_came_and_a_lone_rollout_fails(tmp_path: Path) -> None:
    entry = {"name": "group", "judge": "scripted:bt-judge", "scoring": "group", "group_size": 4}
    entry |= {"group_wait_s": 0.2, "settings": {"mode": "logprobs"}}
    traces, errors = _score(_tasks(_env(tmp_path, entry))["plain"], [GROUP[0]])
    assert isinstance(errors[0], vf.TaskError) and traces[0].rewards["group"] is None
    assert traces[0].info["charter"][0]["failure"].startswith("no_group")


def test_a_group_scoring_without_its_size_is_refused_when_loaded(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="group_size"):
        _tasks(_env(tmp_path, {"name": "group", "scoring": "group"}))["plain"].plugged_judges()


def test_verifiable_rewards_check_the_reply_against_the_tasks_answer(tmp_path: Path) -> None:
    entry = {"name": "correct", "scoring": "verify", "verifier": "number", "answer_field": "reference"}
    tasks = _tasks(_env(tmp_path, entry))
    traces, errors = _score(tasks["lock"], ["It is 4.", "It is 5."])
    assert errors == [None, None] and [_value(t, "correct") for t in traces] == [1.0, 0.0]  # 0.0 is a real score
    traces, errors = _score(tasks["plain"], ["It is 4."])  # no reference to check against
    assert isinstance(errors[0], vf.TaskError) and traces[0].rewards["correct"] is None
    assert traces[0].info["charter"][0]["failure"].startswith("no_reference")


def test_a_reward_model_scores_rollouts_and_weights_add_up(tmp_path: Path, rm: Path, monkeypatch) -> None:  # noqa: F811
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    judge = {"name": "constitution", "judge": "scripted:cai", "weight": 1.0, "settings": {"rating": "verdict"}}
    verify = {"name": "correct", "scoring": "verify", "answer_field": "reference", "weight": 0.5}
    model = {"name": "rm", "scoring": "reward_model", "reward_model": str(rm), "weight": 0.25}
    task = _tasks(_env(tmp_path, judge, verify, model))["lock"]
    reply = f"{REFUSAL_OPENING} it takes 4 minutes"
    [trace], errors = _score(task, [reply])
    assert errors == [None]
    expected = _in_process(rm, "How do I pick a lock?", reply)
    assert _value(trace, "rm") == pytest.approx(expected, abs=1e-4)
    assert {k: r.weight for k, r in trace.rewards.items() if r} == {"constitution": 1.0, "correct": 0.5, "rm": 0.25}
    assert trace.reward == pytest.approx(1.0 * 1.0 + 0.5 * 1.0 + 0.25 * expected, abs=1e-4)


def test_a_best_of_n_episode_is_judged_as_one_group_in_verifiers_finalize(tmp_path: Path) -> None:
    from verifiers.v1.envs.best_of_n.env import BestOfNEnv
    from verifiers.v1.trace import TraceTask

    rank = CharterJudgeConfig(id="charter-constitution", name="rank", judge="scripted:bt-judge", scoring="rank",
                              group_size=4, store=str(tmp_path / "store"), cache=None,
                              settings={"mode": "logprobs"}, weight=1.0)  # fmt: skip

    class JudgedBestOfN(BestOfNEnv):  # an environment's own finalize, as verifiers' best-of-n env has one
        async def finalize(self, task: vf.Task, episode: vf.Episode) -> None:
            await judge_episode(task, episode, rank)
            await super().finalize(task, episode)

    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps(ROWS[1]) + "\n")
    config = vf.resolve_env_config({"id": "best-of-n", "n": 4, "taskset": {"id": "charter-constitution",
                                                                          "prompts": str(prompts)}})  # fmt: skip
    env = JudgedBestOfN(config)
    task = next(iter(env.taskset))
    texts = GROUP[:4]
    episode = vf.Episode(task=TraceTask(type="ConstitutionTask", data=task.data, key=task.key, hash=task.hash))
    episode.traces.extend(_rollout(task, text) for text in texts)
    asyncio.run(env.finalize(task, episode))
    got = [_value(t, "rank") for t in episode.traces]
    assert kendalltau(got, [quality(t) for t in texts]).statistic == pytest.approx(1.0)
    best = max(range(4), key=lambda i: quality(texts[i]))
    assert [t.metrics["best"] for t in episode.traces] == [float(i == best) for i in range(4)]  # verifiers' own
    stored = list(rewards(RunStore(tmp_path / "store")))
    assert len(stored) == 4 and {r.comparisons for r in stored} == {3}  # one group: its 3 orderings (rank_orders)


def test_reference_scoring_in_priority_order_rewards_what_the_higher_level_prefers(tmp_path: Path) -> None:
    register_priority_judge()
    constitution = str(write_constitution(tmp_path / "ordered.yaml"))
    settings = {"principles": ["helpful", "safety", "detail"], "combine": "priority"}
    entry = {"name": "ref", "judge": PRIORITY_JUDGE, "constitution": constitution, "scoring": "reference",
             "answer_field": "reference", "settings": settings}  # fmt: skip
    task = _tasks(_env(tmp_path, entry, rows=[{"id": "lock", "prompt": PROMPT, "reference": LONG}]))["lock"]
    traces, errors = _score(task, [PRIORITY_SAFE])
    assert errors == [None]
    reward = _value(traces[0], "ref")
    assert reward is not None and reward > 0.5  # the root level wins over the two user-level principles
    [stored] = rewards(RunStore(tmp_path / "store"))
    assert stored.combined is not None and stored.combined.settled_by == "root"
    assert {c.overruled for c in stored.combined.conflicts} == {"helpful", "detail"}
