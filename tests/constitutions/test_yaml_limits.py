"""A YAML file cannot exhaust the loader: aliases of aliases are capped, a recursive anchor, a complex key, a bad
tagged value and deep nesting are one line each (exit 2), and each scalar costs one call, not a loader of its own."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from charter import yamlio
from charter.cli import main
from charter.errors import ConfigError
from charter.pipeline.config import load_run_config
from charter.yamlio import parse_yaml


def laughs(levels: int = 9) -> str:
    """A constitution whose aliases nest nine deep, nine a level: 9**9 (387 million) values from 1 KB."""
    lines = ["name: laughs", 'a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, levels)]
    return "\n".join([*lines, f"principles: *a{levels - 1}", ""])


def one_error_line(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert main(argv) == 2
    captured = capsys.readouterr()
    line = captured.err.strip()
    assert captured.out == "" and "\n" not in line and "Traceback" not in line, captured.err
    return line


def test_billion_laughs_exits_2_in_seconds_with_one_line(tmp_path: Path) -> None:
    path = tmp_path / "laughs.yaml"
    path.write_text(laughs())
    assert path.stat().st_size < 1500
    done = subprocess.run(
        [sys.executable, "-m", "charter.cli", "constitutions", "validate", str(path)],
        capture_output=True,
        text=True,
        timeout=120,  # a hang guard: the old loader ran past 120 s and 1 GB; the cap shows in the message
    )
    assert done.returncode == 2, done.stderr
    assert done.stdout == "" and done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith(f"error: {path}:7:1: a5: the aliases expand to more than 100,000 values")


def test_the_value_limit_grows_with_the_file() -> None:
    # past the floor of 100,000 values a file may build ten a character: a long file loads, aliases or not
    data, _ = parse_yaml("items: [" + "1, " * 150_000 + "]\n", "long.yaml")
    assert len(data["items"]) == 150_000
    shared = "x-block: &block {" + ", ".join(f"k{i}: v" for i in range(2000)) + "}\n"  # 19 KB
    data, _ = parse_yaml(shared + "".join(f"copy{i}: *block\n" for i in range(80)), "many.yaml")
    assert len(data["copy79"]) == 2000
    text = shared + "".join(f"copy{i}: *block\n" for i in range(150))  # 300,000 values from 21 KB
    limit = f"{len(text) * 10:,}"
    with pytest.raises(ConfigError, match=rf"many.yaml:\d+:1: copy\d+: the aliases expand to more than {limit} values"):
        parse_yaml(text, "many.yaml")


def test_a_recursive_anchor_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "loop.yaml"
    path.write_text("name: loop\nprinciples: &p\n  - *p\n")
    line = one_error_line(capsys, ["constitutions", "validate", str(path)])
    assert line == f"error: {path}:2:13: this anchor holds an alias to itself (a recursive anchor), which never ends"
    with pytest.raises(ConfigError, match=r"x.yaml:1:4: this anchor holds an alias to itself"):
        parse_yaml("a: &a {b: {c: *a}}\n", "x.yaml")  # through mappings too
    with pytest.raises(ConfigError, match=r"x.yaml:1:4: this anchor holds an alias to itself"):
        parse_yaml("a: &a {<<: *a}\n", "x.yaml")  # and merge keys


def test_a_complex_key_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "key.yaml"
    path.write_text("name: key\nprinciples:\n  ? [a, b]\n  : x\n")
    line = one_error_line(capsys, ["constitutions", "validate", str(path)])
    assert line == f"error: {path}:3:5: a key must be a plain value, not a list or a mapping (as in ? [a, b])"
    with pytest.raises(ConfigError, match=r"x.yaml:1:2: a key must be a plain value"):
        parse_yaml("{{a: 1}: x}\n", "x.yaml")


@pytest.mark.parametrize(
    "text, message",
    [
        ("name: x\nversion: !!int abc\n", ":2:10: invalid YAML: 'abc' is not a valid int"),
        ("name: x\nversion: 2024-13-45\n", ":2:10: invalid YAML: '2024-13-45' is not a valid timestamp"),
        ("name: x\nversion: !nope 1\n", ":2:10: invalid YAML: could not determine a constructor for the tag '!nope'"),
        ("name: x\nversion: " + "[" * 900 + "]" * 900 + "\n", ": invalid YAML: nested too deeply"),
        # past libyaml's limit its error stands (PyYAML's own parser runs out of stack there)
        ("name: x\nversion: " + "[" * 5000 + "]" * 5000 + "\n", ":2:1009: invalid YAML: exceeded maximum nesting"),
    ],
    ids=["bad-int", "bad-date", "unknown-tag", "deep", "deeper-than-libyaml"],
)
def test_values_the_constructor_refuses_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, message: str
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    line = one_error_line(capsys, ["constitutions", "validate", str(path)])
    if "exceeded" in message and not hasattr(yaml, "CSafeLoader"):
        message = ": invalid YAML: nested too deeply"
    assert line.startswith(f"error: {path}{message}"), line


@pytest.mark.parametrize("loader", [yaml.SafeLoader, getattr(yaml, "CSafeLoader", yaml.SafeLoader)])
def test_syntax_errors_read_the_same_with_either_parser(monkeypatch: pytest.MonkeyPatch, loader: type) -> None:
    monkeypatch.setattr(yamlio, "_LOADER", loader)
    with pytest.raises(ConfigError) as err:
        parse_yaml("a: 1\nb: c: d\n", "s.yaml")
    assert err.value.lines == ["s.yaml:2:5: invalid YAML: mapping values are not allowed here"]
    with pytest.raises(ConfigError) as err:
        parse_yaml("a: [1,\n  \x07]\n", "s.yaml")
    assert err.value.lines == ["s.yaml:2:3: invalid YAML: the control character U+0007 is not allowed"]


def test_one_scalar_constructor_a_file(monkeypatch: pytest.MonkeyPatch) -> None:
    made = []
    real = yaml.constructor.SafeConstructor.__init__

    def counting(self: yaml.constructor.SafeConstructor) -> None:
        made.append(self)
        real(self)

    monkeypatch.setattr(yaml.constructor.SafeConstructor, "__init__", counting)
    items = "".join(f"  - {{id: p{i}, n: {i}, ok: true}}\n" for i in range(1000))
    data, positions = parse_yaml(f"items:\n{items}", "big.yaml")
    assert len(data["items"]) == 1000 and data["items"][999] == {"id": "p999", "n": 999, "ok": True}
    assert positions[("items", 999, "n")] == (1001, 16)
    assert len(made) <= 2, len(made)  # the parser's and the file's; the old loader made one a scalar: 3,000


RUN = """\
name: shared
x-common: &common
  model: scripted:cai
  params: {temperature: 0.2, max_tokens: 32}
