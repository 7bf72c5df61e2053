"""Keys only where they belong, and the endpoint as part of what a call is: against loopback servers that record
every request's headers, through the real SDKs."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import yaml

from charter.cli import main
from charter.errors import ConfigError, MissingAPIKey, UnknownModel
from charter.pipeline.config import RoleConfig
from charter.providers import CallCache, SamplingParams, get_model
from charter.providers.endpoints import normalise_url, resolve_endpoint
from charter.redaction import redact
from charter.testing.loopback import LoopbackServer

from .conftest import CANARY_ANTHROPIC, CANARY_OPENAI, FAST

HELLO = [{"role": "user", "content": "hello"}]
KEY_A, KEY_B = "sk-vendor-a-" + "Lk2Jh7Gf4Ds9Aq1Z", "sk-vendor-b-" + "Mn8Bv3Cx6Zl0Pk5Q"


@pytest.fixture
def official_keys(monkeypatch):
    """Both official keys set, as on a developer's machine; no SDK base-URL variables."""
    monkeypatch.setenv("OPENAI_API_KEY", CANARY_OPENAI)
    monkeypatch.setenv("ANTHROPIC_API_KEY", CANARY_ANTHROPIC)
    for name in ("OPENAI_BASE_URL", "ANTHROPIC_BASE_URL", "ANTHROPIC_AUTH_TOKEN"):
        monkeypatch.delenv(name, raising=False)


def sent(server: LoopbackServer) -> list[str]:
    """Every header value of every request the server got, one string per request."""
    return [" ".join(r.headers.values()) for r in server.requests]


def official_keys_in(server: LoopbackServer) -> bool:
    return any(CANARY_OPENAI in h or CANARY_ANTHROPIC in h or CANARY_OPENAI[-12:] in h for h in sent(server))


@pytest.mark.parametrize("url", ["HTTP://Example.COM:80/v1/", "http://example.com/v1", "http://example.com:80/v1//"])
def test_one_endpoint_has_one_spelling(url):
    assert normalise_url(url) == "http://example.com/v1"
    assert normalise_url("https://api.openai.com:443/v1/") == "https://api.openai.com/v1"
    assert normalise_url("http://[::1]:8000/v1") == "http://[::1]:8000/v1"


def test_a_url_with_a_password_is_refused_without_repeating_it():
    with pytest.raises(UnknownModel) as err:
        get_model("openai-compatible:m@http://user:hunter2secret@host/v1")
    assert "hunter2secret" not in str(err.value) and "api_key_env" in str(err.value)


async def test_openai_key_never_goes_to_a_compatible_server(loopback, official_keys):
    chat = get_model(f"openai-compatible:m@{loopback.openai_url}", limits=FAST)
    await chat.generate([HELLO], SamplingParams())
    assert loopback.requests[0].headers["authorization"] == "Bearer EMPTY" and not official_keys_in(loopback)


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_official_providers_at_another_host_need_a_named_key(loopback, official_keys, monkeypatch, provider):
    if provider == "openai":
        monkeypatch.setenv("OPENAI_BASE_URL", loopback.openai_url)
        make = lambda **kw: get_model("openai:gpt-test", limits=FAST, **kw)  # noqa: E731
    else:
        make = lambda **kw: get_model("anthropic:claude-test", limits=FAST, base_url=loopback.url, **kw)  # noqa: E731
    with pytest.raises(ConfigError) as err:
        make()
    variable = "OPENAI_API_KEY" if provider == "openai" else "ANTHROPIC_API_KEY"
    assert f"{variable} is not sent there" in str(err.value) and "api_key_env" in str(err.value)
    assert CANARY_OPENAI not in str(err.value) and loopback.hits == 0
    with pytest.raises(MissingAPIKey, match="VENDOR_KEY is not set"):
        make(api_key_env="VENDOR_KEY")


async def test_a_named_key_goes_to_its_host_and_is_masked(loopback, official_keys, monkeypatch):
    monkeypatch.setenv("VLLM_KEY", KEY_A)
    chat = get_model(f"openai-compatible:m@{loopback.openai_url}", limits=FAST, api_key_env="VLLM_KEY")
    await chat.generate([HELLO], SamplingParams())
    assert loopback.requests[0].headers["authorization"] == f"Bearer {KEY_A}" and not official_keys_in(loopback)
    assert KEY_A not in redact(f"the key was {KEY_A}")  # registered: masked wherever charter redacts


def test_the_official_apis_get_their_usual_keys(official_keys):
    assert resolve_endpoint("openai", None).key() == CANARY_OPENAI
    assert resolve_endpoint("anthropic", "https://API.anthropic.com/").key() == CANARY_ANTHROPIC
    assert resolve_endpoint("openai-compatible", "http://h:8000/v1").key() == "EMPTY"


