"""The docs hold what the code does: the formats page is the records' own description, every Python block in
README.md and docs/ runs (scripted models stand in where a real one is named), every `charter` command line names
commands and options that exist, every YAML block validates, every config key is described, and the site builds
with no warning."""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import typer
from markdown_it import MarkdownIt

from charter.cli import app, main
from charter.constitutions import Constitution
from charter.dpo.config import DPOConfigModel
from charter.errors import ConfigError
from charter.judge import modes
from charter.loop.config import LoopConfig
from charter.mixing.plan import MixtureManifest
from charter.online.config import OnlineConfig, OnlineDPOConfig
from charter.pipeline.config import RunConfig
from charter.reward_model.config import RewardModelConfig
from charter.serve.config import ServeConfig
from charter.stats import diversity
from charter.synth.config import SynthConfig
from charter.yamlio import EXTENSION_PREFIX, model_from_data, parse_yaml

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
FORMATS_PAGE = ROOT / "docs" / "reference" / "formats.md"
REAL_MODEL = re.compile(r"\b(?:local|openai|anthropic|openai-compatible):[\w./@:-]+")


class Fence(NamedTuple):
    """A fenced code block: its language, the rest of its info string, its text, and the file line it starts on."""

    language: str
    info: str
    content: str
    line: int


def fences(path: Path) -> list[Fence]:
    tokens = MarkdownIt("commonmark").parse(path.read_text(encoding="utf-8"))
    found = []
    for token in tokens:
        if token.type == "fence" and token.map is not None:
            language, _, info = token.info.strip().partition(" ")
            found.append(Fence(language, info.strip(), token.content, token.map[0] + 2))
    return found


def python_blocks(path: Path) -> list[str]:
    return [fence.content for fence in fences(path) if fence.language == "python"]


def scripted(text: str) -> str:
    """The same text with every real model string replaced by the scripted stand-in."""
    return REAL_MODEL.sub("scripted:cai", text)


def test_formats_page_is_generated_from_the_records() -> None:
    assert FORMATS_PAGE.read_text(encoding="utf-8") == reference_hook().formats_markdown(), (
        "docs/reference/formats.md is stale: python docs/hooks/reference.py"
    )


