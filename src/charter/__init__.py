"""charter: Constitutional AI and RLAIF from a YAML constitution.

The public API is imported lazily (PEP 562) so that `import charter` stays fast and optional extras stay
optional. `_API` is its one list (name -> the module that defines it): `__all__` and `__getattr__` read it, and the
imports type checkers see (each `X as X`, a re-export) are written from it by tests/test_package_face.py. No public
name is also the name of a subpackage: importing a subpackage sets the package attribute of the same name, which
would replace the function (tests/test_architecture.py checks).
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
    "ToolCall": "charter.records",
    "Trajectory": "charter.records",
    "load_constitution": "charter.constitutions",
    "Constitution": "charter.constitutions",
    "import_hf_cai": "charter.constitutions",
    "import_constitution": "charter.constitutions",
    "import_spec": "charter.lab.api",
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
    "audit_judge": "charter.agreement.audit",
    "ppi_mean": "charter.stats.ppi",
    "Estimate": "charter.stats.ppi",
    "train_reward_model": "charter.reward_model.train",
    "train_dpo": "charter.dpo.train",
    "reward_function": "charter.reward.function",
    "train_online": "charter.online.train",
    "train_online_dpo": "charter.online.dpo",
    "winrate": "charter.evals.winrate",
    "arena": "charter.evals.arena",
    "ArenaConfig": "charter.evals.arena",
    "evaluate_rm": "charter.evals.rm",
    "evaluate_spec": "charter.evals.spec",
    "RmEvalConfig": "charter.evals.rm",
    "SpecEvalConfig": "charter.evals.spec",
    "WinRateCallback": "charter.evals.callback",
    "GoldMonitor": "charter.monitor.callback",
    "publish": "charter.hub.push",
    "load_preferences": "charter.hub.export",
    "mix": "charter.mixing.mix",
    "mix_plan": "charter.mixing.plan",
    "mix_from_plan": "charter.mixing.build",
    "mix_probe": "charter.mixing.probe",
    "iterate": "charter.loop.run",
    "synthesize": "charter.synth.api",
    "infer_constitution": "charter.lab.api",
    "check_constitution": "charter.lab.api",
    "learn_rubrics": "charter.lab.api",
    "status": "charter.pipeline.status.record",
    "diversity": "charter.preference.diversity",
    "judge_trajectory": "charter.preference.steps",
    "step_preferences": "charter.preference.steps",
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
    "StepJudgment": "charter.judge.steps",
    "RevisedTrajectory": "charter.preference.steps",
    "StepPreferenceRow": "charter.preference.steps",
    "Environment": "charter.preference.steps",
    "ToolEnvironment": "charter.preference.steps",
    "FiltersConfig": "charter.preference.config",
    "PreferenceCounts": "charter.pipeline.api",
    "AgreementConfig": "charter.agreement.config",
    "SpotSample": "charter.runs.labels",
    "AgreementSummary": "charter.agreement.summary",
    "AuditPair": "charter.agreement.audit",
    "AuditReport": "charter.agreement.audit",
    "RewardModelConfig": "charter.reward_model.config",
    "RewardModelMetrics": "charter.reward_model.train",
    "DPOConfigModel": "charter.dpo.config",
    "DPOMetrics": "charter.dpo.train",
    "OnlineConfig": "charter.online.config",
    "OnlineMetrics": "charter.online.metrics",
    "OnlineDPOConfig": "charter.online.config",
    "OnlineDPOMetrics": "charter.online.metrics",
    "MonitorConfig": "charter.monitor.gold",
    "MonitorSummary": "charter.monitor.gold",
    "RewardFunction": "charter.reward.function",
    "WinrateConfig": "charter.evals.winrate",
    "WinrateSummary": "charter.evals.winrate",
    "PublishResult": "charter.hub.push",
    "MixedRow": "charter.mixing.mix",
    "MixtureManifest": "charter.mixing.plan",
    "ProbeResult": "charter.mixing.probe",
    "LoopConfig": "charter.loop.config",
    "LoopResult": "charter.loop.run",
    "SynthConfig": "charter.synth.config",
    "SynthResult": "charter.synth.generate",
    "Inferred": "charter.lab.infer",
    "ConstitutionTest": "charter.lab.checks",
    "StatusReport": "charter.pipeline.status.record",
    "Forecast": "charter.pipeline.forecast.estimate",
    "DiversityReport": "charter.preference.diversity",
}


__all__ = ["__version__", *_API]  # pyright: ignore[reportUnsupportedDunderAll] - read from the one list


# Written from _API by tests/test_package_face.py (`python tests/test_package_face.py`); do not edit.
if TYPE_CHECKING:  # what type checkers and IDEs see: every public name with its signature
    from charter.agreement.api import agreement_report as agreement_report
    from charter.agreement.api import spotcheck as spotcheck
    from charter.agreement.audit import AuditPair as AuditPair
    from charter.agreement.audit import AuditReport as AuditReport
    from charter.agreement.audit import audit_judge as audit_judge
    from charter.agreement.config import AgreementConfig as AgreementConfig
    from charter.agreement.summary import AgreementSummary as AgreementSummary
    from charter.constitutions import Constitution as Constitution
    from charter.constitutions import import_constitution as import_constitution
    from charter.constitutions import import_hf_cai as import_hf_cai
    from charter.constitutions import load_constitution as load_constitution
    from charter.dpo.config import DPOConfigModel as DPOConfigModel
    from charter.dpo.train import DPOMetrics as DPOMetrics
    from charter.dpo.train import train_dpo as train_dpo
    from charter.evals.arena import ArenaConfig as ArenaConfig
    from charter.evals.arena import arena as arena
    from charter.evals.callback import WinRateCallback as WinRateCallback
    from charter.evals.rm import RmEvalConfig as RmEvalConfig
    from charter.evals.rm import evaluate_rm as evaluate_rm
    from charter.evals.spec import SpecEvalConfig as SpecEvalConfig
    from charter.evals.spec import evaluate_spec as evaluate_spec
    from charter.evals.winrate import WinrateConfig as WinrateConfig
    from charter.evals.winrate import WinrateSummary as WinrateSummary
    from charter.evals.winrate import winrate as winrate
    from charter.hub.export import load_preferences as load_preferences
    from charter.hub.push import PublishResult as PublishResult
    from charter.hub.push import publish as publish
    from charter.judge.settings import JudgeSettings as JudgeSettings
    from charter.judge.steps import StepJudgment as StepJudgment
    from charter.lab.api import check_constitution as check_constitution
    from charter.lab.api import import_spec as import_spec
    from charter.lab.api import infer_constitution as infer_constitution
    from charter.lab.api import learn_rubrics as learn_rubrics
    from charter.lab.checks import ConstitutionTest as ConstitutionTest
    from charter.lab.infer import Inferred as Inferred
    from charter.loop.config import LoopConfig as LoopConfig
    from charter.loop.run import LoopResult as LoopResult
    from charter.loop.run import iterate as iterate
    from charter.mixing.build import mix_from_plan as mix_from_plan
    from charter.mixing.mix import MixedRow as MixedRow
    from charter.mixing.mix import mix as mix
    from charter.mixing.plan import MixtureManifest as MixtureManifest
    from charter.mixing.plan import mix_plan as mix_plan
    from charter.mixing.probe import ProbeResult as ProbeResult
    from charter.mixing.probe import mix_probe as mix_probe
    from charter.monitor.callback import GoldMonitor as GoldMonitor
    from charter.monitor.gold import MonitorConfig as MonitorConfig
    from charter.monitor.gold import MonitorSummary as MonitorSummary
    from charter.online.config import OnlineConfig as OnlineConfig
    from charter.online.config import OnlineDPOConfig as OnlineDPOConfig
    from charter.online.dpo import train_online_dpo as train_online_dpo
    from charter.online.metrics import OnlineDPOMetrics as OnlineDPOMetrics
    from charter.online.metrics import OnlineMetrics as OnlineMetrics
    from charter.online.train import train_online as train_online
    from charter.pipeline.api import PreferenceCounts as PreferenceCounts
    from charter.pipeline.api import build_preferences as build_preferences
    from charter.pipeline.api import critique_chains as critique_chains
    from charter.pipeline.api import estimate as estimate
    from charter.pipeline.api import judge_pairs as judge_pairs
    from charter.pipeline.api import run as run
    from charter.pipeline.config import RunConfig as RunConfig
    from charter.pipeline.config import load_run_config as load_run_config
    from charter.pipeline.forecast.estimate import Forecast as Forecast
    from charter.pipeline.run import RunResult as RunResult
    from charter.pipeline.status.record import StatusReport as StatusReport
    from charter.pipeline.status.record import status as status
    from charter.preference.config import FiltersConfig as FiltersConfig
    from charter.preference.diversity import DiversityReport as DiversityReport
    from charter.preference.diversity import diversity as diversity
    from charter.preference.steps import Environment as Environment
    from charter.preference.steps import RevisedTrajectory as RevisedTrajectory
    from charter.preference.steps import StepPreferenceRow as StepPreferenceRow
    from charter.preference.steps import ToolEnvironment as ToolEnvironment
    from charter.preference.steps import judge_trajectory as judge_trajectory
    from charter.preference.steps import step_preferences as step_preferences
    from charter.prompts import PromptsConfig as PromptsConfig
    from charter.providers import CallCache as CallCache
    from charter.providers import ChatModel as ChatModel
    from charter.providers import Limits as Limits
    from charter.providers import ManagedModel as ManagedModel
    from charter.providers import SamplingParams as SamplingParams
    from charter.providers import UsageMeter as UsageMeter
    from charter.providers import get_model as get_model
    from charter.providers.config import RoleConfig as RoleConfig
    from charter.providers.usage import Budget as Budget
    from charter.providers.usage import Price as Price
    from charter.records import Chain as Chain
    from charter.records import Judgment as Judgment
    from charter.records import Message as Message
    from charter.records import Pair as Pair
    from charter.records import PreferenceRow as PreferenceRow
    from charter.records import Provenance as Provenance
    from charter.records import ToolCall as ToolCall
    from charter.records import Trajectory as Trajectory
    from charter.reward.function import RewardFunction as RewardFunction
    from charter.reward.function import reward_function as reward_function
    from charter.reward_model.config import RewardModelConfig as RewardModelConfig
    from charter.reward_model.train import RewardModelMetrics as RewardModelMetrics
    from charter.reward_model.train import train_reward_model as train_reward_model
    from charter.runs.labels import SpotSample as SpotSample
    from charter.stats.ppi import Estimate as Estimate
    from charter.stats.ppi import ppi_mean as ppi_mean
    from charter.synth.api import synthesize as synthesize
    from charter.synth.config import SynthConfig as SynthConfig
    from charter.synth.generate import SynthResult as SynthResult
# End of the written part.


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'charter' has no attribute {name!r}")
