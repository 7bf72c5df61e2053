"""verl's `custom_reward_function`: charter's constitutional judgment as the reward of each response.

verl (0.9) calls `compute_score(data_source, solution_str, ground_truth, extra_info, **reward_kwargs)` once per
response, concurrently, from its reward loop: `compute_score_async` is awaited there, `compute_score` runs in its
thread pool. Both gather the calls that arrive together into one batch of one reward function per process (or send
them to `charter serve reward`), so verl's concurrency becomes charter's batches within the judge's rate limits.

`reward_kwargs.scoring` is any of charter's scorings (`charter.reward.combine`): `score`, `reference` (against
`ground_truth`), `checklist` (the row's `extra_info["checklist"]`, else the constitution's criteria or
`checklist_writer`'s), `verify` (a charter verifier against `ground_truth`), `reward_model` (a trained reward model),
and the group scorings `group` and `rank`. verl hands its reward function one response, never the group, and picks a
reward worker at random for each response: a group scoring gathers the `group_size` responses of one prompt (the
row's `extra_info["index"]` and prompt) in its process, so it needs every response of a group to reach one process
(`reward.num_workers=1`) and the async `compute_score_async` (a blocked thread-pool call could hold the pool's
threads while the group's other responses wait for one). `reward_kwargs.weights` (scoring -> weight) adds several
scorings up; each one's reward is a column of verl's `reward_extra_info`. Through `server_url` with `group_size`, a
row's responses are gathered the same way and sent to the server as one request (for a server whose scoring is a
group scoring).

verl has no reward value for "unknown": a number becomes the response's reward, `None` fails its tensor. A failed
judgment therefore raises `JudgmentFailed`: verl's agent loop marks that rollout's group failed, and the group is
dropped and refilled (`trainer.v1.sampler.sync_refill_failed_groups=True` in sync mode; always in the async modes),
so a failure never trains as a score.

The prompt is read from `extra_info["prompt"]` (a string or chat messages) or `extra_info["question"]` (as verl's
example data preprocessing writes it); `ground_truth` is the reference of `reference` and `verify` scoring.
"""

from __future__ import annotations

import asyncio
import functools
import json
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from charter.errors import ArgumentError, BudgetExceeded, ConfigError
from charter.reward.batching import Groups, hand_out
from charter.reward.combine import (
    Asked,
    Outcome,
    failure_of,
    grouped,
    reads_references,
    weighted,
    weighted_sync,
    weights_of,
)
from charter.reward.scoring import JudgmentFailed

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


def _local(reward: float | None, outcomes: dict[str, Outcome]) -> dict[str, float]:
    """verl's dict of a weighted reward: `score`, and each scoring's reward as a column `charter_<scoring>`."""
    if reward is None:
        raise JudgmentFailed(failure_of(outcomes))
    columns = {f"charter_{name}": float(o.reward) for name, o in outcomes.items() if o.reward is not None}
    return {"score": float(reward), "charter_judge": float(reward), **columns}


def _split(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in kwargs.items() if k not in VERL_KEYS}


def asked(settings: dict[str, Any], solution_str: str, ground_truth: Any, extra_info: Any) -> Asked:
    """What charter is asked about one of verl's responses."""
    info = extra_info if isinstance(extra_info, dict) else {}
    prompt = prompt_of(extra_info)
    names = weights_of(settings)
    reference = ground_truth if any(reads_references(n) for n in names) else None
    group = row_key(info, prompt) if any(grouped(n) for n in names) else None
    return Asked(prompt, solution_str, reference, info.get("checklist"), group)


def row_key(info: dict[str, Any], prompt: Any) -> str:
    """The key a row's n responses share (its `extra_info["index"]` and prompt): their group."""
    return json.dumps([info.get("index"), prompt], default=str)


def compute_score(
    data_source: Any = None, solution_str: str = "", ground_truth: Any = None, extra_info: Any = None, **kwargs: Any
) -> dict[str, float]:
    """verl's `custom_reward_function` (sync): `{"score": reward, ...}`; raises `JudgmentFailed` for a failed judgment.

    `reward_kwargs` in verl's config are `charter.reward_function`'s arguments (`judge`, `constitution`, `scoring`,
    `store`, `cache`, `max_failures`, `concurrency`, judge settings such as `mode`) and the adapters' own (`verifier`,
    `reward_model`, `group_size`, `group_wait_s`, `weights`), or `server_url` and `token` to ask a running
    `charter serve reward` instead (its own scoring, verifier and reward model, as its config sets them)."""
    settings = _split(kwargs)
    if "server_url" in settings:
        sent = (prompt_of(extra_info), solution_str, _served_reference(settings, ground_truth))
        if _grouped(settings):
            done: Future[tuple[float | None, str]] = Future()
            _in_served_group(settings, extra_info, *sent, done)
            return _answer(*done.result())
        [answer] = _remote(settings, sent[0], [solution_str], sent[2])
        return _answer(*answer)
    return _local(*weighted_sync(settings, asked(settings, solution_str, ground_truth, extra_info)))


