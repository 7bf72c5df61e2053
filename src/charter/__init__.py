"""charter: Constitutional AI and RLAIF from a YAML constitution.

The public API is imported lazily (PEP 562) so that `import charter` stays fast and optional extras stay
optional. `_API` is its one table (name -> the module that defines it): the imports type checkers see and `__all__`
are written from it, and tests/test_package_face.py fails when they are out of step. No public name is also the
name of a subpackage: importing a subpackage sets the package attribute of the same name, which would replace the
function (tests/test_architecture.py checks).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from charter._version import __version__

#: The public API: name -> the module that defines it (the one table of the package face).
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
    "estimate": "charter.pipeline.api",
    "RunConfig": "charter.pipeline.config",
    "load_run_config": "charter.pipeline.config",
    "critique_chains": "charter.pipeline.api",
    "judge_pairs": "charter.pipeline.api",
    "build_preferences": "charter.pipeline.api",
    "spotcheck": "charter.agreement.api",
    "agreement_report": "charter.agreement.api",
    "audit_judge": "charter.agreement.audit.running",
    "ppi_mean": "charter.stats.ppi",
    "Estimate": "charter.stats.ppi",
    "train_reward_model": "charter.reward_model.train",
    "train_dpo": "charter.dpo.train",
    "reward_function": "charter.online.reward",
    "train_online": "charter.online.train",
    "train_online_dpo": "charter.online.dpo",
    "winrate": "charter.evals.winrate",
    "arena": "charter.evals.arena",
    "ArenaConfig": "charter.evals.arena",
    "evaluate_rm": "charter.evals.rm_eval",
    "RmEvalConfig": "charter.evals.rm_eval",
    "WinRateCallback": "charter.evals.callback",
    "publish": "charter.hub.push",
    "load_preferences": "charter.hub.load",
    "mix": "charter.hub.mix",
    "mix_plan": "charter.hub.mixplan",
    "mix_from_plan": "charter.hub.mixbuild",
    "mix_probe": "charter.hub.mixprobe",
    "iterate": "charter.loop.run",
    "synthesize": "charter.synth.api",
    "infer_constitution": "charter.lab.api",
    "check_constitution": "charter.lab.api",
    "learn_rubrics": "charter.lab.api",
    "status": "charter.pipeline.status",
    "diversity": "charter.preference.diversity",
    # the config and result types of the functions' signatures
    "PromptsConfig": "charter.prompts",
    "Provenance": "charter.records",
    "ChatModel": "charter.providers",
    "ManagedModel": "charter.providers",
    "Limits": "charter.providers",
    "CallCache": "charter.providers",
    "UsageMeter": "charter.providers",
    "Budget": "charter.providers.usage",
    "Price": "charter.providers.usage",
    "RoleConfig": "charter.providers.config",
    "RunResult": "charter.pipeline.run",
    "JudgeSettings": "charter.judge.settings",
    "FiltersConfig": "charter.preference.config",
    "PreferenceCounts": "charter.pipeline.api",
    "AgreementConfig": "charter.agreement.config",
    "SpotSample": "charter.runs.labels",
    "AgreementSummary": "charter.agreement.summary",
    "AuditPair": "charter.agreement.audit.running",
    "AuditReport": "charter.agreement.audit.report",
    "RewardModelConfig": "charter.reward_model.config",
    "RewardModelMetrics": "charter.reward_model.train",
    "DPOConfigModel": "charter.dpo.config",
    "DPOMetrics": "charter.dpo.train",
    "OnlineConfig": "charter.online.config",
    "OnlineMetrics": "charter.online.metrics",
    "OnlineDPOConfig": "charter.online.config",
    "OnlineDPOMetrics": "charter.online.metrics",
    "RewardFunction": "charter.online.reward",
    "WinrateConfig": "charter.evals.config",
    "WinrateSummary": "charter.evals.winrate",
    "PublishResult": "charter.hub.push",
    "MixedRow": "charter.hub.mix",
    "MixtureManifest": "charter.hub.mixplan",
    "ProbeResult": "charter.hub.mixprobe",
    "LoopConfig": "charter.loop.config",
    "LoopResult": "charter.loop.run",
    "SynthConfig": "charter.synth.config",
    "SynthResult": "charter.synth.generate",
    "Inferred": "charter.lab.infer",
    "ConstitutionTest": "charter.lab.checks",
    "StatusReport": "charter.pipeline.status",
    "Forecast": "charter.pipeline.forecast",
    "DiversityReport": "charter.preference.diversity",
}


# Written from _API by tests/test_package_face.py (`python tests/test_package_face.py`); do not edit.
if TYPE_CHECKING:  # what type checkers and IDEs see: every public name with its signature
    from charter.agreement.api import agreement_report, spotcheck
    from charter.agreement.audit.report import AuditReport
    from charter.agreement.audit.running import AuditPair, audit_judge
    from charter.agreement.config import AgreementConfig
    from charter.agreement.summary import AgreementSummary
    from charter.constitutions import Constitution, import_hf_cai, load_constitution
    from charter.dpo.config import DPOConfigModel
    from charter.dpo.train import DPOMetrics, train_dpo
    from charter.evals.arena import ArenaConfig, arena
    from charter.evals.callback import WinRateCallback
    from charter.evals.config import WinrateConfig
    from charter.evals.rm_eval import RmEvalConfig, evaluate_rm
    from charter.evals.winrate import WinrateSummary, winrate
    from charter.hub.load import load_preferences
    from charter.hub.mix import MixedRow, mix
    from charter.hub.mixbuild import mix_from_plan
    from charter.hub.mixplan import MixtureManifest, mix_plan
    from charter.hub.mixprobe import ProbeResult, mix_probe
    from charter.hub.push import PublishResult, publish
    from charter.judge.settings import JudgeSettings
    from charter.lab.api import check_constitution, infer_constitution, learn_rubrics
    from charter.lab.checks import ConstitutionTest
    from charter.lab.infer import Inferred
    from charter.loop.config import LoopConfig
    from charter.loop.run import LoopResult, iterate
    from charter.online.config import OnlineConfig, OnlineDPOConfig
    from charter.online.dpo import train_online_dpo
    from charter.online.metrics import OnlineDPOMetrics, OnlineMetrics
    from charter.online.reward import RewardFunction, reward_function
    from charter.online.train import train_online
    from charter.pipeline.api import PreferenceCounts, build_preferences, critique_chains, estimate, judge_pairs, run
    from charter.pipeline.config import RunConfig, load_run_config
    from charter.pipeline.forecast import Forecast
    from charter.pipeline.run import RunResult
    from charter.pipeline.status import StatusReport, status
    from charter.preference.config import FiltersConfig
    from charter.preference.diversity import DiversityReport, diversity
    from charter.prompts import PromptsConfig
    from charter.providers import CallCache, ChatModel, Limits, ManagedModel, SamplingParams, UsageMeter, get_model
    from charter.providers.config import RoleConfig
    from charter.providers.usage import Budget, Price
    from charter.records import Chain, Judgment, Message, Pair, PreferenceRow, Provenance
    from charter.reward_model.config import RewardModelConfig
    from charter.reward_model.train import RewardModelMetrics, train_reward_model
    from charter.runs.labels import SpotSample
    from charter.stats.ppi import Estimate, ppi_mean
    from charter.synth.api import synthesize
    from charter.synth.config import SynthConfig
    from charter.synth.generate import SynthResult

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
    "estimate",
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
    "train_online_dpo",
    "winrate",
    "arena",
    "ArenaConfig",
    "evaluate_rm",
    "RmEvalConfig",
    "WinRateCallback",
    "publish",
    "load_preferences",
    "mix",
    "mix_plan",
    "mix_from_plan",
    "mix_probe",
    "iterate",
    "synthesize",
    "infer_constitution",
    "check_constitution",
    "learn_rubrics",
    "status",
    "diversity",
    "PromptsConfig",
    "Provenance",
    "ChatModel",
    "ManagedModel",
    "Limits",
    "CallCache",
    "UsageMeter",
    "Budget",
    "Price",
    "RoleConfig",
    "RunResult",
    "JudgeSettings",
    "FiltersConfig",
    "PreferenceCounts",
    "AgreementConfig",
    "SpotSample",
    "AgreementSummary",
    "AuditPair",
    "AuditReport",
    "RewardModelConfig",
    "RewardModelMetrics",
    "DPOConfigModel",
    "DPOMetrics",
    "OnlineConfig",
    "OnlineMetrics",
    "OnlineDPOConfig",
    "OnlineDPOMetrics",
    "RewardFunction",
    "WinrateConfig",
    "WinrateSummary",
    "PublishResult",
    "MixedRow",
    "MixtureManifest",
    "ProbeResult",
    "LoopConfig",
    "LoopResult",
    "SynthConfig",
    "SynthResult",
    "Inferred",
    "ConstitutionTest",
    "StatusReport",
    "Forecast",
    "DiversityReport",
]
# End of the written part.


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'charter' has no attribute {name!r}")
