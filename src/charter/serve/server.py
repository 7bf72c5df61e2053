"""Running the reward server: build the reward function from the config, serve it with uvicorn, drain on SIGTERM.

Starlette and uvicorn are a small, maintained ASGI stack: uvicorn stops accepting on SIGTERM or Ctrl-C and lets the
requests in flight finish before it returns (graceful shutdown), which is what a scheduler's preemption needs.
"""

from __future__ import annotations

import gc
import logging
import os
import secrets
import signal
import socket
from collections.abc import Callable, Sequence
from contextlib import closing
from pathlib import Path
from typing import Any

from charter.errors import ArgumentError, ConfigError, Interrupted
from charter.reward.combine import RewardModel
from charter.reward.function import RewardFunction, reward_for
from charter.runs.items import merge_rewards
from charter.runs.rewards import rewards, unexplained
from charter.runs.store import STORE_FILE, RunStore
from charter.serve.app import RewardApp, Scorer
from charter.serve.config import ServeConfig

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
    finish and are stored, then `Interrupted` (exit 143 for SIGTERM, 130 for Ctrl-C) is raised. A port that cannot be
    had is an `ArgumentError` before anything is printed; port 0 takes a free one, and the one taken is announced."""
    import uvicorn

    with closing(bound_socket(host, port)) as sock:  # a port in use: one line before the model loads or a token
        shown = "<token>" if token else None  # a given token is never printed or logged
        token = token or new_token()
        model = reward_model(config)  # a bad one is one line before the server listens
        reward = build_reward(config)
        app = RewardApp(Scorer(config, reward, model), token)
        try:
            gc.freeze()  # what start-up made lives as long as the server: the collector no longer walks it per request
            _listen(sock, host, port)
            url = f"http://{f'[{host}]' if ':' in host else host}:{sock.getsockname()[1]}"  # IPv6 in brackets
            announce(f"charter reward server on {url} ({config.scoring} scoring, store {config.output_dir})")
            if model is not None:
                announce(f"reward model: {config.reward_model} (weight {config.reward_model_weight})")
            if shown is None:
                announce(f"token: {token}")
            announce(f"OpenRLHF: --reward.remote_url {url}/get_reward?token={shown or token}")
            stopped = _run(uvicorn.Server(uvicorn.Config(app.asgi(), access_log=False, log_level="warning")), sock)
        finally:
            reward.close()
    if stopped:
        term = stopped[0] == signal.SIGTERM
        raise Interrupted("terminated" if term else "interrupted", 143 if term else 130)


def _run(server: Any, sock: socket.socket) -> list[int]:
    """Serve on `sock` until a signal; the signals caught (uvicorn re-raises the one it caught once it has drained)."""
    stopped: list[int] = []

    def note(signum: int, frame: Any) -> None:
        stopped.append(signum)

    previous = {s: signal.signal(s, note) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.run(sockets=[sock])
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    return stopped


def bound_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to host:port (port 0: a free one, read back with `getsockname`), not yet listening."""
    if not 0 <= port <= 65535:
        raise ArgumentError("port", f"expected 0..65535, got {port}")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        raise ArgumentError("host", f"{host!r} is no address this machine can bind ({exc.strerror})") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: a restart reuses its port
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise ArgumentError("port", f"cannot listen on {host}:{port} ({exc.strerror})") from None
    return sock


def _listen(sock: socket.socket, host: str, port: int) -> None:
    try:
        sock.listen(2048)  # uvicorn's default backlog
    except OSError as exc:  # another process bound the same port meanwhile and listens on it
        raise ArgumentError("port", f"cannot listen on {host}:{port} ({exc.strerror})") from None


def merge_stores(into: Path, stores: Sequence[Path]) -> tuple[int, int]:
    """Append each server's rewards and usage to the store `into`, as the ranks of a torchrun job are merged (each
    store once: merging one twice counts its rewards twice, so a store named twice, or `into` itself, is refused).
    Returns the rewards `into` then holds, and how many of them an earlier charter stored with neither a reward nor
    a failure (they read as failures of unknown cause)."""
    missing = [str(s) for s in stores if not (Path(s) / STORE_FILE).exists()]
    if missing:
        raise ConfigError(f"no reward store ({STORE_FILE}) in {', '.join(missing)}")
    _check_distinct(Path(into), [Path(s) for s in stores])
    with RunStore(into, create=True) as store:
        for path in stores:
            merge_rewards(store, Path(path) / STORE_FILE)
        return sum(1 for _ in rewards(store)), unexplained(store)


def _check_distinct(into: Path, stores: list[Path]) -> None:
    """Each store file once, and none of them the output's: the same file under two spellings (a symlink, `./a` and
    `a`, a hard link) is one store."""
    target = into / STORE_FILE
    seen: dict[tuple[int, int], Path] = {}
    for path in stores:
        found = (path / STORE_FILE).stat()
        if target.exists() and os.path.samestat(found, target.stat()):
            raise ConfigError(f"{path} is the store merged into ({into}): a store cannot be merged into itself")
        first = seen.get((found.st_dev, found.st_ino))
        if first is not None:
            raise ConfigError(
                f"{path} and {first} are the same store: name each store once (a second merge counts its rewards twice)"
            )
        seen[(found.st_dev, found.st_ino)] = path