async def compute_score_async(
    data_source: Any = None, solution_str: str = "", ground_truth: Any = None, extra_info: Any = None, **kwargs: Any
) -> dict[str, float]:
    """`compute_score` for verl's async path (awaited on verl's reward loop; the judge works on charter's)."""
    settings = _split(kwargs)
    if "server_url" in settings:
        sent = (prompt_of(extra_info), solution_str, _served_reference(settings, ground_truth))
        if _grouped(settings):
            done: asyncio.Future[tuple[float | None, str]] = asyncio.get_running_loop().create_future()
            _in_served_group(settings, extra_info, *sent, done)
            return _answer(*await done)
        [answer] = await asyncio.to_thread(_remote, settings, sent[0], [solution_str], sent[2])
        return _answer(*answer)
    return _local(*await weighted(settings, asked(settings, solution_str, ground_truth, extra_info)))


def _served_reference(settings: dict[str, Any], ground_truth: Any) -> Any:
    """The reference a server is sent: `ground_truth` where the settings say its scoring reads one."""
    return ground_truth if reads_references(str(settings.get("scoring"))) else None


def _grouped(settings: dict[str, Any]) -> bool:
    """Whether the server is sent whole groups: `group_size` is set (the server's scoring is a group scoring)."""
    return int(settings.get("group_size") or 0) >= 2


@dataclass
class _Sent:
    prompt: Any
    completion: str
    reference: Any
    done: Future[tuple[float | None, str]] | asyncio.Future[tuple[float | None, str]]


_SENDERS: dict[str, Groups[_Sent]] = {}
_SENDERS_LOCK = threading.Lock()


def _in_served_group(
    settings: dict[str, Any],
    extra_info: Any,
    prompt: Any,
    completion: str,
    reference: Any,
    done: Future[tuple[float | None, str]] | asyncio.Future[tuple[float | None, str]],
) -> None:
    """One response's answer from the server into `done`, sent with the other responses of its row as one group."""
    wait_s = float(settings.get("group_wait_s") or 300.0)
    key = json.dumps([settings["server_url"], settings.get("token", ""), wait_s])
    with _SENDERS_LOCK:
        groups = _SENDERS.get(key)
        if groups is None:
            post = functools.partial(_post_group, dict(settings))
            groups = _SENDERS[key] = Groups(wait_s, lambda group: threading.Thread(target=post, args=(group,)).start())
    info = extra_info if isinstance(extra_info, dict) else {}
    groups.add(row_key(info, prompt), int(settings["group_size"]), _Sent(prompt, completion, reference, done))


def _post_group(settings: dict[str, Any], group: list[_Sent]) -> None:
    try:
        answers = _remote(settings, group[0].prompt, [s.completion for s in group], group[0].reference)
    except BaseException as exc:  # noqa: BLE001 - handed to each waiting caller, who raises it
        hand_out([sent.done for sent in group], exc)
        return
    hand_out([sent.done for sent in group], answers)


def _remote(
    settings: dict[str, Any], prompt: Any, completions: list[str], reference: Any, tries: int = 30
) -> list[tuple[float | None, str]]:
    """Completions of one prompt judged by `charter serve reward` (its native `/v1/rewards`, one request: a group
    for a group scoring), waiting out its 429s."""
    url = str(settings["server_url"]).rstrip("/") + "/v1/rewards"
    body = {
        "prompt": prompt,
        "completions": completions,
        **({"reference": reference} if reference is not None else {}),
    }
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {settings.get('token', '')}"}
    for _ in range(tries):
        request = urllib.request.Request(url, json.dumps(body).encode(), headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=600) as r:
                results = json.loads(r.read())["results"]
            return [(x.get("reward"), _failure_line(x.get("failure") or {})) for x in results]
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


def _failure_line(failure: dict[str, Any]) -> str:
    return f"{failure.get('kind')}: {failure.get('message')}"