def reference_hook() -> Any:
    """docs/hooks/reference.py, the module that generates the reference pages (mkdocs loads it as a hook)."""
    spec = importlib.util.spec_from_file_location("charter_docs_reference", ROOT / "docs" / "hooks" / "reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("page", reference_hook().GENERATED_PAGES)
def test_reference_pages_on_disk_are_generated_from_the_code(page: str) -> None:
    """The command-line and run-config references are written into the repository (they read on the repository
    host too) and are what the code makes now."""
    hook = reference_hook()
    text = (ROOT / page).read_text(encoding="utf-8")
    assert all(hook.end_marker(marker) in text for marker in hook.generators() if marker in text), page
    assert text == hook.filled(text), f"{page} is stale: python docs/hooks/reference.py"


def test_a_stale_reference_page_is_seen() -> None:
    hook = reference_hook()
    text = (ROOT / "docs" / "reference" / "cli.md").read_text(encoding="utf-8")
    assert hook.filled(text.replace("`charter run`", "`charter walk`", 1)) == text


def test_readme_paragraphs_stay_short() -> None:
    """Every paragraph of README.md's prose is at most 120 words (the opening one included)."""
    tokens = MarkdownIt("commonmark").parse((ROOT / "README.md").read_text(encoding="utf-8"))
    long = []
    for opening, inline in zip(tokens, tokens[1:]):
        if opening.type == "paragraph_open" and inline.type == "inline" and len(inline.content.split()) > 120:
            long.append(f"line {opening.map[0] + 1 if opening.map else '?'}: {len(inline.content.split())} words")
    assert long == []


MARKDOWN_LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def linked_pages(page: Path) -> set[Path]:
    """The pages of the repository a Markdown page links to."""
    targets = MARKDOWN_LINK.findall(page.read_text(encoding="utf-8"))
    return {(page.parent / t).resolve() for t in targets if "://" not in t and not t.startswith("mailto:")}


def test_every_page_of_the_site_is_linked_from_the_home_page() -> None:
    docs = ROOT / "docs"
    home = linked_pages(docs / "index.md")
    pages = [p for folder in ("concepts", "guides", "reference") for p in sorted((docs / folder).glob("*.md"))]
    assert len(pages) > 30 and [str(p.relative_to(docs)) for p in pages if p.resolve() not in home] == []
    frameworks = linked_pages(docs / "guides" / "rl-frameworks.md")  # each framework's page, from their overview
    framework_pages = sorted((docs / "guides" / "frameworks").glob("*.md"))
    assert [p.name for p in framework_pages if p.resolve() not in frameworks] == []


#: Top-level commands that check or tidy rather than make data or models; the command-line reference has them.
HOUSEKEEPING = {"batches", "cache", "config", "generate"}


def test_the_readme_names_every_command_that_makes_data_or_models() -> None:
    import typer.main

    from charter.cli import app

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    commands = set(typer.main.get_command(app).commands) - HOUSEKEEPING  # type: ignore[attr-defined]
    assert {"run", "mix", "serve"} <= commands
    assert sorted(c for c in commands if not re.search(rf"\bcharter {c}\b", readme)) == []
    assert len(readme.splitlines()) <= 160


def test_the_readme_has_a_python_example() -> None:
    assert python_blocks(ROOT / "README.md")


@pytest.mark.parametrize("path", [p for p in DOCS if python_blocks(p)], ids=lambda p: p.name)
def test_python_blocks_run(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each file's blocks, in order, in one namespace, from a directory holding the examples (models scripted)."""
    (tmp_path / "examples").mkdir()
    for example in [*(ROOT / "examples").glob("*.yaml"), *(ROOT / "examples").glob("*.md")]:
        (tmp_path / "examples" / example.name).write_text(scripted(example.read_text(encoding="utf-8")))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))  # the call cache goes to ~/.cache
    blocks = [scripted(block) for block in python_blocks(path)]
    if any("engine: ray" in block or "import ray" in block for block in blocks):
        # Ray keeps process-wide state (a cluster, its GCS) that another Ray test of this process may have left
        # behind: such a page runs in a process of its own, as its reader runs it.
        script = tmp_path / f"{path.stem}_blocks.py"
        script.write_text("\n\n".join(blocks), encoding="utf-8")
        done = subprocess.run(
            [sys.executable, str(script)],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            env={**os.environ, "HOME": str(tmp_path)},
            timeout=300,
        )
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
        return
    namespace: dict = {"__name__": "__docs__"}
    table = dict(modes.MODES)  # a page may register a judge mode: it is the page's, not the next test's
    metrics = dict(diversity.METRICS)  # or a diversity metric
    try:
        for block in blocks:
            exec(compile(block, f"{path.name} python block", "exec"), namespace)  # noqa: S102
    finally:
        modes.MODES.clear()
        modes.MODES.update(table)
        diversity.METRICS.clear()
        diversity.METRICS.update(metrics)


# -- command lines -------------------------------------------------------------------------------------------------
# A line of a ```bash, ```sh, ```shell or ```console block that runs `charter` (after an optional `$ `, environment
# assignments and `-m charter.cli` included; in ```console blocks only lines starting with `$ `, the rest being
# output) must name a command that exists and only options that command has. Nothing is run: the words are
# walked down the click command tree.

SHELL_LANGUAGES = {"bash", "sh", "shell", "console"}
SHELL_OPERATORS = {"|", "||", "&", "&&", ";", ">", ">>", "<", "<<", "(", ")", ">&", "<&", "&>"}
ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


