"""A `local:` name that cannot be meant fails with the config (so `--dry-run` finds it), and a Hub id that cannot be
had fails at once with one line, not after minutes of retries."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

from charter.cli import main
from charter.errors import CharterError
from charter.providers.local_models import check_hub_id, name_problem


@pytest.mark.parametrize("name", ["smolm2-135m-instruct", "SmolLM2-135M-instruct2", "smollm-2", "smollm2-135-instruct"])
def test_a_name_close_to_the_embedded_one_asks_did_you_mean(name: str) -> None:
    assert name_problem(name) == f"unknown local model 'local:{name}': did you mean local:smollm2-135m-instruct?"


def test_known_names_folders_and_hub_ids_pass(tmp_path: Path) -> None:
    for name in ("smollm2-135m-instruct", "SmolLM2", "gpt2", "HuggingFaceTB/SmolLM2-135M-Instruct", str(tmp_path)):
        assert name_problem(name) is None
    assert name_problem("runs/x/dpo") is None  # a folder an earlier stage writes
    file = tmp_path / "file"
    file.write_text("")
    assert name_problem(str(file)) == f"local:{file}: '{file}' is a file; name the model's folder"
    with pytest.raises(CharterError, match="no model folder at"):
        check_hub_id(str(tmp_path / "nowhere"))


def test_dry_run_catches_a_mistyped_local_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "run.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "name": "t",
                "output_dir": str(tmp_path / "t"),
                "prompts": {"inline": ["hi"]},
                "judge": {"model": "local:smolm2-135m-instruct"},
            }
        )
    )
    assert main(["run", str(config), "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"error: {config}:2:3: judge.model: unknown local model 'local:smolm2-135m-instruct': "
        "did you mean local:smollm2-135m-instruct?"
    )
    assert not (tmp_path / "t").exists()


def test_a_hub_id_offline_and_not_cached_fails_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    started = time.monotonic()
    with pytest.raises(CharterError, match="not in the Hugging Face cache \\(HF_HUB_OFFLINE is set\\)"):
        check_hub_id("someone/no-such-model-here")
    assert time.monotonic() - started < 5


def test_a_hub_id_out_of_reach_is_asked_once(monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    started = time.monotonic()
    with pytest.raises(CharterError, match="the Hub cannot be reached .*; download it first, or name a folder"):
        check_hub_id("someone/no-such-model-here")
    assert time.monotonic() - started < 5
