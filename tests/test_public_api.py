"""One way into the public API: every function in `charter.__all__` refuses a wrong type and a wrong value with a
one-line `charter` error naming the argument, before any model is built or any call made; configs are taken as
an object, a dict or a YAML file alike; the types of the signatures are exported and documented."""

from __future__ import annotations

import inspect
import re
import typing
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Annotated, Any

import pytest

import charter
from charter.api_args import ConfigArg, Kinds, Loads, Range, public
from charter.errors import ArgumentError, CharterError, ConfigError, ConstitutionError, UnknownModel

ROOT = Path(__file__).resolve().parent.parent
PAIR = {"prompt": "hi", "a": "hello", "b": "go away"}

FUNCTIONS = sorted(n for n in charter.__all__ if inspect.isfunction(getattr(charter, n)))

Call = Callable[[], Any]

#: name -> (a call with an argument of the wrong type, its argument), (a call with a wrong value, its argument);
#: the argument is None where the error is not an `ArgumentError` (a config's content, an unknown name).
CASES: dict[str, tuple[tuple[Call, str | None], tuple[Call, str | None]]] = {
    "load_constitution": (
        (lambda: charter.load_constitution(3), "source"),
        (lambda: charter.load_constitution("no-such"), None),
    ),
    "import_hf_cai": (
        (lambda: charter.import_hf_cai(["x"]), "path"),
        (lambda: charter.import_hf_cai("x.json", name=3), "name"),
    ),
    "import_constitution": (
        (lambda: charter.import_constitution(["x"]), "path"),
        (lambda: charter.import_constitution("x.md", source_format="docx"), "source_format"),
    ),
    "import_spec": (
        (lambda: charter.import_spec(["x"], "scripted:cai"), "path"),
        (lambda: charter.import_spec("no-such-spec.md", "scripted:cai"), None),
    ),
    "evaluate_spec": (
        (lambda: charter.evaluate_spec(3), "config"),
        (lambda: charter.evaluate_spec(spec="s.md", dataset="d.jsonl", limit=0), "limit"),
    ),
    "get_model": ((lambda: charter.get_model(None), "spec"), (lambda: charter.get_model("nosuch:model"), None)),
    "run": ((lambda: charter.run(3), "config"), (lambda: charter.run({"nme": "x"}), None)),
    "estimate": ((lambda: charter.estimate(3), "config"), (lambda: charter.estimate({"nme": "x"}), None)),
    "load_run_config": (
        (lambda: charter.load_run_config(None), "path"),
        (lambda: charter.load_run_config("no.yaml"), None),
    ),
    "critique_chains": (
        (lambda: charter.critique_chains(["hi"], policy="scripted:cai", rounds="2"), "rounds"),
        (lambda: charter.critique_chains(["hi"], policy="scripted:cai", concurrency=0), "concurrency"),
    ),
    "judge_pairs": (
        (lambda: charter.judge_pairs([PAIR], "scripted:cai", settings=3), "settings"),
        (lambda: charter.judge_pairs([PAIR], "scripted:cai", concurrency=0), "concurrency"),
    ),
    "build_preferences": (
        (lambda: charter.build_preferences([PAIR], 3), "judgments"),
        (lambda: charter.build_preferences([PAIR], [], strategy="best"), "strategy"),
    ),
    "spotcheck": ((lambda: charter.spotcheck(3), "run_dir"), (lambda: charter.spotcheck("runs/x", n=0), "n")),
    "agreement_report": (
        (lambda: charter.agreement_report("runs/x", write="yes"), "write"),
        (lambda: charter.agreement_report("runs/x", config={"bogus": 1}), None),
    ),
    "audit_judge": (
        (lambda: charter.audit_judge({"prompt": "p"}, "scripted:cai"), "pairs"),
        (lambda: charter.audit_judge([], "scripted:cai", min_confidence=0.7), "min_confidence"),
    ),
    "ppi_mean": (
        (lambda: charter.ppi_mean("abc", [0.1], [1.0]), "judge_all"),
        (lambda: charter.ppi_mean([0.2, 1.5], [0.1], [1.0]), "judge_all[1]"),
    ),
    "train_reward_model": (
        (lambda: charter.train_reward_model(3), "config"),
        (lambda: charter.train_reward_model({"bogus": 1}), None),
    ),
    "train_dpo": ((lambda: charter.train_dpo(3), "config"), (lambda: charter.train_dpo({"beta": "high"}), None)),
    "train_online": (
        (lambda: charter.train_online(charter.OnlineConfig.model_construct(), trainer=3), "trainer"),
        (lambda: charter.train_online(charter.OnlineConfig.model_construct(), trainer="ppo"), "trainer"),
    ),
    "train_online_dpo": (
        (lambda: charter.train_online_dpo(3), "config"),
        (lambda: charter.train_online_dpo({"prompts": "p.jsonl", "min_confidence": 0.7}), None),
    ),
    "reward_function": (
        (lambda: charter.reward_function(judge=3), "judge"),
        (lambda: charter.reward_function("scripted:cai", max_failures=-1), "max_failures"),
    ),
    "winrate": ((lambda: charter.winrate(3), "config"), (lambda: charter.winrate(nonsense=1), "nonsense")),
    "arena": ((lambda: charter.arena(3), "config"), (lambda: charter.arena(models=["a"], prompts="p"), "models")),
    "evaluate_rm": (
        (lambda: charter.evaluate_rm(3), "config"),
        (lambda: charter.evaluate_rm(pairs="p.jsonl", limit=0), "limit"),
    ),
    "publish": (
        (lambda: charter.publish("runs/x", 3), "repo_id"),
        (lambda: charter.publish("runs/x", "org/name", test_size=1.5), "test_size"),
    ),
    "load_preferences": (
        (lambda: charter.load_preferences(None), "source"),
        (lambda: charter.load_preferences("runs/x", test_size=-0.1), "test_size"),
    ),
    "mix": (
        (lambda: charter.mix({"a": 1}, {"b": 2}), "charter_dataset"),
        (lambda: charter.mix([], [], ratio=2), "ratio"),
    ),
    "mix_plan": (
        (lambda: charter.mix_plan(3), "scores"),
        (lambda: charter.mix_plan({"a": {"t": 1.0}}, top_n=0), "top_n"),
    ),
    "mix_from_plan": (
        (lambda: charter.mix_from_plan(3), "plan"),
        (lambda: charter.mix_from_plan("mixture.yaml", size=0), "size"),
    ),
    "mix_probe": (
        (lambda: charter.mix_probe(["a.jsonl"], "pairs.jsonl", "probes"), "sources"),
        (lambda: charter.mix_probe({"a": "a.jsonl"}, "pairs.jsonl", "probes", budget=0), "budget"),
    ),
    "iterate": ((lambda: charter.iterate(3), "config"), (lambda: charter.iterate({"bogus": 1}), None)),
    "synthesize": (
        (lambda: charter.synthesize({}, writer=3), "writer"),
        (lambda: charter.synthesize({"bogus": 1}), None),
    ),
    "infer_constitution": (
        (lambda: charter.infer_constitution(3), "pairs"),
        (lambda: charter.infer_constitution("pairs.jsonl", test_fraction=1.5), "test_fraction"),
    ),
    "status": ((lambda: charter.status(3), "run"), (lambda: charter.status("runs/x", verbose=True), "verbose")),
    "learn_rubrics": (
        (lambda: charter.learn_rubrics(3, "scripted:cai"), "pairs"),
        (lambda: charter.learn_rubrics("pairs.jsonl", "scripted:cai", keep_threshold=0.2), "keep_threshold"),
    ),
    "check_constitution": (
        (lambda: charter.check_constitution("harmless", "pairs.jsonl", None), "judge"),
        (lambda: charter.check_constitution("harmless", "pairs.jsonl", "scripted:cai", min_flip=5), "min_flip"),
    ),
    "diversity": (
        (lambda: charter.diversity({"prompt": "p"}), "source"),
        (lambda: charter.diversity(["a", "b"], sample=1), "sample"),
    ),
}