def shell_lines(path: Path) -> list[tuple[int, str]]:
    """Each command line of the file's shell blocks, continuation lines joined, with its line number."""
    lines = []
    for fence in fences(path):
        if fence.language not in SHELL_LANGUAGES:
            continue
        pending, start = "", 0
        for offset, raw in enumerate(fence.content.splitlines()):
            if fence.language == "console" and not pending:
                if not raw.startswith("$ "):
                    continue
                raw = raw[2:]
            if not pending:
                start = fence.line + offset
            if raw.rstrip().endswith("\\"):
                pending += raw.rstrip()[:-1] + " "
                continue
            lines.append((start, (pending + raw).strip()))
            pending = ""
    return lines


def charter_argv(line: str) -> list[str] | None:
    """The arguments a shell line gives `charter`, or None where the line does not run it."""
    lexer = shlex.shlex(line.removeprefix("$ "), posix=True, punctuation_chars=True)
    lexer.whitespace_split, lexer.commenters = True, "#"
    words = []
    for word in lexer:
        if word in SHELL_OPERATORS:
            break
        words.append(word)
    while words and ASSIGNMENT.match(words[0]):
        words.pop(0)
    if words[:1] == ["charter"]:
        return words[1:]
    for index in range(len(words) - 1):
        if words[index : index + 2] == ["-m", "charter.cli"]:
            return words[index + 2 :]
    return None


@functools.cache
def cli_root() -> Any:
    return typer.main.get_command(app)


def takes_value(command: Any) -> dict[str, bool]:
    """Every option spelling of a command, and whether the option takes a value."""
    options = {"--help": False}
    for param in command.params:
        if param.param_type_name == "option":
            value = not (getattr(param, "is_flag", False) or getattr(param, "count", False))
            options.update({name: value for name in [*param.opts, *param.secondary_opts]})
    return options


def cli_problem(argv: list[str]) -> str | None:
    """What is wrong with `charter ARGV` as a command line (an unknown command or option), or None."""
    command, path, words = cli_root(), ["charter"], list(argv)
    while words:
        word = words.pop(0)
        options, children = takes_value(command), getattr(command, "commands", None)
        if word == "--":
            return None
        if word.startswith("-") and len(word) > 1 and not re.fullmatch(r"-[\d.]+", word):
            name = word.split("=", 1)[0]
            if name == "--help":
                return None
            if name not in options:
                return f"`{' '.join(path)}` has no option {name}"
            if options[name] and "=" not in word and words:
                words.pop(0)
            continue
        if children is None:
            continue
        default = getattr(command, "default_command", "")
        if word not in children and not default:
            return f"`{' '.join(path)}` has no command {word!r}"
        if word not in children:
            words.insert(0, word)
            word = default
        command = children[word]
        path.append(word)
    return None


def files_with_commands() -> list[Path]:
    return [path for path in DOCS if any(charter_argv(line) is not None for _, line in shell_lines(path))]


def test_the_command_line_check_sees_problems() -> None:
    assert cli_problem(["run", "x.yaml", "--set", "a=1", "--dry-run"]) is None
    assert cli_problem(["-q", "--log-level", "debug", "label", "runs/x", "--annotator", "alice"]) is None
    assert cli_problem(["agreement", "eval", "--pairs", "p.jsonl", "--judge=local:m"]) is None
    assert "no option --dry" in (cli_problem(["run", "x.yaml", "--dry"]) or "")
    assert "no command 'frobnicate'" in (cli_problem(["constitutions", "frobnicate"]) or "")
    assert charter_argv("$ OPENAI_API_KEY=x charter run a.yaml --set 'judge.options={}' | tee log  # note") == [
        "run",
        "a.yaml",
        "--set",
        "judge.options={}",
    ]
    assert charter_argv("torchrun --nproc_per_node 2 -m charter.cli train dpo d.yaml") == ["train", "dpo", "d.yaml"]


