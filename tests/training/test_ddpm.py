"""DDPM training of the class-conditional UNet is deterministic under a seed."""
from __future__ import annotations

import torch

from diffclf_lite.training import TrainConfig, train

TINY = dict(steps=3, batch_size=4, preset="tiny", warmup_steps=1)


def _data(n: int = 24, size: int = 16, classes: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.rand(n, 1, size, size, generator=g) * 2 - 1, torch.arange(n) % classes


def test_training_is_deterministic_under_a_seed() -> None:
    x, y = _data()
    a, b = (train(x, y, TrainConfig(**TINY, seed=7), progress=False) for _ in range(2))
    c = train(x, y, TrainConfig(**TINY, seed=8), progress=False)
    sa, sb, sc = a.model.state_dict(), b.model.state_dict(), c.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa) and a.losses == b.losses
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)
    assert len(a.losses) == 3 and all(l > 0 for l in a.losses)
