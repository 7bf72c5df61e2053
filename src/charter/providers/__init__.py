"""Model providers behind one async interface, with limits, a call cache and usage accounting."""

from charter.providers.base import ChatModel, ChoiceProbs, Completion, Limits, Messages, SamplingParams
from charter.providers.cache import CallCache
from charter.providers.managed import ManagedModel
from charter.providers.registry import Provider, create_backend, get_model, parse_model_string, register_provider
from charter.providers.scripted import ScriptedModel, register_script
from charter.providers.usage import Budget, Price, UsageMeter

__all__ = [
    "Budget",
    "CallCache",
    "ChatModel",
    "ChoiceProbs",
    "Completion",
    "Limits",
    "ManagedModel",
    "Messages",
    "Price",
    "Provider",
    "SamplingParams",
    "ScriptedModel",
    "UsageMeter",
    "create_backend",
    "get_model",
    "parse_model_string",
    "register_provider",
    "register_script",
]
