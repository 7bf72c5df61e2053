"""Every number a config takes (run, online, online DPO, serve and loop configs; caps, shares, temperatures, rates,
budgets) is finite and not a boolean: a `--set` that gives one NaN, an infinity, a number past a float's range or
`true` is an error naming the override and the key before any work starts, and `charter run` exits 2."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from charter.cli import main
from charter.errors import ConfigError
from charter.loop.config import LoopConfig
from charter.online.config import OnlineConfig, OnlineDPOConfig
from charter.pipeline.config import RunConfig
from charter.serve.config import ServeConfig
from charter.yamlio import annotation_members, load_model, number_fields
from tests.support.numbers import yaml_not_finite

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
CONFIGS: dict[type[BaseModel], Path] = {
    RunConfig: EXAMPLES / "quickstart.yaml",
    OnlineConfig: EXAMPLES / "grpo.yaml",
    OnlineDPOConfig: EXAMPLES / "online-dpo.yaml",
    ServeConfig: EXAMPLES / "grpo.yaml",
    LoopConfig: EXAMPLES / "loop.yaml",
}
#: What the error says of a value that is not a finite number, or of a boolean (a label smoothing says what one is).
REFUSALS = ("Input should be a finite number", "expected a number, not ", "Input should be a valid",
            "is no chance a label is wrong", "is out of range for loss_type", "would be ignored")  # fmt: skip


def number_keys(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> list[str]:
    """The dotted key of every number a config model takes, its sections' included."""
    keys = [".".join((*prefix, name)) for name in number_fields(model)]
    for name, field in model.model_fields.items():
        for member in annotation_members(field.annotation):
            if isinstance(member, type) and issubclass(member, BaseModel) and member not in (model,):
                keys += number_keys(member, (*prefix, name))
    return keys


KEYS = [(model, key) for model in CONFIGS for key in number_keys(model)]


def test_every_config_has_its_numbers_found() -> None:
    assert len(number_keys(RunConfig)) > 100 and "budget.max_cost_usd" in number_keys(RunConfig)
    assert all(len(number_keys(model)) >= 10 for model in CONFIGS)
    assert {"judge.params.temperature", "budget.max_cost_usd"} <= set(number_keys(ServeConfig))


@settings(max_examples=150, deadline=None)
@given(place=st.sampled_from(KEYS), spelled=yaml_not_finite())
def test_a_set_that_is_not_a_finite_number_names_the_override_and_the_key(
    place: tuple[type[BaseModel], str], spelled: str
) -> None:
    model, key = place
    item = f"{key}={spelled}"
    with pytest.raises(ConfigError) as caught:
        load_model(model, CONFIGS[model], [item])
    lines = str(caught.value).split("; ")
    named = [line for line in lines if line.startswith(f"--set {item}: {key}: ")]
    assert named and any(refusal in line for line in named for refusal in REFUSALS), lines


@pytest.mark.parametrize("key", ["refresh_every", "refresh_window", "refresh_pairs"])
def test_the_servers_config_checks_trainings_refresh_keys_then_leaves_them_unset(key: str) -> None:
    said = rf"^--set checklist\.{key}=\.nan: checklist\.{key}: Input should be a finite number$"
    with pytest.raises(ConfigError, match=said):
        load_model(ServeConfig, CONFIGS[ServeConfig], [f"checklist.{key}=.nan"])
    served = load_model(ServeConfig, CONFIGS[ServeConfig], ["scoring=checklist", f"checklist.{key}=3"])
    assert getattr(served.checklist, key) == ServeConfig().checklist.model_dump()[key]
    assert key not in served.checklist.model_fields_set


@pytest.mark.parametrize("spelled", [".nan", "-.inf", "true"])
def test_a_label_smoothing_that_is_not_a_number_says_what_one_is(spelled: str) -> None:
    with pytest.raises(ConfigError, match=r"^--set dpo\.label_smoothing=\S+: dpo\.label_smoothing: \S+") as caught:
        load_model(RunConfig, CONFIGS[RunConfig], [f"dpo.label_smoothing={spelled}"])
    assert "; " not in str(caught.value)  # one line, not one a member of `float | judge | per_row`


def test_charter_run_exits_2_with_one_line_for_a_nan_budget(capsys) -> None:
    for spelled, said in ((".nan", "Input should be a finite number"), ("true", "expected a number, not true")):
        argv = ["run", str(CONFIGS[RunConfig]), "--dry-run", "--set", f"budget.max_cost_usd={spelled}"]
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err == f"error: --set budget.max_cost_usd={spelled}: budget.max_cost_usd: {said}", err