def test_every_exported_function_has_its_cases_and_takes_the_one_way_in() -> None:
    assert sorted(CASES) == FUNCTIONS
    unchecked = [name for name in FUNCTIONS if not hasattr(getattr(charter, name), "__charter_checked__")]
    assert unchecked == []


def _refused(call: Call, argument: str | None) -> CharterError:
    with pytest.raises(Exception) as caught:
        call()
    error = caught.value
    assert isinstance(error, CharterError), f"{type(error).__name__}: {error}"
    assert "\n" not in str(error)
    if argument is not None:
        assert isinstance(error, ArgumentError) and error.argument == argument, str(error)
    else:
        assert isinstance(error, ConfigError | UnknownModel), f"{type(error).__name__}: {error}"
    return error


@pytest.mark.parametrize("name", FUNCTIONS)
def test_a_wrong_type_is_a_charter_error_naming_the_argument(name: str) -> None:
    _refused(*CASES[name][0])


@pytest.mark.parametrize("name", FUNCTIONS)
def test_a_wrong_value_is_a_charter_error_naming_the_argument(name: str) -> None:
    _refused(*CASES[name][1])


def test_a_missing_or_unknown_argument_is_an_argument_error() -> None:
    assert "missing a required argument" in str(_refused(lambda: charter.judge_pairs(), "pairs"))
    _refused(lambda: charter.publish("runs/x", "org/name", privat=True), "privat")


