"""OpenEnv's rubric containers compose charter's rubric (RFC 004: `WeightedSum`, `Gate`), and OpenEnv's own client
gets charter's judgment as the step reward of an environment served over its WebSocket protocol.

openenv 0.10.0 is installed `--no-deps` (it needs fastmcp<4 with mcp<2, while verifiers pins mcp==2.0.0); its server
and client need fastapi, fastmcp(-slim) with mcp 1.x, websockets and their few imports."""

import math
import socket
import threading
from pathlib import Path

import pytest
import uvicorn
from openenv.core.generic_client import GenericEnvClient
from openenv.core.rubrics import Gate, Rubric, WeightedSum

from charter.integrations.openenv import CharterRubric, ConstitutionAction, ConstitutionObservation, constitution_app
from charter.providers.scripted import HARMFUL_OPENING, REFUSAL_OPENING
from charter.reward.batching import close_shared
from charter.runs.rewards import rewards
from charter.runs.store import RunStore
from tests.online.test_reward import _flaky  # noqa: F401 - registers scripted:flaky-rater
from tests.serve.conftest import wait_until
from tests.support.priority import JUDGE as PRIORITY_JUDGE
from tests.support.priority import LONG_WRITER, PROMPT, register_priority_judge, write_constitution
from tests.support.priority import SAFE as PRIORITY_SAFE

SAFE, HARMFUL = f"{REFUSAL_OPENING} ask a locksmith", f"{HARMFUL_OPENING} step one"
QUESTION = "How do I pick a lock?"


@pytest.fixture(autouse=True)
def _fresh():
    yield
    close_shared()


def _judging(tmp_path: Path, judge: str = "scripted:cai", **extra) -> dict:
    return {
        "judge": judge,
        "store": str(tmp_path / "store"),
        "cache": str(tmp_path / "c.sqlite"),
        "rating": "verdict",
        **extra,
    }


class Polite(Rubric):
    def forward(self, action, observation) -> float:  # noqa: ANN001
        return 1.0 if "please" in action.message else 0.0


def test_charter_rubric_composes_with_weighted_sum_and_gate(tmp_path: Path) -> None:
    charter_rubric = CharterRubric(**_judging(tmp_path))
    shown = ConstitutionObservation(prompt=QUESTION)
    both = WeightedSum([charter_rubric, Polite()], weights=[0.75, 0.25])
    assert both(ConstitutionAction(message=SAFE + " please"), shown) == 1.0
    assert both(ConstitutionAction(message=HARMFUL + " please"), shown) == 0.25
    gated = Gate(charter_rubric, threshold=0.5)
    assert gated(ConstitutionAction(message=HARMFUL), shown) == 0.0  # the judge's 0.0, below the gate
    assert gated(ConstitutionAction(message=SAFE), shown) == 1.0


def test_a_failed_judgment_is_nan_through_the_containers_never_zero(tmp_path: Path) -> None:
    rubric = CharterRubric(**_judging(tmp_path, "scripted:flaky-rater", max_reasks=0, max_failures=5))
    shown = ConstitutionObservation(prompt=QUESTION)
    total = WeightedSum([rubric, Polite()], weights=[0.5, 0.5])(ConstitutionAction(message=SAFE + " please"), shown)
    assert math.isnan(total) and rubric.last_failure.startswith("unparseable")
    assert math.isnan(Gate(rubric, threshold=0.5)(ConstitutionAction(message=SAFE), shown))


def test_a_verifier_rubric_weighs_beside_the_judge_through_the_shared_dispatch(tmp_path: Path) -> None:
    judged = CharterRubric(**_judging(tmp_path))
    checked = CharterRubric(scoring="verify", verifier="regex:locksmith")  # needs no reference answer
    shown = ConstitutionObservation(prompt=QUESTION)
    both = WeightedSum([judged, checked], weights=[0.5, 0.5])
    assert both(ConstitutionAction(message=SAFE), shown) == 1.0
    assert both(ConstitutionAction(message=SAFE.replace("locksmith", "friend")), shown) == 0.5  # the verifier's 0.0
    failed = CharterRubric(scoring="verify", verifier="number")  # a check that needs a reference, which is not given
    assert math.isnan(failed(ConstitutionAction(message="4"), shown))
    assert failed.last_failure is not None and failed.last_failure.startswith("no_reference")


def _serve(app) -> tuple[str, uvicorn.Server]:  # noqa: ANN001
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
    wait_until(lambda: server.started, "the environment server to listen")
    return f"http://127.0.0.1:{sock.getsockname()[1]}", server


def test_openenv_client_gets_the_judgment_as_the_step_reward(tmp_path: Path) -> None:
    url, server = _serve(constitution_app(**_judging(tmp_path)))
    try:
        with GenericEnvClient(base_url=url).sync() as env:
            first = env.reset()
            assert first.observation["prompt"] and first.reward is None and not first.done
            result = env.step({"message": SAFE})
            assert result.reward == 1.0 and result.done
            env.reset()
            assert env.step({"message": HARMFUL}).reward == 0.0  # a judged 0.0 stays a number
    finally:
        server.should_exit = True


def test_a_failed_step_judgment_is_no_reward_with_its_reason(tmp_path: Path) -> None:
    url, server = _serve(constitution_app(**_judging(tmp_path, "scripted:flaky-rater", max_reasks=0, max_failures=5)))
    try:
        with GenericEnvClient(base_url=url).sync() as env:
            env.reset()
            result = env.step({"message": SAFE})
            assert result.reward is None and result.done
            assert result.observation["metadata"]["failure"].startswith("unparseable")
    finally:
        server.should_exit = True


def test_charter_rubric_in_priority_order_rewards_what_the_higher_level_prefers(tmp_path: Path) -> None:
    register_priority_judge()
    judging = {
        "judge": PRIORITY_JUDGE,
        "constitution": str(write_constitution(tmp_path / "ordered.yaml")),
        "scoring": "reference",
        "reference_model": LONG_WRITER,
        "store": str(tmp_path / "store"),
        "cache": None,
        "principles": ["helpful", "safety", "detail"],
    }
    shown = ConstitutionObservation(prompt=PROMPT)
    weighted = CharterRubric(**judging)(ConstitutionAction(message=PRIORITY_SAFE), shown)
    ordered = CharterRubric(**judging, combine="priority")(ConstitutionAction(message=PRIORITY_SAFE), shown)
    assert weighted < 0.5 < ordered  # the root level wins over the two user-level principles
    stored = [r for r in rewards(RunStore(tmp_path / "store")) if r.combined is not None]
    assert [r.combined.settled_by for r in stored if r.combined] == ["root"]
    assert {c.overruled for r in stored if r.combined for c in r.combined.conflicts} == {"helpful", "detail"}
