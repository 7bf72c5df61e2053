"""Per-row soft labels in DPO: the conservative (robust) loss with each row's 1 - p_chosen as its label smoothing."""

from pathlib import Path

import pytest

from charter.dpo.soft import SoftLabelDPOTrainer, row_smoothing


def _trainer(tmp_path: Path, rows: list[dict], smoothing: float, cls):  # noqa: ANN001, ANN202
    import datasets
    from trl import DPOConfig  # pyright: ignore[reportPrivateImportUsage] - TRL exports it lazily

    from tests.support.tiny_models import tiny_causal_lm

    model, tokenizer = tiny_causal_lm()
    reference, _ = tiny_causal_lm(seed=1)  # another model than the policy: the log-ratios are not 0
    args = DPOConfig(output_dir=str(tmp_path / "dpo"), max_steps=1, per_device_train_batch_size=4, bf16=False,
                     report_to=[], save_strategy="no", max_length=64, use_cpu=True, loss_type=["robust"],
                     label_smoothing=smoothing, precompute_ref_log_probs=False)  # fmt: skip
    return cls(model=model, ref_model=reference, args=args, train_dataset=datasets.Dataset.from_list(rows),
               processing_class=tokenizer)  # fmt: skip


def _loss(trainer) -> float:  # noqa: ANN001
    batch = next(iter(trainer.get_train_dataloader()))
    trainer.model.eval()
    return float(trainer.compute_loss(trainer.model, batch))


def _rows(ps: list[float]) -> list[dict]:
    from tests.support.tiny_models import preference_rows

    rows = preference_rows(len(ps))
    return [{"prompt": r["prompt"], "chosen": r["chosen"], "rejected": r["rejected"], "label_smoothing": row_smoothing(p)}
            for r, p in zip(rows, ps)]  # fmt: skip


def test_the_same_p_everywhere_is_trls_global_robust_loss(tmp_path: Path) -> None:
    from trl import DPOTrainer  # pyright: ignore[reportPrivateImportUsage] - TRL exports it lazily

    rows = _rows([0.8] * 4)
    soft = _loss(_trainer(tmp_path, rows, 0.0, SoftLabelDPOTrainer))
    plain = [{k: v for k, v in r.items() if k != "label_smoothing"} for r in rows]
    hard = _loss(_trainer(tmp_path, plain, 0.0, DPOTrainer))
    cdpo = _loss(_trainer(tmp_path, plain, 0.2, DPOTrainer))
    assert soft == pytest.approx(cdpo, rel=1e-5)
    assert soft != pytest.approx(hard, rel=1e-3)  # the smoothing changes the loss


def test_rows_with_other_p_weigh_otherwise(tmp_path: Path) -> None:
    mixed = _loss(_trainer(tmp_path, _rows([0.95, 0.6, 0.8, 0.7]), 0.0, SoftLabelDPOTrainer))
    same = _loss(_trainer(tmp_path, _rows([0.8] * 4), 0.0, SoftLabelDPOTrainer))
    assert mixed != pytest.approx(same, rel=1e-4)


def test_row_smoothing_is_within_the_robust_losss_range() -> None:
    assert row_smoothing(0.75) == pytest.approx(0.25)
    assert row_smoothing(0.2) == 0.49 and row_smoothing(1.2) == 0.0
