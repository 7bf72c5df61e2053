"""The logistic function and its inverse, for a number or an array: the Bradley–Terry probability of two
rewards, calibration maps, length-controlled win rates and Bradley–Terry fits all use these two. NumPy is imported
only for an array."""

from __future__ import annotations

import math
from numbers import Real
from typing import TYPE_CHECKING, overload

if TYPE_CHECKING:
    import numpy as np

#: How close to 0 or 1 a probability is taken before its logit (keeps it finite).
EPS = 1e-6


@overload
def sigmoid(x: float) -> float: ...
@overload
def sigmoid(x: np.ndarray) -> np.ndarray: ...
def sigmoid(x: float | np.ndarray) -> float | np.ndarray:
    """1 / (1 + e^-x), written so that no large |x| overflows: e^x / (1 + e^x) below 0."""
    if isinstance(x, Real):
        x = float(x)
        return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))
    import numpy as np

    x = np.asarray(x, dtype=float)
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


@overload
def logit(p: float, eps: float = EPS) -> float: ...
@overload
def logit(p: np.ndarray, eps: float = EPS) -> np.ndarray: ...
def logit(p: float | np.ndarray, eps: float = EPS) -> float | np.ndarray:
    """log(p / (1 - p)), with p first kept within [eps, 1 - eps]."""
    if isinstance(p, Real):
        q = min(max(float(p), eps), 1 - eps)
        return math.log(q / (1 - q))
    import numpy as np

    q = np.clip(np.asarray(p, dtype=float), eps, 1 - eps)
    return np.log(q / (1 - q))
