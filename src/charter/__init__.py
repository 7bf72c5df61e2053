"""charter: Constitutional AI and RLAIF from a YAML constitution.

The public API is imported lazily (PEP 562) so that `import charter` stays fast and optional extras stay
optional. No public name is also the name of a subpackage: importing a subpackage sets the package
attribute of the same name, which would replace the function (tests/test_api.py checks).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from charter._version import __version__

#: public name -> module that defines it
_API = {
    "Chain": "charter.records",
    "Pair": "charter.records",
    "Judgment": "charter.records",
    "PreferenceRow": "charter.records",
    "Message": "charter.records",
    "load_constitution": "charter.constitutions",
    "Constitution": "charter.constitutions",
    "import_hf_cai": "charter.constitutions",
    "get_model": "charter.providers",
    "SamplingParams": "charter.providers",
    "run": "charter.pipeline.api",
    "RunConfig": "charter.pipeline.config",
    "load_run_config": "charter.pipeline.config",
    "critique_chains": "charter.pipeline.api",
    "judge_pairs": "charter.pipeline.api",
    "build_preferences": "charter.pipeline.api",
    "spotcheck": "charter.agreement.api",
    "agreement_report": "charter.agreement.api",
    "audit_judge": "charter.agreement.audit.api",
    "ppi_mean": "charter.stats.ppi",
    "Estimate": "charter.stats.ppi",
    "train_reward_model": "charter.reward_model.train",
    "train_dpo": "charter.dpo.train",
    "reward_function": "charter.online.reward",
    "train_online": "charter.online.train",
    "winrate": "charter.evals.winrate",
    "publish": "charter.hub.push",
    "load_preferences": "charter.hub.load",
    "mix": "charter.hub.mix",
    "iterate": "charter.loop.run",
    "synthesize": "charter.synth.api",
    "infer_constitution": "charter.lab.api",
    "check_constitution": "charter.lab.api",
}

if TYPE_CHECKING:  # what type checkers and IDEs see: every public name with its signature
    from charter.agreement.api import agreement_report, spotcheck
    from charter.agreement.audit.api import audit_judge
    from charter.constitutions import Constitution, import_hf_cai, load_constitution
    from charter.dpo.train import train_dpo
    from charter.evals.winrate import winrate
    from charter.hub.load import load_preferences
    from charter.hub.mix import mix
    from charter.hub.push import publish
    from charter.lab.api import check_constitution, infer_constitution
    from charter.loop.run import iterate
    from charter.online.reward import reward_function
    from charter.online.train import train_online
    from charter.pipeline.api import build_preferences, critique_chains, judge_pairs, run
    from charter.pipeline.config import RunConfig, load_run_config
    from charter.providers import SamplingParams, get_model
    from charter.records import Chain, Judgment, Message, Pair, PreferenceRow
    from charter.reward_model.train import train_reward_model
    from charter.stats.ppi import Estimate, ppi_mean
    from charter.synth.api import synthesize

__all__ = [
    "__version__",
    "Chain",
    "Pair",
    "Judgment",
    "PreferenceRow",
    "Message",
    "load_constitution",
    "Constitution",
    "import_hf_cai",
    "get_model",
    "SamplingParams",
    "run",
    "RunConfig",
    "load_run_config",
    "critique_chains",
    "judge_pairs",
    "build_preferences",
    "spotcheck",
    "agreement_report",
    "audit_judge",
    "ppi_mean",
    "Estimate",
    "train_reward_model",
    "train_dpo",
    "reward_function",
    "train_online",
    "winrate",
    "publish",
    "load_preferences",
    "mix",
    "iterate",
    "synthesize",
    "infer_constitution",
    "check_constitution",
]


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'charter' has no attribute {name!r}")
