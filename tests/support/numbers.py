"""Malformed numbers, as a careless user writes them, for the property tests of every entry point that takes one.

Each is given in the spelling of the place it arrives in: YAML text (a constitution, a config, a `--set` value),
JSON text (a request body, a dataset column) or a Python value (an API argument)."""

from __future__ import annotations

import math
from typing import Any

from hypothesis import strategies as st

#: YAML spellings of a value that is not a finite number: NaN and infinities as YAML writes them, as text, numbers
#: past a float's range (`1e400` is text to YAML 1.1, a number to pydantic), and booleans (read as 1 and 0).
YAML_SPELLINGS = [".nan", ".NaN", ".NAN", ".inf", ".Inf", "+.inf", "-.inf", "-.Inf", "NaN", "nan", "Infinity",
                  "-Infinity", "inf", "'NaN'", '"nan"', '"inf"', '"-Infinity"', "1e400", "-1e400", "1.0e+400",
                  '"1e400"', "true", "false", "True", "yes", "on"]  # fmt: skip


def yaml_not_finite() -> st.SearchStrategy[str]:
    """YAML text for a value that is not a finite number."""
    exponents = st.integers(min_value=309, max_value=5000)
    past_range = st.builds(lambda m, e, sign: f"{sign}{m}e{e}", st.integers(1, 9), exponents, st.sampled_from("-+"))
    return st.sampled_from(YAML_SPELLINGS) | past_range


def json_not_finite() -> st.SearchStrategy[str]:
    """JSON text (as Python's parser takes it) for a value that is not a finite number."""
    spelled = st.sampled_from(["NaN", "Infinity", "-Infinity", '"NaN"', '"nan"', '"inf"', '"-Infinity"', '"1e400"',
                               "true", "false", "1e400", "-1e400", "1.5e+999"])  # fmt: skip
    past_range = st.integers(min_value=309, max_value=5000).map(lambda e: f"1e{e}")
    return spelled | past_range


def python_not_finite() -> st.SearchStrategy[Any]:
    """A Python value an API argument may be given that is not a finite number."""
    return st.sampled_from([math.nan, math.inf, -math.inf, float("-nan"), True, False, "NaN", "0.5", "1e400"])


def huge_weights() -> st.SearchStrategy[float]:
    """Finite weights too large to sum safely (two at 1e308 overflow), either sign."""
    big = st.floats(min_value=1e6, max_value=1.7976931348623157e308, exclude_min=True)
    return st.one_of(big, big.map(lambda w: -w))


def usable_weights() -> st.SearchStrategy[float]:
    """Weights a checklist takes: finite, not 0, |w| at most 1e6 (subnormals included)."""
    magnitude = st.floats(min_value=5e-324, max_value=1e6)
    return st.one_of(magnitude, magnitude.map(lambda w: -w))