def test_the_messages_say_what_was_expected_and_what_came() -> None:
    error = _refused(lambda: charter.get_model(None), "spec")
    assert str(error) == "spec: expected str | ChatModel (got NoneType None)"
    error = _refused(lambda: charter.judge_pairs([PAIR, 3], "scripted:cai"), "pairs")
    assert str(error).startswith("pairs: item [1]: ") and "(got int 3)" in str(error)
    error = _refused(lambda: charter.infer_constitution("p.jsonl", test_fraction=1.5), "test_fraction")
    assert str(error) == "test_fraction: must be at least 0.05 and at most 0.9 (got 1.5)"
    error = _refused(lambda: charter.ppi_mean([0.5], [0.5], [float("nan")]), "human_labeled[0]")
    assert "got nan" in str(error)


def test_a_config_is_an_object_a_dict_or_a_yaml_file_alike(tmp_path: Path) -> None:
    config = tmp_path / "dpo.yaml"
    config.write_text("output_dir: out\nbetaa: 0.1\n", encoding="utf-8")
    by_file = _refused(lambda: charter.train_dpo(config), None)
    assert str(by_file).startswith(f"{config}:2:1: betaa: unknown key")
    by_dict = _refused(lambda: charter.train_dpo({"output_dir": "out", "betaa": 0.1}), None)
    assert str(by_dict).startswith("config: betaa: unknown key")
    settings = tmp_path / "judge.yaml"
    settings.write_text("mode: guess\n", encoding="utf-8")
    by_file = _refused(lambda: charter.judge_pairs([PAIR], "scripted:cai", settings=settings), None)
    assert str(by_file).startswith(f"{settings}:1:1: mode: unknown judge mode 'guess'")
    by_dict = _refused(lambda: charter.judge_pairs([PAIR], "scripted:cai", settings={"mode": "guess"}), None)
    assert str(by_dict).startswith("settings: mode: unknown judge mode 'guess'")


def test_a_config_given_as_a_dict_or_a_file_is_used() -> None:
    judgments = charter.judge_pairs([PAIR], "scripted:cai", settings={"mode": "verdict", "orders": "one"})
    assert judgments[0].status == "ok"
    rows, counts = charter.build_preferences([PAIR], judgments, filters={"min_confidence": 0.0})
    assert counts["preferences_before_filters"] == 1 and len(rows) == counts["preferences"]