policy: *common
critic: *common
judge:
  <<: *common
  mode: verdict
prompts: {inline: ["hi"]}
"""


def test_a_run_config_with_x_anchors_still_loads(tmp_path: Path) -> None:
    (tmp_path / "run.yaml").write_text(RUN)
    config = load_run_config(tmp_path / "run.yaml", ["policy.params.temperature=0.9"])
    assert config.policy.model == config.critic_role.model == config.judge.model == "scripted:cai"
    # every alias is a copy of its own: an override of one role leaves the others as the anchor says
    assert config.policy.params.temperature == 0.9
    critic, judge = config.critic_role.params, config.judge.params
    assert critic is not None and judge is not None and critic.temperature == judge.temperature == 0.2


def test_positions_are_the_same_with_either_parser(monkeypatch: pytest.MonkeyPatch) -> None:
    text = 'a: {"ééé😀": 1, b: x}\nc:\n  - "日本語"\n  - {d: 1, e: é}\n'  # columns count characters, not bytes
    found = []
    for loader in (yaml.SafeLoader, getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
        monkeypatch.setattr(yamlio, "_LOADER", loader)
        found.append(parse_yaml(text, "u.yaml"))
    assert found[0] == found[1]
    assert found[0][1][("a", "b")] == (1, 16) and found[0][1][("c", 1, "e")] == (4, 12)
