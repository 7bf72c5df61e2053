"""charter: Constitutional AI and RLAIF from a YAML constitution.

The public API is imported lazily (PEP 562) so that `import charter` stays fast and optional extras stay
optional. No public name is also the name of a subpackage: importing a subpackage sets the package
attribute of the same name, which would replace the function (tests/test_api.py checks).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

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
    "audit_judge": "charter.agreement.audit",
    "train_reward_model": "charter.reward_model.train",
    "train_dpo": "charter.dpo.train",
    "winrate": "charter.dpo.winrate",
    "publish": "charter.hub.push",
    "load_preferences": "charter.hub.load",
    "mix": "charter.hub.mix",
    "iterate": "charter.loop.run",
    "synthesize": "charter.synth.api",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'charter' has no attribute {name!r}")