def test_synthesize_names_its_parameters() -> None:
    parameters = inspect.signature(charter.synthesize).parameters
    assert not any(p.kind is p.VAR_KEYWORD for p in parameters.values())
    assert {"seeds", "constitution", "writer", "cache", "on_round"} <= set(parameters)


def test_the_signature_types_are_exported_and_documented() -> None:
    page = (ROOT / "docs" / "reference" / "api.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^::: charter(?:\.\w+)*\.(\w+)\s*$", page, re.M))
    whole_modules = {"records": "charter.records", "errors": "charter.errors"}
    missing = []
    for name in charter.__all__:
        if name == "__version__":
            continue
        value = getattr(charter, name)
        module = getattr(value, "__module__", "")
        if name in documented or any(module == m or module.startswith(m + ".") for m in whole_modules.values()):
            continue
        missing.append(name)
    assert missing == []
    for name in FUNCTIONS:  # every class a public signature names is exported
        hints = getattr(charter, name).__charter_checked__.params.values()
        for param in hints:
            for member in _classes(param.annotation):
                if member.__module__.startswith("charter."):
                    assert getattr(charter, member.__name__, None) is member, f"{name}({param.name}): {member}"


def _classes(annotation: Any) -> list[type]:
    import typing

    found = [annotation] if isinstance(annotation, type) else []
    for arg in typing.get_args(annotation):
        found += _classes(arg)
    return found


def test_the_mechanism_checks_bounds_kinds_and_configs() -> None:
    @public
    def f(
        k: Annotated[int, Range(ge=1)],
        share: Annotated[float, Range(gt=0, lt=1)] = 0.5,
        data: Annotated[Any, Kinds(list, "Dataset", said="a list or a Dataset")] = (),
    ) -> tuple[int, float]:
        return k, share

    assert f(2, share=0.25, data=[]) == (2, 0.25)
    assert f(3, data=type("Dataset", (), {})()) == (3, 0.5)
    with pytest.raises(ArgumentError, match=r"^k: must be at least 1 \(got 0\)$"):
        f(0)
    with pytest.raises(ArgumentError, match=r"^k: expected int \(got bool True\)$"):
        f(True)
    with pytest.raises(ArgumentError, match=r"^share: must be above 0 and below 1"):
        f(1, share=1)
    with pytest.raises(ArgumentError, match=r"^data: expected a list or a Dataset \(got dict"):
        f(1, data={})
    with pytest.raises(TypeError, match="unexpected keyword argument .nope."):
        public(nope=Range(ge=0))(f)


def test_a_bound_and_a_kind_are_part_of_the_signature() -> None:
    """What `@public` checks is what the signature says: the bounds and kinds are the parameters' annotations."""
    fraction = inspect.signature(charter.infer_constitution).parameters["test_fraction"].annotation
    assert "Range(ge=0.05, le=0.9)" in str(fraction)
    resolved = charter.infer_constitution.__charter_checked__.params["test_fraction"].annotation
    assert typing.get_args(resolved) == (float, Range(ge=0.05, le=0.9))
    source = charter.mix.__charter_checked__.params["charter_dataset"].annotation
    assert any(isinstance(mark, Kinds) for mark in typing.get_args(source))


def test_the_checks_are_written_in_the_signatures() -> None:
    """The decorator takes no checks of its own: a bound or a kind is part of the parameter's annotation."""
    from charter.api_args import Range, public

    with pytest.raises(TypeError):
        public(limit=Range(ge=1))  # type: ignore[call-overload]
    for name in charter.__all__:
        value = getattr(charter, name)
        spec = getattr(value.__init__ if isinstance(value, type) else value, "__charter_checked__", None)
        if spec is not None:
            assert not hasattr(spec, "legacy"), name


def test_an_annotation_that_cannot_be_resolved_is_an_error_where_the_function_is_defined() -> None:
    namespace: dict[str, Any] = {}
    source = (
        "from __future__ import annotations\n"
        "from charter.api_args import public\n"
        "@public\n"
        "def f(data: NotImportedHere) -> None: ...\n"
    )
    with pytest.raises(TypeError, match=r"f\(data\): the annotation 'NotImportedHere' cannot be resolved"):
        exec(compile(source, "<defined>", "exec"), namespace)  # noqa: S102 - a module defining a public function


