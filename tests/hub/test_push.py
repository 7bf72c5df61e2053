"""The real upload code (huggingface_hub's HfApi: create_repo, create_branch, create_commit with preupload,
LFS batch/PUT/verify and the NDJSON commit) against a loopback Hub; what the Hub received is checked."""

from __future__ import annotations

import io
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from huggingface_hub import DatasetCard

from charter.cli import main
from charter.errors import GateFailed, HubError, SecretFound
from charter.hub.push import publish

from .conftest import TOKEN


def test_push_uploads_every_file_with_the_card(make_run, fake_hub, tmp_path: Path) -> None:
    run = make_run()
    publish(run, "org/tiny", dry_run=tmp_path / "dry")
    result = publish(run, "org/tiny")

    assert fake_hub.repos["org/tiny"]["type"] == "dataset" and "visibility" not in fake_hub.repos["org/tiny"]
    (commit,) = fake_hub.commits
    assert (commit.repo_id, commit.revision) == ("org/tiny", "main")
    assert result.commit == commit.oid and result.url.endswith(f"/datasets/org/tiny/commit/{commit.oid}")
    dry_files = sorted(p.relative_to(tmp_path / "dry").as_posix() for p in (tmp_path / "dry").rglob("*") if p.is_file())
    assert sorted(commit.files) == dry_files == result.files, "dry run writes exactly what is uploaded"
    assert sorted(commit.lfs_paths) == [f for f in dry_files if f.endswith(".parquet")]  # parquet went through LFS
    assert commit.files["constitution.yaml"] == (run / "constitution.yaml").read_bytes()

    card = DatasetCard(commit.files["README.md"].decode())
    assert [c["config_name"] for c in card.data.to_dict()["configs"]] == ["preferences", "sft", "human_labels"]
    assert "Position inconsistency" in card.text and commit.header["summary"].startswith("charter run run-test-0001")
    train = pq.read_table(io.BytesIO(commit.files["data/preferences/train-00000-of-00001.parquet"]))
    assert train.num_rows == 10 and set(train.column("synthetic").to_pylist()) == {True}


def test_token_is_sent_as_authorization_and_nowhere_else(make_run, fake_hub) -> None:
    publish(make_run(), "org/tiny")
    authenticated = [r for r in fake_hub.requests if r.path.startswith(("/api/", "/datasets/"))]
    assert authenticated and all(r.headers.get("authorization") == f"Bearer {TOKEN}" for r in authenticated)
    uploads = [r for r in fake_hub.requests if r.path.startswith("/lfs-upload/")]
    assert uploads and all("authorization" not in r.headers for r in uploads)  # storage PUTs carry no token
    assert TOKEN.encode() not in fake_hub.all_bytes()
    assert all(TOKEN not in r.path for r in fake_hub.requests)
    for commit in fake_hub.commits:
        assert all(TOKEN.encode() not in content for content in commit.files.values())


def test_the_calls_are_the_hub_upload_protocol(make_run, fake_hub) -> None:
    publish(make_run(), "org/tiny", revision="v1", private=True)
    paths = fake_hub.paths()
    assert paths[:3] == ["/api/repos/create", "/api/datasets/org/tiny/branch/v1", "/api/validate-yaml"]
    assert "/api/datasets/org/tiny/preupload/v1" in paths and "/datasets/org/tiny.git/info/lfs/objects/batch" in paths
    assert paths[-1] == "/api/datasets/org/tiny/commit/v1"
    assert fake_hub.repos["org/tiny"]["visibility"] == "private" and fake_hub.branches == [("org/tiny", "v1")]
    assert sum(p.startswith("/lfs-verify/") for p in paths) == 4


def test_pushing_again_reuses_the_repo(make_run, fake_hub) -> None:
    run = make_run()
    publish(run, "org/tiny")
    publish(run, "org/tiny")  # the Hub answers 409 to the second create; exist_ok goes on
    assert len(fake_hub.commits) == 2 and len(fake_hub.repos) == 1


def test_cli_push(make_run, fake_hub, capsys: pytest.CaptureFixture) -> None:
    assert main(["push", str(make_run()), "--repo-id", "org/cli"]) == 0
    out = capsys.readouterr().out
    assert "pushed 8 files to org/cli" in out and "preferences: train 10, test 2" in out


def test_failing_gate_blocks_push_and_override_is_recorded(make_run, fake_hub) -> None:
    run = make_run(human_labels=10, agreement={"min_kappa": 0.5, "bootstrap_samples": 100})
    with pytest.raises(GateFailed, match="pass --override-gate"):
        publish(run, "org/gated")
    assert fake_hub.requests == [], "nothing reaches the Hub when the gate fails"
    assert main(["push", str(run), "--repo-id", "org/gated", "--override-gate"]) == 0
    card = fake_hub.commits[0].files["README.md"].decode()
    assert "**FAILED and overridden**" in card and "Cohen's kappa" in card


def test_planted_key_blocks_push_before_any_request(make_run, fake_hub) -> None:
    planted = "AKIA" + "Z" * 15 + "7"

    with pytest.raises(SecretFound, match="column 'chosen'") as caught:
        publish(make_run(responses={5: f"my key is {planted}"}), "org/tiny")
    assert planted not in str(caught.value) and fake_hub.requests == []


def test_the_token_itself_in_the_data_is_refused(make_run, fake_hub, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", "short-token-without-a-known-shape")

    with pytest.raises(SecretFound, match=r"value of \$HF_TOKEN"):
        publish(make_run(responses={0: "token: short-token-without-a-known-shape"}), "org/tiny")


def test_no_token_is_a_clear_error(make_run, fake_hub, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from huggingface_hub import constants

    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(tmp_path / "no-tokens"), raising=False)
    with pytest.raises(HubError, match="HF_TOKEN"):
        publish(make_run(), "org/tiny")


def test_hub_errors_are_one_line_and_never_show_the_token(make_run, fake_hub, monkeypatch) -> None:
    from huggingface_hub import HfApi

    original = HfApi.create_commit

    def fail(self, repo_id, operations, **kwargs):  # the Hub 404s: the repo is unknown to it
        return original(self, "org/unknown", operations, **kwargs)

    monkeypatch.setattr(HfApi, "create_commit", fail)
    with pytest.raises(HubError) as caught:
        publish(make_run(), "org/tiny")
    message = str(caught.value)
    assert message.startswith("upload to org/tiny failed:") and "\n" not in message and TOKEN not in message


def test_load_preferences_reads_a_pushed_repo_back(
    make_run, fake_hub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from charter.hub.export import load_preferences

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    publish(make_run(), "org/tiny")
    before = len(fake_hub.requests)
    loaded = load_preferences("org/tiny", cache_dir=tmp_path / "datasets-cache")
    assert sorted(loaded) == ["test", "train"] and loaded["train"].num_rows == 10
    assert set(loaded["train"]["synthetic"]) == {True} and loaded["train"][0]["chosen"][0]["role"] == "assistant"
    downloaded = {
        r.path.split("/resolve/")[1].split("/", 1)[1]
        for r in fake_hub.requests[before:]
        if r.method == "GET" and "/resolve/" in r.path
    }
    assert downloaded == {
        "README.md",
        "data/preferences/train-00000-of-00001.parquet",
        "data/preferences/test-00000-of-00001.parquet",
    }, "only the card and the preferences"
