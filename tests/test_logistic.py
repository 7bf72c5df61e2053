"""One logistic function (and one logit) for numbers and arrays, and one default call-cache path."""

from __future__ import annotations

import ast
import math
from pathlib import Path

import numpy as np

import charter
from charter.logistic import logit, sigmoid
from charter.providers.cache import DEFAULT_CACHE
from charter.records import CalibrationMap

PACKAGE = Path(charter.__file__).parent


def _definitions() -> list[tuple[str, ast.AST]]:
    return [
        (str(path.relative_to(PACKAGE)), node)
        for path in sorted(PACKAGE.rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
    ]


def test_sigmoid_is_defined_once() -> None:
    found = [
        f"{where}:{node.name}"
        for where, node in _definitions()
        if isinstance(node, ast.FunctionDef) and node.name.strip("_") in {"sigmoid", "logit"}
    ]
    assert found == ["logistic.py:sigmoid", "logistic.py:sigmoid", "logistic.py:sigmoid"] + ["logistic.py:logit"] * 3


def test_the_default_call_cache_is_written_once() -> None:
    found = [where for where, node in _definitions() if isinstance(node, ast.Constant) and node.value == DEFAULT_CACHE]
    assert found == ["providers/cache.py"]


def test_a_number_and_an_array_agree_and_nothing_overflows() -> None:
    xs = np.array([-1000.0, -30.0, -1.5, 0.0, 0.25, 30.0, 1000.0])
    assert sigmoid(xs).tolist() == [sigmoid(float(x)) for x in xs]
    assert sigmoid(-1000.0) == 0.0 and sigmoid(1000.0) == 1.0 and sigmoid(0) == 0.5
    assert math.isclose(sigmoid(logit(0.8)), 0.8)
    assert math.isclose(logit(1.0), math.log((1 - 1e-6) / 1e-6)) and math.isclose(logit(np.array([1.0]))[0], logit(1.0))


def test_a_calibration_map_maps_as_before() -> None:
    platt = CalibrationMap(method="platt", judge_fingerprint="f", slope=0.5, intercept=-0.25)
    z = math.log(0.9 / 0.1)
    assert platt.apply(0.9) == 1.0 / (1.0 + math.exp(-(0.5 * z - 0.25)))
    temperature = CalibrationMap(method="temperature", judge_fingerprint="f", temperature=2.0)
    assert temperature.apply(0.1) == math.exp(-z / 2) / (1.0 + math.exp(-z / 2))