def test_a_config_argument_says_how_it_is_loaded() -> None:
    with pytest.raises(TypeError, match=r"g\(config\): a config argument says how it is loaded"):

        @public
        def g(config: charter.RoleConfig | dict[str, Any] | str | Path) -> None: ...

    with pytest.raises(TypeError, match="Loads names no parameter extra"):

        @public
        def h(config: Annotated[ConfigArg[charter.RoleConfig], Loads(fields="extra")]) -> None: ...


def _read_role(path: Path, overrides: list[str] | None) -> charter.RoleConfig:
    """A loader with overrides, as `load_run_config` is: it says what it was given."""
    return charter.RoleConfig(model=f"scripted:{path.stem}-{'-'.join(overrides or [])}")


def test_a_config_argument_reaches_the_body_as_its_model(tmp_path: Path) -> None:
    seen: list[Any] = []

    @public
    def loaded(
        config: Annotated[ConfigArg[charter.RoleConfig], Loads(_read_role, overrides="overrides")],
        overrides: list[str] | None = None,
    ) -> None:
        seen.append(config)

    @public
    def with_fields(config: Annotated[ConfigArg[charter.RoleConfig] | None, Loads(fields="fields")] = None,
                    **fields: Any) -> None:  # fmt: skip
        seen.append(config)

    loaded(tmp_path / "role.yaml", ["a=1"])
    loaded({"model": "scripted:cai"})
    with_fields(model="scripted:x")
    with_fields({"model": "scripted:y", "options": {"latency_s": 0}}, model="scripted:z")
    assert [c.model for c in seen] == ["scripted:role-a=1", "scripted:cai", "scripted:x", "scripted:z"]
    assert all(isinstance(c, charter.RoleConfig) for c in seen) and seen[-1].options == {"latency_s": 0}
    with pytest.raises(ArgumentError, match=r"^overrides: expected list\[str\] \| None"):
        loaded(tmp_path / "role.yaml", "a=1")  # the overrides are checked before the loader sees them
    with pytest.raises(ArgumentError, match=r"^config: expected a RoleConfig, a dict of its fields or a YAML"):
        loaded(3)


def test_a_lone_string_is_never_a_list_of_items() -> None:
    for call, argument in (
        (lambda: charter.critique_chains("How?", policy="scripted:cai"), "prompts"),
        (lambda: charter.judge_pairs("How?", "scripted:cai"), "pairs"),
    ):
        assert str(_refused(call, argument)).endswith("(got str 'How?')")
    assert len(charter.critique_chains(iter(["How?", "Why?"]), policy="scripted:cai")) == 2

    @public()
    def items(values: Iterable[str]) -> list[str]:
        return list(values)

    @public()
    def text_or_items(values: str | Iterable[str]) -> list[str]:
        return list(values)

    with pytest.raises(ArgumentError, match=r"^values: expected Iterable\[str\] \(got str 'ab'\)$"):
        items("ab")
    assert items(("ab",)) == ["ab"] and text_or_items("ab") == ["a", "b"]


#: Config classes built directly with a field of the wrong type (and the field).
BUILT: dict[str, tuple[dict[str, Any], str]] = {
    "Budget": ({"max_cost_usd": "x"}, "max_cost_usd"),
    "ArenaConfig": ({"models": ["a"], "prompts": "p.jsonl"}, "models"),
    "RmEvalConfig": ({"reward_model": "rm", "pairs": "p.jsonl", "limit": "ten"}, "limit"),
    "OnlineDPOConfig": ({"prompts": "p.jsonl", "min_confidence": 0.7}, "min_confidence"),
}


@pytest.mark.parametrize("name", sorted(BUILT))
def test_a_config_built_directly_raises_a_config_error_naming_the_field(name: str) -> None:
    fields, field = BUILT[name]
    with pytest.raises(ConfigError) as caught:
        getattr(charter, name)(**fields)
    assert str(caught.value).startswith(f"{name}: {field}: ") and "\n" not in str(caught.value)


