"""`charter.mix_probe`: fill the score table a mixture is planned from, one small training run per source.

For each source: a seeded sample of `budget` rows, a reward model trained on it (`train_reward_model`, with the
trainer settings given), and that model scored on the target pairs (`evaluate_rm`: accuracy per `subset`, each
subset a target). Each source's summary is `OUT/NAME.json`, the `charter eval rm` summary that `charter mix plan`
reads (the file's stem names the source). A probe whose source, sample, trainer settings and pairs are unchanged
is not run again.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, TypedDict

import numpy as np
import orjson

from charter.api_args import Kinds, Range, public
from charter.errors import ArgumentError, DatasetError
from charter.mixing.build import check_source
from charter.mixing.mix import rows_of
from charter.records import fingerprint
from charter.reward_model.config import RewardModelConfig
from charter.yamlio import config_from

NAME = re.compile(r"^[\w.-]+$")
TRAINER_KINDS = "a RewardModelConfig, a dict of its fields or a YAML file's path"


class ProbeResult(TypedDict):
    """One source's probe: where its summary is, and whether it ran now or was kept from before."""

    summary: str
    """The `charter eval rm` summary (OUT/NAME.json)."""
    rows: int
    """Rows of the source it trained on."""
    ran: bool
    """False where an earlier probe with the same settings was kept."""


def _sample(path: str, name: str, budget: int, seed: int) -> list[dict[str, Any]]:
    """A seeded sample of `budget` rows of the source (all of a smaller one), in file order."""
    rows = rows_of(check_source(name, path, f"sources[{name!r}]"), "train", f"source {name!r}")
    if not rows:
        raise DatasetError(f"sources[{name!r}]: {path} holds no rows")
    if len(rows) > budget:
        keep = np.random.default_rng(seed).choice(len(rows), budget, replace=False)
        rows = [rows[i] for i in sorted(keep)]
    return rows


def _probe_one(
    name: str, path: str, pairs: str, out: Path, trainer: RewardModelConfig, budget: int, seed: int
) -> ProbeResult:
    from charter.evals.rm import evaluate_rm
    from charter.hub.croissant import sha256
    from charter.reward_model.train import train_reward_model

    rows = _sample(path, name, budget, seed)
    folder, summary = out / name, out / f"{name}.json"
    key = fingerprint(
        {
            "rows": fingerprint(orjson.dumps(rows, default=str).decode()),
            "trainer": trainer.model_dump(mode="json", exclude={"dataset", "output_dir"}),
            "pairs": sha256(Path(pairs)) if Path(pairs).is_file() else pairs,
            "seed": seed,
        }
    )
    stamp = folder / "probe.json"
    if summary.is_file() and stamp.is_file() and orjson.loads(stamp.read_bytes()).get("fingerprint") == key:
        return {"summary": str(summary), "rows": len(rows), "ran": False}
    folder.mkdir(parents=True, exist_ok=True)
    train = folder / "train.jsonl"
    train.write_bytes(b"".join(orjson.dumps(row, default=str) + b"\n" for row in rows))
    fields = {"dataset": str(train), "output_dir": str(folder / "rm"), "seed": seed, "resume": False}
    train_reward_model(trainer.model_copy(update=fields))
    evaluate_rm(reward_model=str(folder / "rm"), pairs=pairs, out=summary, max_length=trainer.max_length)
    stamp.write_bytes(orjson.dumps({"fingerprint": key, "source": path, "rows": len(rows), "budget": budget}))
    return {"summary": str(summary), "rows": len(rows), "ran": True}


@public
def mix_probe(
    sources: Annotated[dict[str, str], Kinds(dict, said="a mapping of source name -> its rows' path")],
    pairs: str | Path,
    out: str | Path,
    trainer: Annotated[Any, Kinds(RewardModelConfig, dict, str, Path, type(None), said=TRAINER_KINDS)] = None,
    budget: Annotated[int, Range(ge=1)] = 256,
    seed: int = 0,
) -> dict[str, ProbeResult]:
    """Score each source on each target subtask with a small training run: the table `mix_plan` reads.

    Args:
        sources: Source name -> where its rows are (a .jsonl/.parquet file, an export folder, a run directory or a
            Hub id); names are letters, digits, `.`, `_` and `-` (they name files).
        pairs: The target pairs: JSONL/parquet with prompt, chosen, rejected and `subset` (the target).
        out: The folder for each source's sample, reward model, summary (`OUT/NAME.json`) and stamp.
        trainer: Reward-model settings (`RewardModelConfig`, a dict of its fields or a YAML file): the backbone,
            `trl` (`max_steps`, ...); `dataset` and `output_dir` are set per probe. Default: its defaults.
        budget: Rows of each source trained on (a seeded sample; all of a smaller source).
        seed: Seed of the sample and the training.

    Returns:
        Source -> its `ProbeResult`. Plan with `mix_plan([result["summary"] for result in ...])`.

    Raises:
        ArgumentError: No source, a source name that cannot name a file, `budget` below 1.
        ConfigError: `trainer` is not a valid `RewardModelConfig`.
        DatasetError: A source does not exist or holds no rows; the pairs cannot be read.
        TrainingError: The trainer cannot load its model or refuses the settings.
    """
    if not sources:
        raise ArgumentError("sources", "no source to probe")
    for name in sources:
        if not NAME.match(name):
            raise ArgumentError("sources", f"{name!r}: a source name is letters, digits, '.', '_' and '-'")
    config = RewardModelConfig() if trainer is None else config_from(RewardModelConfig, trainer, "trainer")
    folder = Path(out)
    return {
        name: _probe_one(name, str(path), str(pairs), folder, config, budget, seed) for name, path in sources.items()
    }
