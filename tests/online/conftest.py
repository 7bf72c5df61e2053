import pytest

from tests.support.tiny_models import tiny_llama


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    return tiny_llama(tmp_path_factory.mktemp("tiny") / "llama")


@pytest.fixture(autouse=True)
def _offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-datasets"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
