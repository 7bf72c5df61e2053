"""Run under torchrun: `python -m tests.support.ddp_train DPO_CONFIG REWARD_CONFIG DIGESTS`.

Trains a DPO policy, then a reward model, in the same process group, and writes a digest of each rank's
weights before and after training to DIGESTS/{kind}-rank{N}-{begin,end}.txt, so a test can check that the
ranks trained in step (DDP averages the gradients; a rank that trained alone would end elsewhere)."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

from transformers import TrainerCallback

from charter.dpo.train import train_dpo
from charter.reward_model.train import train_reward_model
from charter.yamlio import load_model


def weights_digest(model) -> str:
    """sha256 over the names and float32 bytes of every tensor in the state dict, in name order."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()


class Digest(TrainerCallback):
    def __init__(self, folder: Path, kind: str):
        self.folder, self.kind = folder, kind

    def _write(self, args, model, when: str) -> None:
        (self.folder / f"{self.kind}-rank{args.process_index}-{when}.txt").write_text(weights_digest(model))

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self._write(args, model, "begin")

    def on_train_end(self, args, state, control, model=None, **kwargs):
        self._write(args, model, "end")


def main(dpo_config: str, reward_config: str, digests: str) -> None:
    from charter.dpo.config import DPOConfigModel
    from charter.reward_model.config import RewardModelConfig

    folder = Path(digests)
    folder.mkdir(parents=True, exist_ok=True)
    train_dpo(load_model(DPOConfigModel, Path(dpo_config)), callbacks=[Digest(folder, "dpo")])
    train_reward_model(load_model(RewardModelConfig, Path(reward_config)), callbacks=[Digest(folder, "reward")])


if __name__ == "__main__":
    main(*sys.argv[1:4])
