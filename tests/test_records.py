"""The records a caller builds to hand to the API (`charter.Pair`, `charter.Message`): a prompt given as a string is
one user message, as every stage reads one, and a bad field is charter's one-line error naming the class and the
field, never pydantic's."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

import charter
from charter.errors import CharterError, ConfigFieldError, DatasetError
from charter.records.base import as_messages

QUESTION = "How do I keep bread fresh?"


def test_a_pairs_prompt_given_as_a_string_is_one_user_message() -> None:
    pair = charter.Pair(pair_id="p", prompt=QUESTION, a="Freeze it.", b="Eat it quickly.")
    assert pair.prompt == [charter.Message(role="user", content=QUESTION)] == as_messages(QUESTION, "prompt")
    listed = charter.Pair(pair_id="p", prompt=[{"role": "user", "content": QUESTION}], a="Freeze it.", b="Eat it.")
    assert listed.prompt == pair.prompt
    [judged] = charter.judge_pairs([pair], "scripted:cai", settings={"orders": "one"})
    assert judged.status == "ok" and judged.pair_id == "p"


@pytest.mark.parametrize(
    ("fields", "line"),
    [
        ({"prompt": 3}, "Pair: prompt: Input should be a valid list"),
        (
            {"prompt": [{"role": "bot", "content": "hi"}]},
            "Pair: prompt[0].role: Input should be 'system', 'developer', 'user'",
        ),
        ({"a": None}, "Pair: a: Input should be a valid string"),
        ({"colour": "red"}, "Pair: colour: unknown key"),
    ],
)
def test_a_bad_field_of_a_pair_is_charters_error_naming_it(fields: dict, line: str) -> None:
    given = {"pair_id": "p", "prompt": QUESTION, "a": "x", "b": "y"} | fields
    with pytest.raises(ConfigFieldError) as caught:
        charter.Pair(**given)
    assert isinstance(caught.value, CharterError) and not isinstance(caught.value, ValidationError)
    assert str(caught.value).startswith(line) and "\n" not in str(caught.value)


def test_a_blank_prompt_is_a_dataset_error_as_the_stages_say_it() -> None:
    with pytest.raises(DatasetError, match="Pair.prompt: empty"):
        charter.Pair(pair_id="p", prompt="   ", a="x", b="y")


def test_a_message_with_an_unknown_role_is_charters_error() -> None:
    with pytest.raises(
        ConfigFieldError, match="Message: role: Input should be 'system', 'developer', 'user', 'assistant' or 'tool'"
    ):
        charter.Message(role="bot", content="hi")  # type: ignore[arg-type]


def test_model_validate_keeps_pydantics_error_and_reads_a_string_prompt_too() -> None:
    read = charter.Pair.model_validate({"pair_id": "p", "prompt": QUESTION, "a": "x", "b": "y"})
    assert read.prompt == [charter.Message(role="user", content=QUESTION)]
    with pytest.raises(ValidationError):
        charter.Pair.model_validate({"pair_id": "p", "prompt": 3, "a": "x", "b": "y"})
