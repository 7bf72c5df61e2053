"""Soft labels in DPO: the conservative (cDPO) and robust losses with each row's 1 - p_chosen as its label smoothing."""

from pathlib import Path

import pytest

from charter.dpo.soft import SoftLabelDPOTrainer, row_smoothing


def _trainer(tmp_path: Path, rows: list[dict], smoothing: float, cls, loss: str = "robust"):  # noqa: ANN001, ANN202
    import datasets
    from trl import DPOConfig  # pyright: ignore[reportPrivateImportUsage] - TRL exports it lazily

    from tests.support.tiny_models import tiny_causal_lm

    model, tokenizer = tiny_causal_lm()
    reference, _ = tiny_causal_lm(seed=1)  # another model than the policy: the log-ratios are not 0
    args = DPOConfig(output_dir=str(tmp_path / "dpo"), max_steps=1, per_device_train_batch_size=4, bf16=False,
                     report_to=[], save_strategy="no", max_length=64, use_cpu=True, loss_type=[loss],
                     label_smoothing=smoothing, precompute_ref_log_probs=False)  # fmt: skip
    return cls(model=model, ref_model=reference, args=args, train_dataset=datasets.Dataset.from_list(rows),
               processing_class=tokenizer)  # fmt: skip


def _loss(trainer) -> float:  # noqa: ANN001
    batch = next(iter(trainer.get_train_dataloader()))
    trainer.model.eval()
    return float(trainer.compute_loss(trainer.model, batch))


def _margin(trainer) -> float:  # noqa: ANN001
    """The batch's mean DPO reward margin beta * delta, as TRL logged it for the last loss."""
    return trainer._metrics["eval"]["rewards/margins"][-1]  # _loss runs the model in eval mode


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


def test_conservative_per_row_at_one_p_is_the_cdpo_formula(tmp_path: Path) -> None:
    """cDPO, -(1 - e) log s(m) - e log s(-m) with m = beta * delta, is the DPO loss plus e * m (log s(m) - log s(-m)
    is m); checked against TRL's own hard loss and its logged margin, per row and global alike."""
    from trl import DPOTrainer  # pyright: ignore[reportPrivateImportUsage] - TRL exports it lazily

    rows = _rows([0.8] * 4)
    plain = [{k: v for k, v in r.items() if k != "label_smoothing"} for r in rows]
    hard_trainer = _trainer(tmp_path, plain, 0.0, DPOTrainer, loss="sigmoid")
    hard = _loss(hard_trainer)
    margin = _margin(hard_trainer)
    per_row = _loss(_trainer(tmp_path, rows, 0.0, SoftLabelDPOTrainer, loss="sigmoid"))
    global_ = _loss(_trainer(tmp_path, plain, 0.2, SoftLabelDPOTrainer, loss="sigmoid"))
    assert abs(margin) > 1e-3  # policy and reference differ, so the smoothing term is not zero
    assert per_row == pytest.approx(hard + 0.2 * margin, rel=1e-5)
    assert global_ == pytest.approx(per_row, rel=1e-6)


def test_conservative_as_robust_is_exact_algebra() -> None:
    import torch
    import torch.nn.functional as F

    from charter.dpo.soft import conservative_as_robust

    delta = torch.linspace(-40, 40, 81, dtype=torch.float64)
    for e in (0.0, 0.05, 0.3, 0.49):
        cdpo = -(1 - e) * F.logsigmoid(delta) - e * F.logsigmoid(-delta)
        r = conservative_as_robust(e)  # TRL 1.16's robust branch, at r
        robust = (-(1 - r) * F.logsigmoid(delta) + r * F.logsigmoid(-delta)) / (1 - 2 * r)
        assert torch.allclose(robust, cdpo, rtol=1e-9, atol=1e-9)


