# DPO tests use the same tiny model, preference file and offline cache settings as the reward-model tests.
from tests.reward_model.conftest import _quiet_cache, prefs_file, tiny_model  # noqa: F401