@pytest.mark.parametrize("path", files_with_commands(), ids=lambda p: p.name)
def test_charter_command_lines_exist(path: Path) -> None:
    problems = []
    for line_number, line in shell_lines(path):
        argv = charter_argv(line)
        problem = cli_problem(argv) if argv is not None else None
        if problem:
            problems.append(f"{path.relative_to(ROOT)}:{line_number}: {problem}: {line}")
    assert problems == []


# A command named in prose, as a code span (`charter train reward`), in the docs and in the package's own help texts
# and docstrings (the CLI and config references are made from them), names a command that exists too. The words are
# checked up to the first placeholder (`RUN_DIR`, `<version>`, `...`); `a|b` names each of its alternatives.

INLINE_COMMAND = re.compile(r"`charter ([^`\n]+)`")
PLACEHOLDER = re.compile(r"<.*>|\.\.\.|[A-Z][A-Z0-9_]*")


def inline_commands(text: str) -> list[list[str]]:
    """The argument lists of the `charter ...` code spans of a text, alternatives spelled out."""
    found = []
    for match in INLINE_COMMAND.finditer(text):
        words: list[list[str]] = [[]]
        for word in match.group(1).split():
            if PLACEHOLDER.fullmatch(word):
                break
            words = [[*head, choice] for head in words for choice in word.split("|")]
        found += words
    return found


def test_the_inline_command_check_sees_problems() -> None:
    assert inline_commands("`charter train grpo|rloo` and `charter status RUN_DIR --json`") == [
        ["train", "grpo"],
        ["train", "rloo"],
        ["status"],
    ]
    assert inline_commands("`charter <version>`, `charter.cli` and `charter COMMAND --help`") == [[], []]
    assert "no command 'reward-model'" in (cli_problem(inline_commands("`charter train reward-model`")[0]) or "")


@pytest.mark.parametrize("folder", ["docs", "src"])
def test_commands_named_in_prose_exist(folder: str) -> None:
    files = DOCS if folder == "docs" else sorted((ROOT / "src" / "charter").rglob("*.py"))
    problems = [
        f"{path.relative_to(ROOT)}: `charter {' '.join(argv)}`: {problem}"
        for path in files
        for argv in inline_commands(path.read_text(encoding="utf-8"))
        if (problem := cli_problem(argv))
    ]
    assert problems == []


# -- YAML blocks ---------------------------------------------------------------------------------------------------
# Every ```yaml block validates, through charter.yamlio (errors name the file's own line). A plain ```yaml block is a
# run config, or a part of one (its top-level keys are run-config keys), checked as `RunConfig`. A block that is
# another file says which in its fence, ```yaml title="NAME.yaml", and the name picks the schema: a name holding
# `constitution` is a `Constitution`, `loop` a `LoopConfig`, `online-dpo` an `OnlineDPOConfig`, `dpo` a
# `DPOConfigModel`, `reward` a `RewardModelConfig`, `synth` a `SynthConfig`, `mixture` a `MixtureManifest`; any
# other name is a run config. A block that is no charter file at all (an accelerate or CI config) starts with the
# line `# not a charter config` and is not checked.

NOT_CHARTER = "# not a charter config"
TITLED_SCHEMAS: tuple[tuple[str, type], ...] = (
    ("serve", ServeConfig),  # before "reward": serve-reward.yaml is a server config
    ("constitution", Constitution),
    ("grpo", OnlineConfig),
    ("rloo", OnlineConfig),
    ("online-dpo", OnlineDPOConfig),
    ("loop", LoopConfig),
    ("dpo", DPOConfigModel),
    ("reward", RewardModelConfig),
    ("synth", SynthConfig),
    ("mixture", MixtureManifest),
)


def yaml_schema(fence: Fence) -> type | None:
    """The model a YAML block must validate as, or None for a block that is no charter file."""
    if fence.content.startswith(NOT_CHARTER):
        return None
    title = re.search(r"""title=["']([^"']+)["']""", fence.info)
    name = title.group(1).lower() if title else ""
    return next((schema for word, schema in TITLED_SCHEMAS if word in name), RunConfig)


