from tests.serve.conftest import start  # noqa: F401 - `charter serve reward` in a process of its own
