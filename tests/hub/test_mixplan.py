"""`charter.mix_plan`: micro, macro and all on a table where they differ, the weightings, ties, missing scores,
the score files it reads (`charter eval rm` summaries among them), the manifest and every bad input."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

import charter
from charter.cli import main
from charter.errors import ArgumentError, ConfigError, DatasetError
from charter.hub.mixplan import MixtureManifest, load_manifest, mix_plan, write_manifest
from charter.testing.judges import shown_responses
from charter.testing.loopback import LoopbackServer

# Three specialists, each best on one target, and a generalist that is second everywhere: the best on average.
TABLE = {
    "code-a": {"code": 0.91, "math": 0.40, "write": 0.30},
    "math-b": {"code": 0.35, "math": 0.88, "write": 0.32},
    "write-d": {"code": 0.30, "math": 0.33, "write": 0.90},
    "gen-c": {"code": 0.70, "math": 0.70, "write": 0.70},
    "gen-e": {"code": 0.60, "math": 0.65, "write": 0.66},
}


def _chosen(manifest: MixtureManifest) -> dict[str, float]:
    return {s.name: s.weight for s in manifest.sources}


def test_micro_takes_the_best_per_target_and_macro_the_best_on_average() -> None:
    micro = mix_plan(TABLE, strategy="micro", top_n=1)
    assert _chosen(micro) == {"code-a": 0.333333, "math-b": 0.333333, "write-d": 0.333333}
    assert {t.name: t.chosen for t in micro.targets} == {"code": ["code-a"], "math": ["math-b"], "write": ["write-d"]}
    macro = mix_plan(TABLE, strategy="macro", top_n=1)
    assert _chosen(macro) == {"gen-c": 1.0}
    assert list(_chosen(mix_plan(TABLE, strategy="macro", top_n=2))) == ["gen-c", "gen-e"]
    assert list(_chosen(mix_plan(TABLE, strategy="all"))) == sorted(TABLE)  # equal weights: by name
    assert set(_chosen(mix_plan(TABLE, strategy="all")).values()) == {0.2}


def test_micro_with_two_per_target_is_the_union_weighted_by_the_targets_that_chose_each() -> None:
    manifest = mix_plan(TABLE, strategy="micro", top_n=2)
    # code: code-a, gen-c; math: math-b, gen-c; write: write-d, gen-c. Each target gives 1/2 to each choice.
    assert _chosen(manifest) == {"code-a": 0.166667, "math-b": 0.166667, "write-d": 0.166667, "gen-c": 0.5}
    gen = next(s for s in manifest.sources if s.name == "gen-c")
    assert [(r.target, r.score, r.rank, r.of) for r in gen.why] == [
        ("code", 0.70, 2, 5),
        ("math", 0.70, 2, 5),
        ("write", 0.70, 2, 5),
    ]
    assert gen.summary == "chosen for code: 0.7, rank 2 of 5; math: 0.7, rank 2 of 5; write: 0.7, rank 2 of 5"
    assert [(s.name, s.reason) for s in manifest.left_out] == [
        ("gen-e", "best on code: 0.6, rank 3 of 5; the top 2 of each target are chosen")  # rank 3 everywhere
    ]
    assert _chosen(mix_plan(TABLE, top_n=2, weighting="uniform")) == dict.fromkeys(_chosen(manifest), 0.25)


def test_target_weights_move_the_weights_and_a_zero_leaves_a_target_out() -> None:
    manifest = mix_plan(TABLE, top_n=1, target_weights={"code": 2, "write": 0})
    assert _chosen(manifest) == {"code-a": 0.666667, "math-b": 0.333333}
    assert [t.chosen for t in manifest.targets] == [["code-a"], ["math-b"], []]
    macro = mix_plan(TABLE, strategy="macro", top_n=1, target_weights={"code": 10})
    assert _chosen(macro) == {"code-a": 1.0}  # weighted mean: code counts ten times


def test_gain_weights_are_the_gains_over_the_baseline() -> None:
    table = {**TABLE, "base": {"code": 0.31, "math": 0.38, "write": 0.30}}
    manifest = mix_plan(table, top_n=1, weighting="gain", baseline="base")
    gains = {"code-a": 0.91 - 0.31, "math-b": 0.88 - 0.38, "write-d": 0.90 - 0.30}
    total = sum(gains.values())
    assert _chosen(manifest) == {k: round(v / total, 6) for k, v in gains.items()}
    assert "base" not in [s.name for s in manifest.sources + manifest.left_out]  # the baseline is no candidate
    scores_as_gains = mix_plan({"a": {"t": 3.0, "u": 0.0}, "b": {"t": 1.0, "u": 2.0}}, top_n=1, weighting="gain")
    assert _chosen(scores_as_gains) == {"a": 0.6, "b": 0.4}
    with pytest.raises(DatasetError) as caught:
        mix_plan({"a": {"t": -1.0}, "b": {"t": -2.0}}, weighting="gain")  # scores read as gains: all below 0
    assert str(caught.value) == (  # no baseline was given: the message names none
        "no source is chosen: every chosen source scores 0 or less (gain weighting without a baseline weighs each by "
        "its score)"
    )
    with pytest.raises(DatasetError, match="^no source is chosen: none gains over the baseline$"):
        mix_plan({"a": {"t": 0.2}, "base": {"t": 0.5}}, weighting="gain", baseline="base")
    manifest = mix_plan({"a": {"t": 0.9, "u": -0.5}, "b": {"t": 0.1, "u": -0.2}}, top_n=1, weighting="gain")
    assert [(s.name, s.reason) for s in manifest.left_out] == [
        ("b", "chosen, but it scores 0 or less where it was chosen (no baseline: weighed by its score): weight 0")
    ]


def test_a_chosen_source_without_gain_is_left_out_and_says_so() -> None:
    table = {"a": {"t": 0.9, "u": 0.2}, "b": {"t": 0.5, "u": 0.3}, "base": {"t": 0.5, "u": 0.1}}
    manifest = mix_plan(table, top_n=1, weighting="gain", baseline="base")
    assert _chosen(manifest) == {"a": 0.666667, "b": 0.333333}  # a for t (gain 0.4), b for u (gain 0.2)
    table["base"]["u"] = 0.9
    manifest = mix_plan(table, top_n=2, weighting="gain", baseline="base")
    assert _chosen(manifest) == {"a": 1.0}  # a: gain 0.4 on t, none on u; b: none on either
    assert [(s.name, s.reason) for s in manifest.left_out] == [
        ("b", "chosen, but no gain over the baseline where it was chosen: weight 0")
    ]
    with pytest.raises(DatasetError, match="no gain can be measured"):
        mix_plan({"a": {"t": 1.0, "u": 1.0}, "base": {"t": 0.5}}, weighting="gain", baseline="base")


def test_ties_are_ranked_by_name_named_and_noted_at_the_cut() -> None:
    table = {"zeta": {"t": 0.8}, "alpha": {"t": 0.8}, "mid": {"t": 0.8}, "low": {"t": 0.1}}
    manifest = mix_plan(table, top_n=2)
    assert list(_chosen(manifest)) == ["alpha", "mid"]
    alpha = manifest.sources[0].why[0]
    assert (alpha.rank, alpha.tied_with) == (1, ["mid", "zeta"])
    assert manifest.notes == ["target t: alpha, mid, zeta tie at 0.8 across the cut; alpha, mid chosen by name"]
    assert "tied with mid, zeta (ranked by name)" in manifest.sources[0].summary
    again = mix_plan(dict(reversed(list(table.items()))), top_n=2)
    assert again == manifest  # the order of the table's rows changes nothing


def test_a_source_without_a_score_for_a_target_is_not_ranked_there_and_says_so() -> None:
    table = {"a": {"t": 0.9}, "b": {"t": 0.5, "u": 0.4}, "c": {"u": 0.6}}
    manifest = mix_plan(table, top_n=1)
    assert _chosen(manifest) == {"a": 0.5, "c": 0.5}
    a = manifest.sources[0]
    assert a.unscored == ["u"] and a.summary == "chosen for t: 0.9, rank 1 of 2; not ranked for u (no score)"
    assert [(t.name, t.ranked) for t in manifest.targets] == [("t", 2), ("u", 2)]
    macro = mix_plan(table, strategy="macro", top_n=1)
    assert macro.sources[0].name == "a" and macro.sources[0].why[0].over_targets == 1


def test_a_target_no_source_has_a_score_for_is_noted() -> None:
    manifest = mix_plan([{"source": "a", "target": "t", "score": 1}, {"source": "b", "target": "u", "score": 2}])
    assert _chosen(manifest) == {"a": 0.5, "b": 0.5}
    baseline_only = mix_plan({"a": {"t": 1.0, "u": None}, "base": {"u": 0.5, "t": 0.2}}, baseline="base")
    assert baseline_only.notes == ["target u: no source has a score for it; nothing is chosen for it"]


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_long_and_wide_files_give_the_same_plan(tmp_path: Path) -> None:
    long_rows = [{"source": s, "target": t, "score": v, "n": 100} for s, row in TABLE.items() for t, v in row.items()]
    csv_long = _write(tmp_path / "long.csv", "source,target,score,n\n" + "".join(
        f"{r['source']},{r['target']},{r['score']},{r['n']}\n" for r in long_rows))  # fmt: skip
    csv_wide = _write(tmp_path / "wide.csv", "source,code,math,write\n" + "".join(
        f"{s},{row['code']},{row['math']},{row['write']}\n" for s, row in TABLE.items()))  # fmt: skip
    jsonl = _write(tmp_path / "long.jsonl", "".join(json.dumps(r) + "\n" for r in long_rows))
    json_wide = _write(tmp_path / "wide.json", json.dumps(TABLE))
    json_long = _write(tmp_path / "long.json", json.dumps(long_rows))
    plans = [mix_plan(p, top_n=2) for p in (csv_long, csv_wide, jsonl, json_wide, json_long)]
    assert all(_chosen(p) == _chosen(mix_plan(TABLE, top_n=2)) for p in plans)
    assert plans[0].sources[0].why[0].n == 100 and plans[1].sources[0].why[0].n is None
    assert plans[0].scores[0].path == str(csv_long) and len(plans[0].scores[0].sha256) == 64


def _eval_pairs(path: Path) -> Path:
    rows = [
        {"subset": subset, "prompt": f"{subset} question {i}", "chosen": f"{subset} good {i}", "rejected": f"bad {i}"}
        for subset in ("code", "math", "write")
        for i in range(4)
    ]
    return _write(path, "".join(json.dumps(r) + "\n" for r in rows))


def _judge_good_at(subsets: set[str], fails: set[str] = frozenset()):  # type: ignore[assignment]
    """A verdict judge right on `subsets` (it picks the response with 'good'), wrong elsewhere, and answering no
    verdict on `fails`."""

    def reply(body: dict) -> str:
        a, b = shown_responses(body["messages"][-1]["content"])
        subset = next(s for s in ("code", "math", "write") if s in a + b)
        if subset in fails:
            return "I would rather not say."
        good_is_a = "good" in a
        return ("A" if good_is_a else "B") if subset in subsets else ("B" if good_is_a else "A")

    return reply


def test_eval_rm_summaries_are_read_one_per_source_and_a_failed_subset_has_no_score(tmp_path: Path) -> None:
    pairs = _eval_pairs(tmp_path / "pairs.jsonl")
    judges = {"code-src": ({"code"}, set()), "all-src": ({"code", "math", "write"}, {"write"})}
    for name, (right, fails) in judges.items():
        with LoopbackServer(reply=_judge_good_at(right, fails)).start() as server:
            charter.evaluate_rm(judge=f"openai-compatible:m@{server.openai_url}", pairs=str(pairs),
                                judge_mode="verdict", out=tmp_path / f"{name}.json")  # fmt: skip
    summary = json.loads((tmp_path / "all-src.json").read_text())
    assert summary["subsets"]["write"]["accuracy"] is None and summary["subsets"]["write"]["failures"] == 4
    manifest = mix_plan([str(tmp_path / "code-src.json"), f"generalist={tmp_path / 'all-src.json'}"], top_n=1)
    # code: both 1.0, a tie ranked by name; math: only the generalist is right; write: the generalist has no score
    assert {t.name: t.chosen for t in manifest.targets} == {
        "code": ["code-src"],
        "math": ["generalist"],
        "write": ["code-src"],
    }
    generalist = next(s for s in manifest.sources if s.name == "generalist")
    assert generalist.unscored == ["write"] and generalist.why[0].n == 4
    assert "not ranked for write (every comparison failed (4 failed)) (no score)" in generalist.summary
    assert "source generalist: no score for write: every comparison failed (4 failed) (not ranked for it)" in (
        manifest.notes
    )


def test_the_manifest_round_trips_and_an_edit_is_refused(tmp_path: Path) -> None:
    manifest = mix_plan(TABLE, top_n=2, sources={"code-a": "data/code.jsonl"}, out=tmp_path / "m.yaml")
    loaded = load_manifest(tmp_path / "m.yaml")
    assert loaded == manifest and loaded.fingerprint == manifest.content_fingerprint()
    paths = {s.name: s.path for s in loaded.sources}
    assert paths["code-a"] == "data/code.jsonl" and paths["math-b"] == "math-b"
    text = (tmp_path / "m.yaml").read_text()
    assert text.startswith("# A mixture manifest") and yaml.safe_load(text)["charter_mixture"] == 1
    edited = tmp_path / "edited.yaml"
    edited.write_text(text.replace("weight: 0.5", "weight: 0.9"), encoding="utf-8")
    line = text.splitlines().index(f"fingerprint: {manifest.fingerprint}") + 1
    with pytest.raises(ConfigError, match=rf"^{edited}:{line}:1: fingerprint: the manifest was edited after"):
        load_manifest(edited)
    accepted = edited.read_text().replace(f"fingerprint: {manifest.fingerprint}\n", "")
    edited.write_text(accepted, encoding="utf-8")
    assert load_manifest(edited).sources[0].weight == 0.9  # gen-c, first at 0.5 as planned
    write_manifest(load_manifest(edited), tmp_path / "again.yaml")
    assert load_manifest(tmp_path / "again.yaml").fingerprint is None


def test_a_bad_manifest_names_the_file_line_and_key(tmp_path: Path) -> None:
    mix_plan(TABLE, top_n=1, out=tmp_path / "m.yaml")
    text = (tmp_path / "m.yaml").read_text().replace("top_n: 1", "top_n: 0").replace("fingerprint:", "# fingerprint:")
    bad = _write(tmp_path / "bad.yaml", text)
    with pytest.raises(ConfigError, match=rf"^{bad}:4:1: top_n: Input should be greater than or equal to 1"):
        load_manifest(bad)
    twice = text.replace("top_n: 0", "top_n: 1").replace("name: math-b", "name: code-a")
    with pytest.raises(ConfigError, match=r"twice.yaml:\d+:3: sources\[1\]\.name: source 'code-a' is listed twice$"):
        load_manifest(_write(tmp_path / "twice.yaml", twice))


BAD_FILES = [
    ("dup.csv", "source,target,score\na,t,0.5\nb,t,0.4\na,t,0.6\n",
     "dup.csv:4: a second score for source 'a', target 't' ({dir}/dup.csv:2)"),
    ("missing.csv", "source,target,score\na,t,\n", "missing.csv:2: score: missing"),
    ("word.csv", "source,target,score\na,t,high\n", "word.csv:2: score: not a number ('high')"),
    ("nan.csv", "source,target,score\na,t,nan\n", "nan.csv:2: score: not a finite number (nan)"),
    ("n.csv", "source,target,score,n\na,t,0.5,2.5\n", "n.csv:2: n: not a count ('2.5')"),
    ("noname.csv", "source,target,score\n,t,0.5\n", "noname.csv:2: source: missing"),
    ("header.csv", "model,accuracy\na,0.5\n", "header.csv:1: expected columns source, target, score"),
    ("wide.csv", "source,t,u\na,0.5,x\n", "wide.csv:2: u: score: not a number ('x')"),
    ("null.jsonl", '{"source": "a", "target": "t", "score": null}\n', "null.jsonl:1: score: missing"),
    ("dup.json", '{"a": {"t": 1, "u": 1}, "b": {"t": true}}', "dup.json: b.t: score: not a number (True)"),
    ("text.json", '{"a": {"t": "0.9"}}', "text.json: a.t: score: a number, not the text '0.9'"),
    ("text.jsonl", '{"source": "a", "target": "t", "score": "0.9"}\n', "text.jsonl:1: score: a number, not the text"),
    ("infinite.json", '{"a": {"t": Infinity}}', "infinite.json: invalid JSON: "),
    ("count.json", '[{"source": "a", "target": "t", "score": 0.5, "n": "3"}]', "count.json: [0]: n: a number, not"),
    ("rows.json", '[{"source": "a", "target": "t"}]', "rows.json: [0]: score: missing"),
    ("empty.csv", "source,target,score\n", "empty.csv: no rows"),
    ("blank.csv", "source,t\na,\n", "the score table holds no score"),
    ("scores.txt", "a", "scores.txt: expected a .csv, .json or .jsonl score table"),
]  # fmt: skip


@pytest.mark.parametrize("name, text, message", BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_a_bad_score_file_is_one_line_naming_where(tmp_path: Path, name: str, text: str, message: str) -> None:
    path = _write(tmp_path / name, text)
    with pytest.raises(DatasetError) as caught:
        mix_plan(path)
    expected = message.format(dir=tmp_path)
    assert str(caught.value).startswith(expected if expected.startswith("the") else f"{tmp_path}/{expected}")


def test_bad_arguments_are_argument_errors() -> None:
    with pytest.raises(ArgumentError, match=r"^top_n: must be at least 1 \(got 0\)$"):
        mix_plan(TABLE, top_n=0)
    with pytest.raises(ArgumentError, match=r"^strategy: "):
        mix_plan(TABLE, strategy="best")  # type: ignore[arg-type]
    with pytest.raises(ArgumentError, match=r"^sources: no source 'nope' in the scores"):
        mix_plan(TABLE, sources={"nope": "x.jsonl"})
    with pytest.raises(ArgumentError, match=r"^target_weights: no target 'art'"):
        mix_plan(TABLE, target_weights={"art": 1})
    with pytest.raises(ArgumentError, match=r"^target_weights: every target has weight 0"):
        mix_plan(TABLE, target_weights=dict.fromkeys(["code", "math", "write"], 0))
    with pytest.raises(ArgumentError, match=r"^baseline: no source 'base'"):
        mix_plan(TABLE, baseline="base")
    with pytest.raises(ArgumentError, match=r"^weighting: "):
        mix_plan(TABLE, weighting="votes")  # type: ignore[arg-type]
    with pytest.raises(ArgumentError, match=r"^scores: expected a score file"):
        mix_plan(3)


def test_the_command_line_plans_and_refuses_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    scores = _write(tmp_path / "s.json", json.dumps(TABLE))
    out = tmp_path / "plan.yaml"
    argv = ["mix", "plan", str(scores), "--top-n", "1", "--target-weight", "write=0", "--source", "code-a=c.jsonl"]
    assert main([*argv, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "0.500  code-a: chosen for code: 0.91, rank 1 of 5" in printed and f"wrote {out}" in printed
    assert load_manifest(out).sources[0].path == "c.jsonl"
    assert main(["mix", "plan", str(scores), "--top-n", "0", "--out", str(out)]) == 2
    assert capsys.readouterr().err.strip() == "error: --top-n: must be at least 1 (got 0)"
    assert main(["mix", "plan", str(scores), "--source", "zz=x.jsonl", "--out", str(out)]) == 2
    assert capsys.readouterr().err.strip().startswith("error: --source: no source 'zz' in the scores")
    assert main(["mix", "plan", str(scores), "--target-weight", "code", "--out", str(out)]) == 2
    assert capsys.readouterr().err.strip() == "error: --target-weight: expected NAME=VALUE (got 'code')"
    bad = _write(tmp_path / "bad.csv", "source,target,score\na,t,\n")
    assert main(["mix", "plan", str(bad), "--out", str(out)]) == 2
    assert capsys.readouterr().err.strip().startswith(f"error: {bad}:2: score: missing")


def test_the_guides_manifest_is_what_the_example_table_plans(monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/guides/mixing.md shows the manifest `charter mix plan examples/mix-scores.csv --top-n 1 --baseline base`
    writes, and says `macro` would choose `ultra-mix` alone."""
    root = Path(__file__).resolve().parents[2]
    monkeypatch.chdir(root)
    guide = (root / "docs" / "guides" / "mixing.md").read_text(encoding="utf-8")
    block = re.search(r'```yaml title="mixture.yaml"\n(.*?)```', guide, re.S)
    assert block is not None
    shown = MixtureManifest.model_validate(yaml.safe_load(block.group(1)))
    assert mix_plan("examples/mix-scores.csv", top_n=1, baseline="base") == shown
    assert shown.fingerprint == shown.content_fingerprint()
    macro = mix_plan("examples/mix-scores.csv", strategy="macro", top_n=1, baseline="base")
    assert [s.name for s in macro.sources] == ["ultra-mix"]