def test_every_exported_config_refuses_an_unknown_field_with_a_config_error() -> None:
    from pydantic import BaseModel

    from charter.records import Record

    #: The exported models that are no config: records, a constitution (loaded, a ConstitutionError), an estimate,
    #: a cost forecast (an output, like a record).
    models = [n for n in charter.__all__ if isinstance(v := getattr(charter, n), type) and issubclass(v, BaseModel)]
    configs = [
        n
        for n in models
        if not issubclass(getattr(charter, n), Record | charter.Constitution | charter.Estimate | charter.Forecast)
    ]
    assert {"Budget", "ArenaConfig", "RmEvalConfig", "OnlineDPOConfig", "Limits", "Price", "SamplingParams"} <= set(
        configs
    )
    for name in configs:
        with pytest.raises(ConfigError, match=rf"^{name}: bogus: unknown key"):
            getattr(charter, name)(bogus=1)


def test_an_argument_error_never_hides_a_constitution_error() -> None:
    with pytest.raises(ConstitutionError):
        charter.load_constitution("no-such-constitution")


def _takes_model(obj: Any) -> bool:
    """A checked public function (or class) with a `model` parameter or keyword arguments a `model` can fill."""
    func = obj.__init__ if isinstance(obj, type) else obj
    if not callable(func) or not hasattr(func, "__charter_checked__"):
        return False
    params = inspect.signature(func).parameters
    return "model" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


#: name -> a call giving `model=` as a keyword, and the argument its error names (None: an error of the call's
#: own, the keyword taken).
MODEL_CALLS: dict[str, tuple[Call, str | None]] = {
    "get_model": (lambda: charter.get_model("scripted:cai", model="x"), None),
    "judge_pairs": (lambda: charter.judge_pairs([PAIR], "scripted:cai", model="x"), "model"),
    "reward_function": (lambda: charter.reward_function("scripted:cai", model="x"), "model"),
    "winrate": (lambda: charter.winrate(prompts="p.jsonl", candidate="c", model="x"), "model"),
    "arena": (lambda: charter.arena(models=["a", "b"], prompts="p.jsonl", model="x"), "model"),
    "evaluate_rm": (lambda: charter.evaluate_rm(pairs="p.jsonl", judge="scripted:cai", model="x"), "model"),
    "evaluate_spec": (lambda: charter.evaluate_spec(spec="no-such-spec.md", model="scripted:cai"), None),
    "WinRateCallback": (lambda: charter.WinRateCallback(["hi"], "scripted:cai", model="x"), "model"),
    "infer_constitution": (lambda: charter.infer_constitution("no-such-pairs.jsonl", model="scripted:cai"), None),
    "learn_rubrics": (lambda: charter.learn_rubrics("no-such-pairs.jsonl", model="scripted:cai"), None),
}


def test_model_is_a_keyword_like_any_other() -> None:
    """`model=` reaches the function's own checks (an unknown argument where no field has that name), never a
    `TypeError` from the machinery that passes keywords on."""
    assert sorted(MODEL_CALLS) == sorted(n for n in charter.__all__ if _takes_model(getattr(charter, n)))
    for name, (call, argument) in MODEL_CALLS.items():
        with pytest.raises(Exception) as caught:
            call()
        error = caught.value
        assert isinstance(error, CharterError), f"{name}: {type(error).__name__}: {error}"
        if argument is not None:
            assert isinstance(error, ArgumentError) and error.argument == argument, f"{name}: {error}"
            assert error.detail == "unknown argument", f"{name}: {error}"


def test_a_config_field_named_model_is_given_by_keyword() -> None:
    from charter.api_args import from_arguments

    assert from_arguments(charter.RoleConfig, model="scripted:cai").model == "scripted:cai"
    with pytest.raises(ArgumentError, match="model: Input should be a valid string"):
        from_arguments(charter.RoleConfig, model=3)
