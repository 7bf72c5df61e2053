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
    keep = ("prompt", "chosen", "rejected")
    return [{**{k: r[k] for k in keep}, "label_smoothing": row_smoothing(p)} for r, p in zip(rows, ps)]


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


def test_train_dpo_with_per_row_soft_labels(tmp_path: Path, tiny_model: Path, prefs_file: Path) -> None:
    from charter.dpo.train import train_dpo
    from tests.dpo.test_train import FAST

    trained = []

    class Spy(SoftLabelDPOTrainer):
        def _compute_loss(self, model, inputs, return_outputs):  # noqa: ANN001, ANN202
            trained.append(inputs.get("label_smoothing"))
            return super()._compute_loss(model, inputs, return_outputs)

    import charter.dpo.soft

    original = charter.dpo.soft.SoftLabelDPOTrainer
    charter.dpo.soft.SoftLabelDPOTrainer = Spy  # type: ignore[misc] - to see what the trainer gets
    try:
        metrics = train_dpo({"dataset": str(prefs_file), "model": str(tiny_model), "output_dir": str(tmp_path / "o"),
                             "loss_type": "robust", "label_smoothing": "per_row", "eval_fraction": 0.25,
                             "probe_pairs": 4, "trl": FAST})  # fmt: skip
    finally:
        charter.dpo.soft.SoftLabelDPOTrainer = original  # type: ignore[misc]
    assert metrics["training"]["global_step"] == 2
    rows = [t for t in trained if t is not None]
    assert rows and all(0 < float(x) < 0.49 for t in rows for x in t)  # each row's own 1 - p_chosen
    assert len({round(float(x), 4) for t in rows for x in t}) > 1


def test_per_row_needs_p_chosen_on_every_row(tmp_path: Path) -> None:
    from charter.dpo.config import DPOConfigModel
    from charter.dpo.train import add_row_smoothing
    from charter.errors import DatasetError

    config = DPOConfigModel(dataset="x.jsonl", loss_type="robust", label_smoothing="per_row", use_calibrated=True)
    rows = [{}, {}]
    add_row_smoothing(config, [{"p_chosen": 0.9, "p_chosen_calibrated": 0.7}, {"p_chosen": 0.8}], rows)
    assert rows[0]["label_smoothing"] == pytest.approx(0.3) and rows[1]["label_smoothing"] == pytest.approx(0.2)
    with pytest.raises(DatasetError, match="row 1: label_smoothing: per_row needs p_chosen"):
        add_row_smoothing(config, [{"p_chosen": 0.9}, {}], [{}, {}])
