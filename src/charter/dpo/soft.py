"""Soft labels in offline DPO: each row's judge confidence as its own label smoothing in the conservative-DPO loss.

A row judged with P(chosen better) = p is a label that is wrong with chance 1 - p; conservative DPO (cDPO, TRL's
`robust` and `sigmoid` with `label_smoothing`) takes that chance as one number for the whole set. `SoftLabelDPOTrainer`
takes it per row from a `label_smoothing` column (1 - p_chosen, calibrated where present), and equals TRL's loss with
the global smoothing when every row has the same p.
"""

from __future__ import annotations

from typing import Any

import torch
from trl import DPOTrainer  # pyright: ignore[reportPrivateImportUsage] - TRL exports it lazily

#: The dataset column with each row's label smoothing (1 - p_chosen).
COLUMN = "label_smoothing"
#: The most a row's smoothing may be (the robust loss divides by 1 - 2 * smoothing).
MAX_SMOOTHING = 0.49


def row_smoothing(p_chosen: float) -> float:
    """A row's label smoothing from its P(chosen better): 1 - p, within 0..MAX_SMOOTHING."""
    return min(max(1.0 - float(p_chosen), 0.0), MAX_SMOOTHING)


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
    of one row share it); rows without the column train with the global `label_smoothing` of the config."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.data_collator = _WithSmoothing(self.data_collator)

    def _set_signature_columns_if_needed(self) -> None:
        super()._set_signature_columns_if_needed()
        if self._signature_columns is not None and COLUMN not in self._signature_columns:
            self._signature_columns = [*self._signature_columns, COLUMN]

    def _compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: Any) -> Any:
        smoothing = inputs.pop(COLUMN, None)
        if smoothing is None:
            return super()._compute_loss(model, inputs, return_outputs)
        global_smoothing = self.label_smoothing
        self.label_smoothing = smoothing.to(self.accelerator.device)  # per row: TRL's loss broadcasts it
        try:
            return super()._compute_loss(model, inputs, return_outputs)
        finally:
            self.label_smoothing = global_smoothing
