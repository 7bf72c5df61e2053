from tests.online.conftest import _offline, tiny_model  # noqa: F401 - the online tests' tiny policy, offline