def yaml_problem(path: Path, fence: Fence) -> str | None:
    """The validation errors of one YAML block, with the file's line numbers, or None."""
    schema = yaml_schema(fence)
    if schema is None:
        return None
    source = str(path.relative_to(ROOT))
    try:
        data, positions = parse_yaml("\n" * (fence.line - 1) + fence.content, source)
        if not isinstance(data, dict):
            return f"{source}:{fence.line}: a {schema.__name__} block holds a mapping"
        data = {k: v for k, v in data.items() if not (isinstance(k, str) and k.startswith(EXTENSION_PREFIX))}
        model_from_data(schema, data, source, positions)
    except ConfigError as exc:
        return f"{schema.__name__}: " + "; ".join(exc.lines)
    return None


def files_with_yaml() -> list[Path]:
    return [path for path in DOCS if any(fence.language in ("yaml", "yml") for fence in fences(path))]


def test_the_yaml_check_picks_the_schema() -> None:
    assert yaml_schema(Fence("yaml", "", "judge: {mode: cot}\n", 1)) is RunConfig
    assert yaml_schema(Fence("yaml", 'title="my.constitution.yaml"', "name: x\n", 1)) is Constitution
    assert yaml_schema(Fence("yaml", 'title="examples/dpo.yaml"', "model: x\n", 1)) is DPOConfigModel
    assert yaml_schema(Fence("yaml", "", f"{NOT_CHARTER}\ncompute_environment: LOCAL_MACHINE\n", 1)) is None
    problem = yaml_problem(ROOT / "README.md", Fence("yaml", "", "judge:\n  mdoe: cot\n", 10))
    assert problem is not None and "README.md:11" in problem and "mode" in problem


@pytest.mark.parametrize("path", files_with_yaml(), ids=lambda p: p.name)
def test_yaml_blocks_validate(path: Path) -> None:
    problems = [yaml_problem(path, fence) for fence in fences(path) if fence.language in ("yaml", "yml")]
    assert [problem for problem in problems if problem] == []


# -- the site ------------------------------------------------------------------------------------------------------


def test_the_site_builds_with_no_warning(tmp_path: Path) -> None:
    """`mkdocs build --strict`: a broken link or anchor, a page missing from the nav, an API name mkdocstrings
    cannot find or a docstring it cannot read fails the build."""
    for module in ("mkdocs", "material", "mkdocstrings_handlers.python"):
        pytest.importorskip(module)
    command = [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")]
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]


def test_the_benchmarks_page_can_drop_the_results_title() -> None:
    """docs/benchmarks.md includes benchmarks/RESULTS.md from its second line on, under a title of its own."""
    assert (ROOT / "benchmarks" / "RESULTS.md").read_text(encoding="utf-8").startswith("# ")


def test_readme_links_stay_in_the_repository() -> None:
    """README.md's links work on GitHub as well as in the site: each is a file of this repository, or a web page."""
    tokens = MarkdownIt("commonmark").parse((ROOT / "README.md").read_text(encoding="utf-8"))
    links = [child.attrs["href"] for token in tokens for child in token.children or [] if child.type == "link_open"]
    broken = []
    for link in links:
        target = str(link).split("#", 1)[0]
        if re.match(r"^[a-z]+:", target) or not target:
            continue
        resolved = (ROOT / target).resolve()
        if not resolved.is_relative_to(ROOT) or not resolved.exists():
            broken.append(link)
    assert links
    assert broken == []


# -- the run config --------------------------------------------------------------------------------------------------


def test_every_run_config_key_is_described() -> None:
    missing = []

    def walk(schema: dict, defs: dict, where: str) -> None:
        for name, prop in (schema.get("properties") or {}).items():
            if not prop.get("description"):
                missing.append(f"{where}{name}")
            for ref in _refs(prop):
                walk(defs[ref], defs, f"{where}{name}.")

    full = RunConfig.model_json_schema()
    walk(full, full.get("$defs", {}), "")
    assert missing == []


