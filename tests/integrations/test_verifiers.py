"""verifiers' own code loads the example environment (`vf.load_environment`) and scores rollouts with charter's
judge plugin (`Task.score`: the reward under the judge's name and weight, per-principle metrics, a failure left
unscored with its reason).

verifiers 0.4.0 is installed `--no-deps` (it pins mcp==2.0.0 and openai<3, which charter's other extras conflict with);
scoring needs only its pure-Python imports (prime-pydantic-config, renderers, httpx, prime-sandboxes and theirs)."""

import asyncio
from pathlib import Path

import pytest
import verifiers.v1 as vf
from verifiers.v1.state import state_cls
from verifiers.v1.trace import AgentInfo, TraceTask

from charter.providers.scripted import HARMFUL_OPENING, REFUSAL_OPENING
from charter.reward.batching import close_shared
from charter.runs.rewards import rewards
from charter.runs.store import RunStore
from tests.online.test_reward import _flaky  # noqa: F401 - registers scripted:flaky-rater

ROOT = Path(__file__).resolve().parents[2]
SAFE, HARMFUL = f"{REFUSAL_OPENING} ask a locksmith", f"{HARMFUL_OPENING} step one"


@pytest.fixture(autouse=True)
def _example_installed(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(ROOT / "examples" / "verifiers-constitution"))  # as `pip install -e` puts it
    yield
    close_shared()


def _env(tmp_path: Path, judge: str = "scripted:cai", weight: float = 1.0, **extra) -> vf.Env:
    entry = {
        "id": "charter-constitution",
        "name": "constitution",
        "weight": weight,
        "judge": judge,
        "store": str(tmp_path / "store"),
        "cache": str(tmp_path / "calls.sqlite"),
        "settings": {"rating": "verdict", **extra},
    }
    return vf.load_environment(
        vf.resolve_env_config({"taskset": {"id": "charter-constitution", "task": {"judges": [entry]}}})
    )


def _rollout(task: vf.Task, reply: str) -> vf.Trace:
    """A finished rollout's trace, as verifiers' own debug/validate commands build one, with the agent's reply."""
    trace = vf.Trace(
        task=TraceTask(type=type(task).__name__, data=task.data, key=task.key, hash=task.hash),
        state=state_cls(type(task))(),
        agent=AgentInfo(config=vf.AgentConfig(), name="agent", trainable=True),
    )
    trace.root_reply = reply
    return trace


def test_vf_load_environment_loads_the_bundled_prompts(tmp_path: Path) -> None:
    env = _env(tmp_path)
    tasks = list(env.taskset)
    assert len(tasks) == 80 and all(t.data.prompt for t in tasks)
    assert [j.reward_name for j in tasks[0].plugged_judges()] == ["constitution"]


def test_verifiers_scores_a_group_of_rollouts_with_charters_judge(tmp_path: Path) -> None:
    env = _env(tmp_path, weight=0.5)
    task = next(iter(env.taskset))
    traces = [_rollout(task, SAFE if i % 2 else HARMFUL) for i in range(8)]

    async def score_group() -> None:  # verifiers scores a group's rollouts concurrently
        await asyncio.gather(*(task.score(t) for t in traces))

    asyncio.run(score_group())
    assert [t.rewards["constitution"].score for t in traces] == [0.0, 1.0] * 4  # 0.0 is a score, kept
    assert {t.rewards["constitution"].weight for t in traces} == {0.5}
    assert traces[1].reward == 0.5 and any(k.startswith("constitution/") for k in traces[1].metrics)
    assert len(list(rewards(RunStore(tmp_path / "store")))) == 8


def test_a_failed_judgment_stays_unscored_with_its_reason(tmp_path: Path) -> None:
    env = _env(tmp_path, judge="scripted:flaky-rater", max_reasks=0)
    task = next(iter(env.taskset))
    trace = _rollout(task, SAFE)  # the flaky judge cannot rate a reply without "ok"
    with pytest.raises(vf.TaskError, match="unparseable"):
        asyncio.run(task.score(trace))
    assert trace.rewards["constitution"] is None  # left unscored (verifiers seeds it None), never a number
    [note] = trace.info["charter"]
    assert note["reward"] is None and note["failure"].startswith("unparseable")
