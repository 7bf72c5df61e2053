"""A run's stop request reaches the local model: no batch and no weights load start after a stop, a batch running
ends at its next decoding step once the grace period is over, and `aclose` never drops the weights under a call."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from charter.errors import CharterError, Interrupted
from charter.interrupt import StopRequest
from charter.providers.base import SamplingParams
from charter.records import Message

pytest.importorskip("torch")
pytest.importorskip("transformers")

from charter.providers.local import LocalModel  # noqa: E402
from charter.providers.registry import get_model  # noqa: E402
from tests.providers.test_local import build_tiny_chat_model  # noqa: E402

LONG = SamplingParams(temperature=0, max_tokens=40)
REQUESTS = [[Message(role="user", content=f"Tell me about the fox number {i}.")] for i in range(6)]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_chat_model(tmp_path_factory.mktemp("tiny-llama"))


def tiny(folder: Path, stop: StopRequest | None = None) -> LocalModel:
    model = LocalModel(str(folder), batch_size=2, device="cpu", dtype="float32", engine="charter")
    model.stop_request = stop
    return model


def test_after_a_stop_no_weights_load_and_no_batch_starts(tiny_dir: Path) -> None:
    stop = StopRequest(grace_s=60)
    stop.request("terminated", 143)
    model = tiny(tiny_dir, stop)
    with pytest.raises(Interrupted) as caught:
        model.generate_sync(REQUESTS, LONG)
    assert caught.value.exit_code == 143
    assert model._tokenizer is None and model._decoder is None  # nothing was loaded


def test_a_stop_ends_the_next_batch_and_past_the_grace_period_the_running_one(tiny_dir: Path) -> None:
    model = tiny(tiny_dir)
    model.load()
    assert model._decoder is not None
    steps = {"n": 0}

    def step(grace_s: float, at: int) -> StopRequest:
        stop = StopRequest(grace_s=grace_s)
        model.stop_request = stop

        def pace() -> None:
            steps["n"] += 1
            if steps["n"] == at:
                stop.request("terminated", 143)

        model._decoder.pace = pace  # type: ignore[union-attr]
        steps["n"] = 0
        return stop

    # within the grace period the running batch finishes; the next one does not start
    step(grace_s=60, at=3)
    with pytest.raises(Interrupted):
        model.generate_sync(REQUESTS, LONG)
    first_batch = steps["n"]
    assert 3 < first_batch < 2 * 40  # the first batch ran to its end, and no other batch began
    # past the grace period the running batch ends at its next step
    step(grace_s=0, at=3)
    with pytest.raises(Interrupted):
        model.generate_sync(REQUESTS, LONG)
    assert steps["n"] == 3


async def test_aclose_waits_for_the_running_call_which_ends_at_its_next_step(tiny_dir: Path) -> None:
    model = tiny(tiny_dir)
    model.load()
    closing = asyncio.Event()
    loop = asyncio.get_running_loop()

    def pace() -> None:
        loop.call_soon_threadsafe(closing.set)
        while not model._closing:  # hold the call here until aclose has seen it running
            pass

    model._decoder.pace = pace  # type: ignore[union-attr]
    call = asyncio.ensure_future(model.generate(REQUESTS, LONG))
    await closing.wait()
    await model.aclose()
    with pytest.raises(CharterError, match="closed while a call ran"):
        await call
    assert model._tokenizer is None and model._decoder is None  # dropped, and not loaded again by the call


async def test_answers_reach_their_callers_batch_by_batch(tiny_dir: Path) -> None:
    """Through the managed model (as the stages call it): each batch's calls are counted as it finishes, not when
    the whole coalesced call ends, and after a stop the batches that finished keep their answers."""
    model = tiny(tiny_dir)
    model.load()
    managed = get_model(model)
    counted: list[int] = []
    stop = StopRequest(grace_s=60)
    model.stop_request = stop

    def pace() -> None:
        counted.append(sum(t.calls for t in managed.meter.tallies.values()))
        if counted[-1] == 2:  # the first batch is counted while the second one runs: stop then
            stop.request("terminated", 143)

    model._decoder.pace = pace  # type: ignore[union-attr]
    outcomes = await asyncio.gather(*(managed.generate([r], LONG) for r in REQUESTS), return_exceptions=True)
    answered = [o for o in outcomes if not isinstance(o, BaseException)]
    assert counted[0] == 0 and max(counted) == 2  # counted while the next batch ran; no third batch began
    assert len(answered) == 4 and sum(isinstance(o, Interrupted) for o in outcomes) == 2