def _refs(prop: dict) -> list[str]:
    found = re.findall(r'"\$ref": "#/\$defs/(\w+)"', json.dumps(prop))
    return list(dict.fromkeys(found))


def test_config_schema_command(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["config", "schema", "-o", str(tmp_path / "s.json")]) == 0
    schema = json.loads((tmp_path / "s.json").read_text())
    judge = schema["$defs"]["JudgeConfig"]["properties"]
    assert "both orders" in judge["orders"]["description"]
    assert judge["mode"]["enum"] == ["logprobs", "cot", "verdict", "score", "rubric", "checklist", "stepwise"]
    assert schema["properties"]["reward_model"]["description"].startswith("Reward-model training")
    assert main(["config", "schema"]) == 0
    assert json.loads(capsys.readouterr().out) == schema


# -- the Python API reference ----------------------------------------------------------------------------------------
# Every function docs/reference/api.md names (`::: charter.NAME` lines; classes and modules are left out) has a
# Google-style docstring with an `Args:` section naming each of its parameters (when it has any) and a `Returns:`
# section (when its return annotation is not None): mkdocstrings renders them as the page's tables.

API_PAGE = ROOT / "docs" / "reference" / "api.md"
API_NAME = re.compile(r"^::: (charter(?:\.\w+)+)\s*$", re.M)


def api_names() -> list[str]:
    return API_NAME.findall(API_PAGE.read_text(encoding="utf-8"))


@functools.cache
def api_package() -> Any:
    griffe = pytest.importorskip("griffe")
    return griffe.load("charter", search_paths=[str(ROOT / "src")], docstring_parser="google", resolve_aliases=True)


def docstring_problems(function: Any) -> list[str]:
    """What the function's docstring lacks: a summary, an Args section naming every parameter, a Returns section."""
    if function.docstring is None or not function.docstring.value.strip():
        return ["no docstring"]
    sections = {section.kind.value: section for section in function.docstring.parse("google")}
    problems = []
    if "text" not in sections:
        problems.append("no summary line")
    params = [p.name for p in function.parameters if p.name not in ("self", "cls")]
    documented = [p.name.lstrip("*") for p in sections["parameters"].value] if "parameters" in sections else []
    if params and "parameters" not in sections:
        problems.append("no Args section")
    elif params:
        missing = [name for name in params if name not in documented]
        unknown = [name for name in documented if name not in params]
        problems += [f"Args lacks {name}" for name in missing]
        problems += [f"Args names {name}, no parameter" for name in unknown]
    returns = function.returns
    if returns is not None and str(returns) != "None" and "returns" not in sections:
        problems.append("no Returns section")
    return problems


def test_the_api_page_names_functions() -> None:
    assert "charter.pipeline.api.run" in api_names()


def test_the_docstring_check_sees_problems() -> None:
    griffe = pytest.importorskip("griffe")
    module = griffe.visit(
        "sample",
        filepath=Path("sample.py"),
        code=(
            'def bare(a: int) -> int:\n    """Only a summary."""\n\n'
            'def half(a: int, b: int) -> int:\n    """Half.\n\n    Args:\n        a: One.\n    """\n\n'
            'def whole(a: int) -> None:\n    """Whole.\n\n    Args:\n        a: One.\n    """\n'
        ),
        docstring_parser="google",
    )
    assert docstring_problems(module["bare"]) == ["no Args section", "no Returns section"]
    assert docstring_problems(module["half"]) == ["Args lacks b", "no Returns section"]
    assert docstring_problems(module["whole"]) == []


@pytest.mark.parametrize("name", api_names())
def test_api_functions_have_google_docstrings(name: str) -> None:
    """A function documents every argument and its return; a class or module at least says what it is."""
    found = api_package()[name.removeprefix("charter.")]
    if found.kind.value == "function":
        assert docstring_problems(found) == []
    else:
        assert found.docstring is not None and found.docstring.value.strip(), f"{name} has no docstring"
