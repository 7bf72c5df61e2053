"""Runs sharded over a local Ray cluster: the same dataset as one process, and a resume starts only the shards
that are not done."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from charter.cli import main
from charter.pipeline.shards import shard_dir, shard_of
from charter.runs.counts import set_stage, stage_states
from charter.runs.store import RunStore
from charter.runs.usage import stored_usage

pytest.importorskip("ray")

N = 24
RUN_FIELDS = {"run_id", "created_at"}


@pytest.fixture(scope="module")
def ray_cluster():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, configure_logging=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def config(tmp_path: Path, name: str, **extra) -> Path:
    data = {
        "name": name,
        "output_dir": str(tmp_path / name),
        "cache": str(tmp_path / f"{name}.sqlite"),
        "prompts": {"inline": [f"Question {i}: how do I do thing {i}?" for i in range(N)]},
        "policy": "scripted:cai",
        "judge": {"model": "scripted:cai", "principles_per_pair": 2},
        "pairs": {"kinds": ["revision", "samples"], "k": 3},
        "report": True,
        **extra,
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def rows(run_dir: Path, name: str = "preferences", ordered: bool = False) -> list[dict]:
    lines = (run_dir / "data" / f"{name}.jsonl").read_text().splitlines()
    found = [{k: v for k, v in json.loads(line).items() if k not in RUN_FIELDS} for line in lines]
    return found if ordered else sorted(found, key=lambda r: json.dumps(r, sort_keys=True))


def usage(run_dir: Path) -> tuple[int, int]:
    with RunStore(run_dir) as store:
        found = stored_usage(store)
    return sum(u.calls for u in found), sum(u.prompt_tokens + u.completion_tokens for u in found)


def test_two_shards_make_the_one_process_dataset(tmp_path, ray_cluster):
    assert main(["run", str(config(tmp_path, "single"))]) == 0
    assert main(["run", str(config(tmp_path, "sharded")), "--ray", "local", "--shards", "2"]) == 0
    single, sharded = tmp_path / "single", tmp_path / "sharded"
    assert len(rows(single)) == N
    assert rows(sharded) == rows(single)
    assert rows(sharded, ordered=True) == rows(single, ordered=True)  # pair order: ids, not which call ended first
    assert rows(sharded, "sft") == rows(single, "sft")
    assert usage(sharded) == usage(single)  # every call once, counted once
    with RunStore(sharded) as store:
        stages = stage_states(store)
        assert stages["critique"]["status"] == stages["judge"]["status"] == "done"
        assert stages["judge"]["counts"]["shards"] == 2
    sizes = [sum(shard_of(f"{i}", 2) == s for i in range(1000)) for s in (0, 1)]
    assert min(sizes) > 400  # the hash splits evenly
    for i in range(2):
        with RunStore(shard_dir(sharded, i, 2)) as shard:
            assert 0 < shard.count("prompts") < N
    assert "Preference" in (sharded / "report" / "report.md").read_text()


def test_resume_starts_only_unfinished_shards(tmp_path, ray_cluster, capsys):
    path = config(tmp_path, "sharded", execution={"engine": "ray", "shards": 2})
    assert main(["run", str(path)]) == 0
    complete = rows(tmp_path / "sharded")
    calls = usage(tmp_path / "sharded")[0]
    # shard 1 loses its judgments and is marked interrupted, as a killed worker would leave it
    with RunStore(shard_dir(tmp_path / "sharded", 1, 2)) as shard:
        lost = shard.count("judgments")
        shard.execute("DELETE FROM judgments")
        set_stage(shard, "judge", "interrupted")
    capsys.readouterr()
    assert main(["run", str(path)]) == 0
    assert "2 shards over Ray: 1 started, 1 already done" in capsys.readouterr().err
    assert rows(tmp_path / "sharded") == complete
    # the re-run shard re-judged exactly its lost judgments (from the cache: no new calls were paid for)
    with RunStore(shard_dir(tmp_path / "sharded", 1, 2)) as shard:
        assert shard.count("judgments") == lost
    assert usage(tmp_path / "sharded")[0] == calls
