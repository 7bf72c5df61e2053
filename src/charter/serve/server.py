"""Running the reward server: build the reward function from the config, serve it with uvicorn, drain on SIGTERM.

Starlette and uvicorn are a small, maintained ASGI stack: uvicorn stops accepting on SIGTERM or Ctrl-C and lets the
requests in flight finish before it returns (graceful shutdown), which is what a scheduler's preemption needs.
"""

from __future__ import annotations

import logging
import secrets
import signal
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from charter.errors import ConfigError, Interrupted
from charter.online.reward import RewardFunction, reward_for
from charter.runs.merge import merge_rewards
from charter.runs.rewards import rewards
from charter.runs.store import STORE_FILE, RunStore
from charter.serve.app import RewardApp
from charter.serve.config import ServeConfig
from charter.serve.rm import RewardModel
from charter.serve.scorer import Scorer

log = logging.getLogger("charter.serve")


def build_reward(config: ServeConfig) -> RewardFunction:
    """The reward function `charter train grpo` would build from the same config."""
    return reward_for(config, config.output_dir, budget=config.budget, concurrency=config.concurrency)


def reward_model(config: ServeConfig) -> RewardModel | None:
    """The config's reward model, loaded once (None when it names none)."""
    if not config.reward_model:
        return None
    return RewardModel(config.reward_model, config.reward_model_batch_size)


def new_token() -> str:
    """A random token for a server started without one."""
    return secrets.token_urlsafe(24)


def serve(
    config: ServeConfig, host: str, port: int, token: str | None = None, announce: Callable[[str], Any] = print
) -> None:
    """Serve until SIGTERM or Ctrl-C (a token is generated and printed when none is given); the requests in flight
    finish and are stored, then `Interrupted` (exit 143 for SIGTERM, 130 for Ctrl-C) is raised."""
    import uvicorn

    shown = "<token>" if token else None  # a given token is never printed or logged
    token = token or new_token()
    model = reward_model(config)  # a bad one is one line before the server listens
    reward = build_reward(config)
    app = RewardApp(Scorer(config, reward, model), token)
    stopped: list[int] = []

    def note(signum: int, frame: Any) -> None:  # uvicorn re-raises the signal it caught once it has drained
        stopped.append(signum)

    previous = {s: signal.signal(s, note) for s in (signal.SIGTERM, signal.SIGINT)}
    server = uvicorn.Server(uvicorn.Config(app.asgi(), host=host, port=port, access_log=False, log_level="warning"))
    announce(f"charter reward server on http://{host}:{port} ({config.scoring} scoring, store {config.output_dir})")
    if model is not None:
        announce(f"reward model: {config.reward_model} (weight {config.reward_model_weight})")
    if shown is None:
        announce(f"token: {token}")
    announce(f"OpenRLHF: --reward.remote_url http://{host}:{port}/get_reward?token={shown or token}")
    try:
        server.run()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        reward.close()
    if stopped:
        term = stopped[0] == signal.SIGTERM
        raise Interrupted("terminated" if term else "interrupted", 143 if term else 130)


def merge_stores(into: Path, stores: Sequence[Path]) -> int:
    """Append each server's rewards and usage to the store `into`, as the ranks of a torchrun job are merged (each
    store once: merging one twice counts its rewards twice). Returns the rewards `into` then holds."""
    missing = [str(s) for s in stores if not (Path(s) / STORE_FILE).exists()]
    if missing:
        raise ConfigError(f"no reward store ({STORE_FILE}) in {', '.join(missing)}")
    with RunStore(into, create=True) as store:
        for path in stores:
            merge_rewards(store, Path(path) / STORE_FILE)
        return sum(1 for _ in rewards(store))
