import pytest

from tests.support.tiny_models import preference_rows, tiny_llama, write_jsonl


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    return tiny_llama(tmp_path_factory.mktemp("tiny") / "llama")


@pytest.fixture
def prefs_file(tmp_path):
    return write_jsonl(tmp_path / "prefs.jsonl", preference_rows(24))


@pytest.fixture(autouse=True)
def _quiet_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-datasets"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