def test_the_role_config_names_the_variable_and_finds_mistakes_at_load():
    role = RoleConfig.model_validate({"model": "openai-compatible:m@http://h/v1", "api_key_env": "VLLM_KEY"})
    assert role.endpoint().key_variable == "VLLM_KEY"
    for bad, message in (
        (dict(model="local:x", api_key_env="K"), "runs in this process and takes no key"),
        (dict(model="openai:m", api_key_env="sk-proj-abcdefghijklmnop1234"), "not the key itself"),
        (dict(model="anthropic:m", options={"base_url": "http://h"}), "is not sent there"),
        (dict(model="openai:m", options={"api_key_env": "K"}), "beside model:"),
    ):
        with pytest.raises(ValueError, match=message) as err:
            RoleConfig.model_validate(bad)
        assert "sk-proj-abcdefghijklmnop1234" not in str(err.value)


def write_run(tmp_path: Path, name: str, **roles) -> Path:
    config = {
        "name": name,
        "output_dir": str(tmp_path / name),
        "cache": str(tmp_path / "cache.sqlite"),
        "prompts": {"inline": ["How do I fix a leaking tap?", "What is a good first programming language?"]},
        "report": False,
        "filters": {"drop_inconsistent": False},
        **roles,
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_two_endpoints_with_two_keys_in_one_run(tmp_path, official_keys, monkeypatch):
    """An `openai:` judge at one host and a policy at another, each with its own key, in one run: each host gets
    exactly its key, and neither official key reaches either."""
    monkeypatch.setenv("KEY_A", KEY_A)
    monkeypatch.setenv("KEY_B", KEY_B)
    with LoopbackServer() as a, LoopbackServer() as b:
        path = write_run(
            tmp_path,
            "two-keys",
            policy={"model": f"openai-compatible:policy@{a.openai_url}", "api_key_env": "KEY_A"},
            judge={"model": "openai:judge", "api_key_env": "KEY_B", "options": {"base_url": b.openai_url}},
        )
        assert main(["run", str(path)]) == 0
    assert a.hits and b.hits
    assert all(f"Bearer {KEY_A}" in h and KEY_B not in h for h in sent(a))
    assert all(f"Bearer {KEY_B}" in h and KEY_A not in h for h in sent(b))
    assert not official_keys_in(a) and not official_keys_in(b)
    stored = (tmp_path / "two-keys" / "config.yaml").read_text() + (tmp_path / "cache.sqlite").read_bytes().hex()
    assert KEY_A not in stored and KEY_B not in stored and "KEY_A" in stored  # the variable's name, never its value


def texts(run_dir: Path) -> list[str]:
    import json

    rows = [json.loads(line) for line in (run_dir / "data" / "sft.jsonl").read_text().splitlines()]
    return sorted(m["content"] for r in rows for m in r["messages"] if m["role"] == "assistant")


def test_another_server_under_the_same_model_name_is_asked(tmp_path, official_keys, capsys):
    """Serve `policy` from server A, then point the same run at server B: B answers every call again (the cache
    keys name the endpoint), the dataset holds B's texts, and status names B."""
    with LoopbackServer(reply=lambda body: "from A") as a, LoopbackServer(reply=lambda body: "from B") as b:
        role = {"model": f"openai-compatible:policy@{a.openai_url}"}
        first = write_run(tmp_path, "switch", policy=role, judge={"model": "scripted:cai"})
        assert main(["run", str(first)]) == 0
        calls = a.hits
        role = {"model": f"openai-compatible:policy@{b.openai_url}/"}  # a trailing slash: the same endpoint
        assert main(["run", str(write_run(tmp_path, "switch", policy=role, judge={"model": "scripted:cai"}))]) == 0
        assert b.hits == calls and a.hits == calls
        assert set(texts(tmp_path / "switch")) == {"from B"}
        assert main(["run", str(write_run(tmp_path, "switch", policy=role, judge={"model": "scripted:cai"}))]) == 0
        assert b.hits == calls  # the same endpoint again, spelt without the slash: all from the cache
    capsys.readouterr()
    assert main(["status", str(tmp_path / "switch")]) == 0
    assert b.openai_url.removeprefix("http://") in capsys.readouterr().out.replace("\n", "")


def legacy_cache(path: Path, rows: list[tuple[str, str, str, str]]) -> None:
    """A call cache as charter 0.1.0 wrote it: no schema version, no endpoint column."""
    db = sqlite3.connect(path)
    db.execute(
        "CREATE TABLE calls (key TEXT PRIMARY KEY, kind TEXT, model TEXT, value TEXT,"
        " created_at REAL DEFAULT (unixepoch('subsec')))"
    )
    db.executemany("INSERT INTO calls (key, kind, model, value) VALUES (?, ?, ?, ?)", rows)
    db.commit()
    db.close()


async def test_old_cache_rows_answer_only_for_the_endpoint_that_made_them(tmp_path, loopback, official_keys):
    """Rows written before endpoints were recorded: an `openai-compatible:` model's answer only once its endpoint is
    claimed, and only for that endpoint; a model claimed for two endpoints is answered by neither."""
    from charter.providers.cache import cache_key

    params = SamplingParams()
    bye = [{"role": "user", "content": "bye"}]
    old = {
        name: cache_key("generate", "openai-compatible:m", [msgs, params.model_dump(mode="json")])
        for name, msgs in (("hello", HELLO), ("bye", bye))
    }  # how 0.1.0 keyed them: no URL
    path = tmp_path / "calls.sqlite"
    legacy_cache(
        path,
        [
            (key, "generate", "openai-compatible:m", f'{{"text": "old {name}", "model": "x"}}')
            for name, key in old.items()
        ],
    )

    cache = CallCache(path)
    assert cache.legacy_rows and (tmp_path / "calls.sqlite.v0.bak").exists()
    here = get_model(f"openai-compatible:m@{loopback.openai_url}", limits=FAST, cache=cache)
    assert (await here.generate([bye], params))[0].text == "echo: bye"  # unclaimed: asked
    assert loopback.hits == 1
    assert cache.claim("openai-compatible:m", normalise_url(loopback.openai_url), "test") is None
    assert (await here.generate([HELLO], params))[0].text == "old hello"  # claimed: answered from the old row
    assert loopback.hits == 1
    warning = cache.claim("openai-compatible:m", "http://elsewhere:9/v1", "another run")
    assert "answer for neither" in warning
    cache.close()
    again = get_model(f"openai-compatible:m@{loopback.openai_url}", limits=FAST, cache=CallCache(path))
    assert (await again.generate([HELLO], params))[0].text == "echo: hello" and loopback.hits == 2
    await again.aclose()


async def test_official_api_rows_of_0_1_0_still_answer(tmp_path, official_keys):
    """An `openai:` model's old rows were made by OpenAI's API (where no claim says otherwise): they answer there."""
    from charter.providers.cache import cache_key
    from charter.providers.openai_chat import OpenAIModel

    params = SamplingParams()
    key = cache_key("generate", "openai:gpt-4o-mini", [HELLO, params.model_dump(mode="json")])
    legacy_cache(tmp_path / "c.sqlite", [(key, "generate", "openai:gpt-4o-mini", '{"text": "paid for", "model": "x"}')])
    chat = get_model(OpenAIModel("gpt-4o-mini", FAST), cache=CallCache(tmp_path / "c.sqlite"))
    assert (await chat.generate([HELLO], params))[0].text == "paid for"  # no request: there is no server here


def test_eval_winrate_sends_each_model_its_own_key(tmp_path, official_keys, monkeypatch):
    monkeypatch.setenv("KEY_A", KEY_A)
    monkeypatch.setenv("KEY_B", KEY_B)
    (tmp_path / "p.jsonl").write_text("".join(f'{{"prompt": "Question {i}?"}}\n' for i in range(3)))
    with LoopbackServer() as a, LoopbackServer() as b:
        code = main(
            [
                "eval",
                "winrate",
                "--base",
                f"openai-compatible:base@{a.openai_url}",
                "--base-api-key-env",
                "KEY_A",
                "--candidate",
                f"openai-compatible:tuned@{a.openai_url}",
                "--candidate-api-key-env",
                "KEY_A",
                "--judge",
                f"openai-compatible:judge@{b.openai_url}",
                "--judge-api-key-env",
                "KEY_B",
                "--prompts",
                str(tmp_path / "p.jsonl"),
                "--out",
                str(tmp_path / "w.json"),
            ]
        )
        assert code == 0
    assert a.hits == 6 and b.hits == 6  # 3 answers from each policy; 3 pairs judged in both orders
    assert all(f"Bearer {KEY_A}" in h for h in sent(a)) and all(f"Bearer {KEY_B}" in h for h in sent(b))
    assert not official_keys_in(a) and not official_keys_in(b)


def test_the_cache_commands_show_and_claim_old_rows(tmp_path, capsys):
    legacy_cache(tmp_path / "c.sqlite", [("k1", "generate", "openai-compatible:policy", '{"text": "x"}')])
    assert main(["cache", "info", "--cache", str(tmp_path / "c.sqlite")]) == 0
    assert "1 calls (1 from before endpoints were recorded)" in capsys.readouterr().out
    assert (
        main(["cache", "claim", "openai-compatible:policy@HTTP://Box:8000/v1/", "--cache", str(tmp_path / "c.sqlite")])
        == 0
    )
    assert "its old rows answer for http://box:8000/v1" in capsys.readouterr().out
    assert (
        main(["cache", "claim", "openai-compatible:policy@http://other:8000/v1", "--cache", str(tmp_path / "c.sqlite")])
        == 0
    )
    assert "they answer for neither" in capsys.readouterr().out
    assert main(["cache", "info", "--cache", str(tmp_path / "c.sqlite")]) == 0
    assert "openai-compatible:policy: old rows answer for no endpoint" in capsys.readouterr().out
    assert main(["cache", "claim", "local:smollm2-135m-instruct", "--cache", str(tmp_path / "c.sqlite")]) == 2