def test_a_close_call_trains_gently_in_the_conservative_loss_and_hard_in_the_robust(tmp_path: Path) -> None:
    """At p = 0.55 (smoothing e = 0.45) both losses are the hard DPO loss plus a term linear in the margin m = beta *
    delta, L = hard + k m, so at an even margin they pull with -dL/dm = 1/2 - k: the conservative loss (k = e) with
    (1 - 2e) / 2 = 0.05, the robust loss (k = -e / (1 - 2e)) with 1 / (2 (1 - 2e)) = 5, a hundred times the force
    for a near coin flip. k is read off charter's trainer against TRL's hard loss and its logged margin."""
    from trl import DPOTrainer  # pyright: ignore[reportPrivateImportUsage] - TRL exports it lazily

    e = 0.45
    rows = _rows([1 - e] * 4)
    plain = [{k: v for k, v in r.items() if k != "label_smoothing"} for r in rows]
    hard_trainer = _trainer(tmp_path, plain, 0.0, DPOTrainer, loss="sigmoid")
    hard, margin = _loss(hard_trainer), _margin(hard_trainer)
    assert abs(margin) > 1e-3  # policy and reference differ, so the term linear in the margin shows

    def pull(loss: str) -> float:
        soft = _loss(_trainer(tmp_path, rows, 0.0, SoftLabelDPOTrainer, loss=loss))
        return 0.5 - (soft - hard) / margin

    assert pull("sigmoid") == pytest.approx((1 - 2 * e) / 2, rel=1e-3)
    assert pull("robust") == pytest.approx(1 / (2 * (1 - 2 * e)), rel=1e-3)


def test_sigmoid_smoothing_is_not_shared_with_another_loss(tmp_path: Path) -> None:
    from charter.dpo.config import DPOConfigModel
    from charter.errors import ConfigError

    with pytest.raises(ConfigError, match="conservative DPO and cannot share"):
        DPOConfigModel(dataset="x.jsonl", loss_type=["sigmoid", "robust"], label_smoothing=0.1)
    with pytest.raises(ConfigError, match="per_row works with loss_type sigmoid"):
        DPOConfigModel(dataset="x.jsonl", loss_type="exo_pair", label_smoothing="per_row")
    with pytest.raises(ConfigError, match="no label-smoothing term"):
        DPOConfigModel(dataset="x.jsonl", loss_type="ipo", label_smoothing=0.1)
    assert DPOConfigModel(dataset="x.jsonl", loss_type=["sigmoid", "sft"], label_smoothing="per_row")


@pytest.mark.parametrize(
    ("loss", "written", "said"),
    [
        ("sigmoid", "0.5", "0.5 is out of range for loss_type sigmoid: it takes 0 <= smoothing < 0.5"),
        ("sigmoid", "0.7", "0.7 is out of range for loss_type sigmoid"),
        ("robust", "0.5", r"0.5 is out of range for loss_type robust: .* \(it divides by 1 - 2 \* smoothing\)"),
        ("aot", "0.6", "0.6 is out of range for loss_type aot"),
        ("exo_pair", "0.0", "loss_type exo_pair needs a label smoothing above 0"),
        ("robust", "-0.1", "-0.1 is no chance a label is wrong"),
        ("sigmoid", ".nan", "nan is no chance a label is wrong"),
        ("robust", ".inf", "inf is out of range for loss_type robust"),
    ],
)
def test_a_smoothing_outside_its_losss_range_is_one_line_before_anything_loads(
    tmp_path: Path, loss: str, written: str, said: str
) -> None:
    import charter
    from charter.errors import ConfigError

    path = tmp_path / "dpo.yaml"
    path.write_text(f"dataset: missing.jsonl\nloss_type: {loss}\nlabel_smoothing: {written}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"^{path}:3:1: label_smoothing: {said}"):
        charter.train_dpo(path)  # the dataset is not read: the config fails first
    given = {"dataset": "missing.jsonl", "loss_type": loss, "label_smoothing": float(written.lstrip("."))}
    with pytest.raises(ConfigError, match=rf"^config: label_smoothing: {said}"):
        charter.train_dpo(given)


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
    with pytest.raises(DatasetError, match="row 2: label_smoothing: per_row needs p_chosen"):
        add_row_smoothing(config, [{"p_chosen": 0.9}, {}], [{}, {}])
