"""Soft labels in offline DPO: each row's judge confidence as its own label smoothing.

A row judged with P(chosen better) = p is a label that is wrong with chance ε = 1 - p. Two losses take ε:

- **conservative** (cDPO, Mitchell 2023; TRL's `sigmoid` with `label_smoothing` before 1.0): the cross-entropy
  against the soft label, -(1 - ε) log σ(βΔ) - ε log σ(-βΔ). Its optimum is σ(βΔ) = p: a close call trains toward
  an even margin, not hard toward its label. charter's `loss_type: sigmoid` with a smoothing.
- **robust** (Chowdhury et al. 2024, TRL's `robust`): unbiased over label flips, divided by 1 - 2ε, so a close call
  pulls hardest (measured in benchmarks/RESULTS.md).

`SoftLabelDPOTrainer` takes ε per row from a `label_smoothing` column (1 - p_chosen, calibrated where present), and
equals the global loss when every row has the same p. TRL 1.16 has no conservative branch; its robust branch at
ε' = -ε / (1 - 2ε) is the conservative loss at ε exactly (both are -log σ(βΔ) plus a term linear in βΔ:
+ε βΔ for cDPO, -ε'βΔ / (1 - 2ε') for robust), so the conservative loss runs TRL's own code path.
"""

from __future__ import annotations

from typing import Any

import torch
from trl import DPOTrainer  # pyright: ignore[reportPrivateImportUsage] - TRL exports it lazily

from charter.dpo.config import SMOOTHING_READERS

#: The dataset column with each row's label smoothing (1 - p_chosen).
COLUMN = "label_smoothing"
#: The most a row's smoothing may be (the robust loss divides by 1 - 2 * smoothing).
MAX_SMOOTHING = 0.49


def row_smoothing(p_chosen: float) -> float:
    """A row's label smoothing from its P(chosen better): 1 - p, within 0..MAX_SMOOTHING."""
    return min(max(1.0 - float(p_chosen), 0.0), MAX_SMOOTHING)


def conservative_as_robust(smoothing: Any) -> Any:
    """The smoothing at which TRL's robust loss is the conservative (cDPO) loss at `smoothing`: -ε / (1 - 2ε)."""
    return -smoothing / (1 - 2 * smoothing)


class _WithSmoothing:
    """TRL's preference collator, with each example's label smoothing carried as a tensor."""

    def __init__(self, collator: Any) -> None:
        self.collator = collator

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        smoothing = [float(e.pop(COLUMN)) for e in examples] if COLUMN in examples[0] else None
        batch = self.collator(examples)
        if smoothing is not None:
            batch[COLUMN] = torch.tensor(smoothing, dtype=torch.float32)
        return batch


class SoftLabelDPOTrainer(DPOTrainer):
    """TRL's `DPOTrainer` whose label smoothing is the batch's per-row `label_smoothing` column (chosen and rejected
    of one row share it), else the config's global one; with `loss_type: sigmoid` the smoothing makes the loss
    conservative DPO (cDPO), with `robust` it is TRL's robust loss."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.data_collator = _WithSmoothing(self.data_collator)
        readers = [loss for loss in self.loss_types if loss in SMOOTHING_READERS]
        if "sigmoid" in readers and len(readers) > 1:
            raise ValueError(
                f"loss_type {', '.join(self.loss_types)}: sigmoid with a label smoothing is conservative DPO and "
                f"cannot share the smoothing with {', '.join(r for r in readers if r != 'sigmoid')}"
            )

    def _set_signature_columns_if_needed(self) -> None:
        super()._set_signature_columns_if_needed()
        if self._signature_columns is not None and COLUMN not in self._signature_columns:
            self._signature_columns = [*self._signature_columns, COLUMN]

    def _compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: Any) -> Any:
        per_row = inputs.pop(COLUMN, None)
        smoothing = per_row.to(self.accelerator.device) if per_row is not None else self.label_smoothing
        conservative = "sigmoid" in self.loss_types
        if per_row is None and not (conservative and smoothing):
            return super()._compute_loss(model, inputs, return_outputs)
        saved = (self.label_smoothing, self.loss_types)
        if conservative:
            self.loss_types = ["robust" if loss == "sigmoid" else loss for loss in self.loss_types]
            smoothing = conservative_as_robust(smoothing)
        self.label_smoothing = smoothing  # a tensor per row: TRL's loss broadcasts it
        try:
            return super()._compute_loss(model, inputs, return_outputs)
        finally:
            self.label_smoothing, self.loss_types = saved
