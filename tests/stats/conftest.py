from tests.pipeline.conftest import make_config  # noqa: F401  (the run-config fixture)
