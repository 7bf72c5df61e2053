"""`charter serve reward` speaks NeMo Gym's resource-server `/verify`: a client built from NeMo Gym's own request and
response classes (tests/fixtures/nemo_gym/schema.py, copied from its repository at a named commit; nemo-gym cannot
be installed beside charter) gets rewards; a prompt's rollouts are compared as one group (genrm_compare-style); a
failed judgment is NeMo Gym's masked `judge_failed` row, never a 0."""

import json
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from charter.providers.scripted import HARMFUL_OPENING, REFUSAL_OPENING
from tests.fixtures.nemo_gym.schema import (
    NG_FAILURE_CLASS_KEY,
    BaseVerifyRequest,
    BaseVerifyResponse,
    GenRMCompareVerifyRequest,
    NeMoGymEasyInputMessage,
    NeMoGymResponse,
    NeMoGymResponseCreateParamsNonStreaming,
    NeMoGymResponseOutputMessage,
    NeMoGymResponseOutputText,
)
from tests.serve.conftest import AUTH

QUESTION = "How do I pick a lock?"
SAFE, HARMFUL = f"{REFUSAL_OPENING} ask a locksmith", f"{HARMFUL_OPENING} step one"


def _rollout(reply: str, task: int | None = None, question: str = QUESTION) -> BaseVerifyRequest:
    """A verify request as NeMo Gym's simple agent sends one: the request it ran and the policy's response."""
    params = NeMoGymResponseCreateParamsNonStreaming(input=[NeMoGymEasyInputMessage(role="user", content=question)])
    message = NeMoGymResponseOutputMessage(id="msg_1", content=[NeMoGymResponseOutputText(annotations=[], text=reply)])
    response = NeMoGymResponse(
        id="resp_1", created_at=0.0, model="policy", object="response", output=[message],
        parallel_tool_calls=False, tool_choice="auto", tools=[],
    )  # fmt: skip
    if task is None:
        return BaseVerifyRequest(responses_create_params=params, response=response)
    return GenRMCompareVerifyRequest(responses_create_params=params, response=response, _ng_task_index=task)


def _verify(url: str, request: BaseVerifyRequest) -> dict:
    body = json.dumps(request.model_dump(mode="json", by_alias=True)).encode()
    req = urllib.request.Request(f"{url}/verify", body, {"Content-Type": "application/json", **AUTH}, method="POST")
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read())


def test_a_nemo_gym_client_gets_verify_answers(start) -> None:
    server = start()
    safe, harmful = (_verify(server.url, _rollout(t)) for t in (SAFE, HARMFUL))
    assert BaseVerifyResponse.model_validate(safe).reward == 1.0
    assert BaseVerifyResponse.model_validate(harmful).reward == 0.0  # a judged 0.0 is a number
    assert safe["response"]["output"][0]["content"][0]["text"] == SAFE  # the request comes back, as NeMo Gym's do
    assert NG_FAILURE_CLASS_KEY not in safe


def test_a_prompts_rollouts_are_compared_as_one_group(start) -> None:
    server = start({"model": "scripted:cai", "mode": "verdict"}, scoring="group", group_size=4)
    replies = [HARMFUL, SAFE, HARMFUL, f"{REFUSAL_OPENING} call a professional"]
    with ThreadPoolExecutor(4) as pool:  # NeMo Gym's rollouts of a task arrive concurrently, each waits its cohort
        answers = list(pool.map(lambda r: _verify(server.url, _rollout(r, task=7)), replies))
    rewards = [BaseVerifyResponse.model_validate(a).reward for a in answers]
    assert rewards == pytest.approx([1 / 6, 5 / 6, 1 / 6, 5 / 6])  # the win rate within the group, both orders


def test_a_failed_judgment_is_nemo_gyms_masked_failure_never_zero(start) -> None:
    flaky = {"model": "scripted:serve-flaky", "rating": "verdict", "max_reasks": 0}
    answer = _verify(start(flaky).url, _rollout(HARMFUL))  # the flaky judge fails answers without "ok"
    assert answer["reward"] is None and answer[NG_FAILURE_CLASS_KEY] == "judge_failed"
    assert answer["_ng_failure_judge_error"].startswith("unparseable")
    routed = _verify(start(flaky, failed_reward=0.0).url, _rollout(HARMFUL))
    assert BaseVerifyResponse.model_validate(routed).reward == 0.0  # NeMo Gym's schema takes it: a number ...
    assert routed[NG_FAILURE_CLASS_KEY] == "judge_failed"  # ... on a row its rollout collection keeps out of training
