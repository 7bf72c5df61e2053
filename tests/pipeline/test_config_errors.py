"""Config and input errors a user can act on: YAML anchors and merge keys, an override named as the culprit,
"did you mean" for every unknown key and every error of a validation shown, CSV prompt files parsed strictly."""

from __future__ import annotations

from pathlib import Path

import pytest

from charter.cli import main
from charter.errors import ConfigError
from charter.pipeline.config import RunConfig, load_run_config
from charter.yamlio import load_model


def errors(capsys: pytest.CaptureFixture) -> list[str]:
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return [line.removeprefix("error: ") for line in err.strip().splitlines()]


SHARED = """\
name: anchors
x-common: &common                # a block to share: top-level x- keys are not settings
  model: scripted:cai
  params: {temperature: 0.2, max_tokens: 32}
x-strict: &strict
  params: {temperature: 0.0, max_tokens: 64}
policy:
  <<: *common
critic: {<<: [*strict, *common]}     # the earlier source wins: the critic samples greedily
judge:
  <<: *common
  mode: verdict
prompts: {inline: ["hi"]}
"""


def test_merge_keys_share_one_model_block_across_roles(tmp_path: Path) -> None:
    (tmp_path / "q.yaml").write_text(SHARED)
    config = load_run_config(tmp_path / "q.yaml")
    assert config.policy.model == config.critic_role.model == config.judge.model == "scripted:cai"
    assert config.policy.params.temperature == 0.2 and config.critic_role.params.temperature == 0.0
    assert config.critic_role.params.max_tokens == 64 and config.judge.mode == "verdict"


def test_a_merged_key_keeps_its_own_line(tmp_path: Path) -> None:
    (tmp_path / "q.yaml").write_text(SHARED.replace("  params: {temperature: 0.2", "  parms: {temperature: 0.2"))
    with pytest.raises(ConfigError) as err:
        load_model(RunConfig, tmp_path / "q.yaml")
    assert f"{tmp_path / 'q.yaml'}:4:3: policy.parms: unknown key (did you mean 'params'?)" in err.value.lines


def test_an_error_in_an_override_names_the_override(tmp_path: Path, capsys) -> None:
    (tmp_path / "q.yaml").write_text(SHARED)
    assert main(["run", str(tmp_path / "q.yaml"), "--set", "judge.modee=cot", "--set", "judge.orders=three"]) == 2
    assert errors(capsys) == [
        "--set judge.modee=cot: unknown key 'modee' under judge (did you mean 'mode'?)",
        "--set judge.orders=three: judge.orders: Input should be 'both' or 'one'",
    ]
    assert not (tmp_path / "anchors").exists()


CONSTITUTION = """\
name: mine
version: "1"
description: a constitution with a misspelt key
principles:
  - id: kind
    description: Be kind.
    critque_request: Is the response unkind in any way?
    revision_request: Rewrite it to be kind.
    comparison: Which response is kinder?
"""


def test_every_error_is_shown_and_a_misspelt_key_is_named(tmp_path: Path, capsys) -> None:
    (tmp_path / "mine.yaml").write_text(CONSTITUTION)
    assert main(["constitutions", "validate", str(tmp_path / "mine.yaml")]) == 2
    shown = errors(capsys)
    assert shown[0].endswith(
        "mine.yaml:7:5: principles[0].critque_request: unknown key (did you mean 'critique_request'?)"
    )
    assert shown[1].endswith("mine.yaml:5:5: principles[0].critique_request: required key is missing")
    assert len(shown) == 2 and not any("more error" in line for line in shown)


def test_the_run_config_reports_every_error(tmp_path: Path, capsys) -> None:
    (tmp_path / "q.yaml").write_text(
        "name: q\nconcurency: 4\njudge: {model: scripted:cai, principles_per_par: 2}\ncritique: {rounds: -1}\n"
    )
    assert main(["run", str(tmp_path / "q.yaml")]) == 2
    shown = errors(capsys)
    assert any("q.yaml:2:1: concurency: unknown key (did you mean 'concurrency'?)" in s for s in shown)
    assert any(
        "q.yaml:3:30: judge.principles_per_par: unknown key (did you mean 'principles_per_pair'?)" in s for s in shown
    )
    assert any("q.yaml:4:12: critique.rounds: Input should be greater than or equal to 1" in s for s in shown)


@pytest.mark.parametrize(
    "rows, expected",
    [
        (
            '"How do I bake bread?",food\nWhat is 2+2?,math\n"Tell me about Paris,travel\nWhere is Rome?,travel\n'
            "Name a river,geo\n",
            ":4: a quoted field that starts here is never closed",
        ),
        (
            'How do I bake bread?,food\n"Tell me about "Paris,travel\nWhere is Rome?,travel\n',
            ":3: not valid CSV: ',' expected after '\"'",
        ),
        ("How do I bake bread?,food\nWhat is 2+2?,math,extra\n", ":3: 3 fields where the header has 2"),
        ("How do I bake bread?,food\nWhat is 2+2?\n", ":3: 1 fields where the header has 2"),
    ],
)
def test_a_csv_prompt_file_is_parsed_strictly(make_config, tmp_path: Path, capsys, rows: str, expected: str) -> None:
    (tmp_path / "p.csv").write_text("prompt,category\n" + rows)
    config = make_config(prompts={"path": str(tmp_path / "p.csv")})
    for argv in (["run", str(config), "--dry-run"], ["run", str(config)]):
        assert main(argv) == 2
        (line,) = errors(capsys)
        assert f"{tmp_path / 'p.csv'}{expected}" in line
    assert not (tmp_path / "run").exists()


def test_a_quoted_csv_field_may_span_lines(make_config, tmp_path: Path, capsys) -> None:
    (tmp_path / "p.csv").write_text('prompt,category\n"Write a poem\nin two lines",art\nWhat is 2+2?,math\n')
    assert main(["run", str(make_config(prompts={"path": str(tmp_path / "p.csv")})), "--dry-run"]) == 0
    assert "2 prompts" in capsys.readouterr().err


def test_a_key_of_the_mapping_itself_keeps_its_line_whatever_the_order(tmp_path: Path) -> None:
    text = (
        "x-common: &common {model: scripted:cai, params: {temperature: 0.2}}\n"
        "policy: {params: {temprature: 0.1}, <<: *common}\n"
    )
    (tmp_path / "q.yaml").write_text(text)
    with pytest.raises(ConfigError) as err:
        load_model(RunConfig, tmp_path / "q.yaml")
    assert err.value.lines == [
        f"{tmp_path / 'q.yaml'}:2:19: policy.params.temprature: unknown key (did you mean 'temperature'?)"
    ]


def test_an_unknown_script_stops_the_run_before_its_directory_is_made(tmp_path: Path, capsys) -> None:
    (tmp_path / "q.yaml").write_text(
        SHARED.replace("  <<: *common\n  mode: verdict", "  model: scripted:nosuch\n  mode: verdict")
        + f"output_dir: {tmp_path / 'runs' / 'q'}\n"
    )
    assert main(["run", str(tmp_path / "q.yaml")]) == 2
    [line] = errors(capsys)
    assert line.startswith("scripted:nosuch: no such script (known:")
    assert not (tmp_path / "runs").exists()
