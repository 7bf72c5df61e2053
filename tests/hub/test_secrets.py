"""The secret scan: patterns, redaction, locations in parquet rows, config and card; config stripping."""

from __future__ import annotations

from pathlib import Path

import pytest

from charter.errors import SecretFound
from charter.hub.push import publish, refuse_secrets, scan_folder
from charter.redaction import find_in_text, preview, redact, strip_secrets

OPENAI = "sk-proj-" + "Ab3dEf6hIj9kLm2nOp5qRs8t"
ANTHROPIC = "sk-ant-api03-" + "Zz9Yy8Xx7Ww6Vv5Uu4Tt3Ss2"
SAMPLES = {
    "Anthropic API key": f"key={ANTHROPIC}",
    "OpenAI API key": f"use {OPENAI} here",
    "Hugging Face token": "hf_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7",
    "AWS access key id": "AKIA" + "IOSFODNN7EXAMPL3",
    "GitHub token": "ghp_" + "x" * 30 + "123456",
    "bearer token": "Authorization: Bearer " + "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig",
    "Stripe key": "stripe.api_key = '" + "sk_" + "live_" + "4eC39HqLyjWDarjtT1zdp7dc" + "'",
    "AWS secret access key": "aws_secret_access_key = " + "wJalrXUtnFEMI/K7MDENG/bPxRfiCY" + "EXAMPLEKEY",
    "Google API key": "key=" + "AIza" + "SyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY",
    "Slack token": "token: " + "xoxb-" + "123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
    "Slack webhook": "https://hooks.slack.com/services/" + "T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX",
    "PEM private key": "-----BEGIN " + "RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA...",
}


@pytest.mark.parametrize("kind", sorted(SAMPLES))
def test_each_pattern_is_found_and_named(kind: str) -> None:
    found = list(find_in_text(SAMPLES[kind], {}))
    assert [k for k, _ in found] == [kind]


@pytest.mark.parametrize(
    "text",
    [
        "sk-learn-is-a-great-library-for-ml",
        "the bearer of bad news arrived today",
        "max_tokens: 256",
        "hf_hub_download(repo_id)",
        "AKIA lowercase akiaiosfodnn7example",
        "aws region us-east-1 and a 40-letter word: " + "x" * 40,
        "xoxo, see you",
        "-----BEGIN PUBLIC KEY-----",
    ],
)
def test_ordinary_text_is_not_a_secret(text: str) -> None:
    assert list(find_in_text(text, {})) == []


def test_literal_environment_values_are_found(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "plain-looking-value-42")
    (tmp_path / "notes.md").write_text("line one\nkey is plain-looking-value-42\n")
    (finding,) = scan_folder(tmp_path)
    assert (finding.file, finding.where, finding.kind) == ("notes.md", "line 2", "value of $OPENAI_API_KEY")
    assert "plain-looking-value-42" not in str(finding)


def test_the_aws_secret_is_named_without_its_context() -> None:
    secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCY" + "EXAMPLEKEY"
    [(kind, found)] = list(find_in_text(f'AWS_SECRET_ACCESS_KEY="{secret}"', {}))
    assert (kind, found) == ("AWS secret access key", secret)
    assert secret not in redact(f"export AWS_SECRET_ACCESS_KEY={secret}")


def test_redaction_keeps_no_more_than_a_short_prefix() -> None:
    shown = preview(OPENAI)
    assert OPENAI not in shown and OPENAI[8:] not in shown and str(len(OPENAI)) in shown


def test_strip_secrets_drops_secret_keys_only() -> None:
    config = {
        "max_tokens": 5,
        "api_key_env": "OPENAI_API_KEY",
        "provider": {"api_key": "x", "hf_token": "y"},
        "headers": [{"Authorization": "Bearer z"}],
        "token": None,
    }
    assert strip_secrets(config) == {
        "max_tokens": 5,
        "api_key_env": "OPENAI_API_KEY",
        "provider": {"api_key": "[stripped]", "hf_token": "[stripped]"},
        "headers": [{"Authorization": "[stripped]"}],
        "token": None,
    }


def test_planted_key_in_a_row_refuses_with_its_location(make_run, tmp_path: Path) -> None:
    run = make_run(responses={5: f"here you go: {ANTHROPIC}"})  # pair 5: a is chosen, and not labeled
    with pytest.raises(SecretFound) as caught:
        publish(run, "org/data", dry_run=tmp_path / "out")
    message = str(caught.value)
    assert "data/preferences/" in message and "column 'chosen'" in message and "Anthropic API key" in message
    assert "row " in message and ANTHROPIC not in message and ANTHROPIC[10:] not in message
    assert not (tmp_path / "out").exists(), "nothing is written when the scan refuses"


def test_key_in_a_non_secret_config_field_is_refused(make_run, tmp_path: Path) -> None:
    run = make_run(config_extra={"notes": f"remember {OPENAI}"})
    with pytest.raises(SecretFound, match=r"run_config.yaml line \d+: OpenAI API key") as caught:
        publish(run, "org/data", dry_run=tmp_path / "out")
    assert OPENAI not in str(caught.value)


def test_a_named_key_is_never_published(make_run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A key read from the variable a role names (no known shape, so only its value can find it) is refused in the
    rows, even by a process that never used it."""
    key = "vendor-" + "Tz4Wq8Lm1Xc6Rb3Np"
    monkeypatch.setenv("VENDOR_TOKEN_VAR", key)
    run = make_run(
        responses={5: f"the key is {key}"},
        config_extra={"judge": {"model": "scripted:cai", "api_key_env": "VENDOR_TOKEN_VAR"}},
    )
    with pytest.raises(SecretFound) as caught:
        publish(run, "org/data", dry_run=tmp_path / "out")
    assert "column 'chosen'" in str(caught.value) and key not in str(caught.value)


def test_key_reaching_the_card_is_refused(make_run, tmp_path: Path) -> None:
    run = make_run()
    text = (run / "constitution.yaml").read_text().replace("A two-principle", f"Ask {OPENAI} - a two-principle")
    (run / "constitution.yaml").write_text(text)
    with pytest.raises(SecretFound) as caught:
        publish(run, "org/data", dry_run=tmp_path / "out")
    message = str(caught.value)
    assert message.startswith("refusing to publish: a secret was found in README.md line")
    assert "also in constitution.yaml" in message and OPENAI not in message


def test_refuse_secrets_passes_a_clean_folder(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("nothing to see\n")
    refuse_secrets(tmp_path)
