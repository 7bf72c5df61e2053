"""A config field that holds a name from a table (`TableName`): a name the table lacks is refused with one line that
lists the table's names, at file:line:column in a YAML file; the field's JSON schema enumerates the table; a name
added to the table later is known at once. The scorings, the step reductions and the evaluations' scorings use it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import pytest
from pydantic import BaseModel, Field

from charter.errors import ConfigError
from charter.evals.arena import ArenaConfig
from charter.evals.winrate import WinrateConfig
from charter.online.config import OnlineConfig
from charter.reward.function import scorings
from charter.reward.scoring import REDUCTIONS
from charter.runs.rewards import PAIR_SCORING
from charter.serve.config import ServeConfig
from charter.yamlio import ConfigModel, TableName, load_model

FRUITS = ["apple", "pear"]


class Basket(ConfigModel):
    fruit: Annotated[str, TableName(lambda: FRUITS), Field(description="A fruit in the table.")] = "apple"
    """A fruit."""


def test_a_name_the_table_lacks_is_refused_listing_the_table(tmp_path: Path) -> None:
    path = tmp_path / "basket.yaml"
    path.write_text("# a basket\nfruit: plum\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_model(Basket, path)
    assert str(caught.value) == f"{path}:2:1: fruit: expected one of apple, pear, got 'plum'"
    assert load_model(Basket, path, ["fruit=pear"]).fruit == "pear"


def test_the_schema_enumerates_the_table_and_keeps_the_description() -> None:
    field = Basket.model_json_schema()["properties"]["fruit"]
    assert field["enum"] == ["apple", "pear"] and field["description"] == "A fruit in the table."
    assert field["type"] == "string" and field["default"] == "apple"


def test_a_name_added_to_the_table_later_is_known(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="expected one of apple, pear, got 'fig'"):
        Basket(fruit="fig")
    monkeypatch.setattr(f"{__name__}.FRUITS", [*FRUITS, "fig"])
    assert Basket(fruit="fig").fruit == "fig"
    assert Basket.model_json_schema()["properties"]["fruit"]["enum"] == ["apple", "pear", "fig"]


def _enum(model: type[BaseModel], field: str) -> list[str]:
    return model.model_json_schema()["properties"][field]["enum"]


def test_the_config_fields_of_table_names_enumerate_their_tables() -> None:
    assert _enum(OnlineConfig, "scoring") == _enum(ServeConfig, "scoring") == list(scorings())
    assert _enum(OnlineConfig, "step_reduction") == _enum(ServeConfig, "step_reduction") == list(REDUCTIONS)
    assert _enum(WinrateConfig, "scoring") == _enum(ArenaConfig, "scoring")
    assert _enum(WinrateConfig, "scoring")[0] == PAIR_SCORING and len(_enum(WinrateConfig, "scoring")) > 1


def test_an_unknown_evaluation_scoring_lists_the_scorings() -> None:
    names = ", ".join(_enum(WinrateConfig, "scoring"))
    with pytest.raises(ConfigError, match=f"scoring: expected one of {names}, got 'nope'"):
        WinrateConfig(scoring="nope")
