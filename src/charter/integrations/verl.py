"""verl's `custom_reward_function`: charter's constitutional judgment as the reward of each response.

verl (0.9) calls `compute_score(data_source, solution_str, ground_truth, extra_info, **reward_kwargs)` once per
response, concurrently, from its reward loop: `compute_score_async` is awaited there, `compute_score` runs in its
thread pool. Both gather the calls that arrive together into one batch of one reward function per process (or send
them to `charter serve reward`), so verl's concurrency becomes charter's batches within the judge's rate limits.

verl has no reward value for "unknown": a number becomes the response's reward, `None` fails its tensor. A failed
judgment therefore raises `JudgmentFailed`: verl's agent loop marks that rollout's group failed, and the group is
dropped and refilled (`trainer.v1.sampler.sync_refill_failed_groups=True` in sync mode; always in the async modes),
so a failure never trains as a score.

The prompt is read from `extra_info["prompt"]` (a string or chat messages) or `extra_info["question"]` (as verl's
example data preprocessing writes it); `ground_truth` is the reference of `reference` scoring.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from typing import Any

from charter.errors import ArgumentError, BudgetExceeded, ConfigError
from charter.integrations.judging import JudgmentFailed, failure_text, shared
from charter.records import RewardRecord

#: Keyword arguments verl itself adds to the call (with a reward router); every other one is a `reward_kwargs` setting.
VERL_KEYS = ("reward_router_address", "reward_model_tokenizer")


def prompt_of(extra_info: Any) -> Any:
    """The prompt verl's row carries in `extra_info` (`prompt`, else `question`); a `ConfigError` without one."""
    info = extra_info if isinstance(extra_info, dict) else {}
    for key in ("prompt", "question"):
        value = info.get(key)
        if isinstance(value, str) and value.strip() or isinstance(value, list) and value:
            return value
    raise ConfigError(
        "verl extra_info: charter's judge needs the prompt; put it in each row's extra_info as 'prompt' (a string or "
        "chat messages) or 'question'"
    )


def _answer(reward: float | None, failure: str) -> dict[str, float]:
    """verl's dict: `score` is the reward; the other keys become `reward_extra_info` columns (the same in every row)."""
    if reward is None:
        raise JudgmentFailed(failure)
    return {"score": float(reward), "charter_judge": float(reward)}


def _local(record: RewardRecord) -> dict[str, float]:
    return _answer(record.reward, failure_text(record))


def _split(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in kwargs.items() if k not in VERL_KEYS}


def compute_score(
    data_source: Any = None, solution_str: str = "", ground_truth: Any = None, extra_info: Any = None, **kwargs: Any
) -> dict[str, float]:
    """verl's `custom_reward_function` (sync): `{"score": reward, ...}`; raises `JudgmentFailed` for a failed judgment.

    `reward_kwargs` in verl's config are `charter.reward_function`'s arguments (`judge`, `constitution`, `scoring`:
    `score` or `reference`, `store`, `cache`, `max_failures`, `concurrency`, judge settings such as `mode`), or
    `server_url` and `token` to ask a running `charter serve reward` instead."""
    settings = _split(kwargs)
    prompt = prompt_of(extra_info)
    reference = ground_truth if settings.get("scoring") == "reference" else None
    if "server_url" in settings:
        return _answer(*_remote(settings, prompt, solution_str, reference))
    return _local(shared(settings).one(prompt, solution_str, reference))


async def compute_score_async(
    data_source: Any = None, solution_str: str = "", ground_truth: Any = None, extra_info: Any = None, **kwargs: Any
) -> dict[str, float]:
    """`compute_score` for verl's async path (awaited on verl's reward loop; the judge works on charter's)."""
    settings = _split(kwargs)
    prompt = prompt_of(extra_info)
    reference = ground_truth if settings.get("scoring") == "reference" else None
    if "server_url" in settings:
        return _answer(*await asyncio.to_thread(_remote, settings, prompt, solution_str, reference))
    return _local(await shared(settings).aone(prompt, solution_str, reference))


def _remote(
    settings: dict[str, Any], prompt: Any, completion: str, reference: Any, tries: int = 30
) -> tuple[float | None, str]:
    """One completion judged by `charter serve reward` (its native `/v1/rewards`), waiting out its 429s."""
    url = str(settings["server_url"]).rstrip("/") + "/v1/rewards"
    body = {
        "prompt": prompt,
        "completions": [completion],
        **({"reference": reference} if reference is not None else {}),
    }
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {settings.get('token', '')}"}
    for _ in range(tries):
        request = urllib.request.Request(url, json.dumps(body).encode(), headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=600) as r:
                [result] = json.loads(r.read())["results"]
            failure = result.get("failure") or {}
            return result.get("reward"), f"{failure.get('kind')}: {failure.get('message')}"
        except urllib.error.HTTPError as e:
            message = e.read().decode(errors="replace")
            if e.code == 429:  # the server's queue is full: its Retry-After says when to come back
                time.sleep(float(e.headers.get("Retry-After") or 1))
                continue
            if e.code == 503:
                raise BudgetExceeded(f"charter serve reward at {url}: {message}") from None
            raise ArgumentError("server_url", f"{url} answered {e.code}: {message}") from None
        except urllib.error.URLError as e:
            raise ArgumentError("server_url", f"cannot reach {url} ({e.reason})") from None
    raise ArgumentError("server_url", f"{url} stayed busy (429) through {tries} tries")
