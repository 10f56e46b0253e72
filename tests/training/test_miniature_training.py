"""Training the miniature models: deterministic, cached once per settings, and an interrupted run leaves nothing."""
from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
from safetensors.torch import load_file

from diffclf_lite.training import miniature as T


def test_training_is_deterministic_and_cached(miniature_folder, tmp_path) -> None:
    again = T.train_miniature(tmp_path / "again", T.MINIATURE_SMOKE, progress=False)
    for part in ("sd/unet/diffusion_pytorch_model.safetensors", "sd/vae/diffusion_pytorch_model.safetensors",
                 "clip/model.safetensors"):
        a, b = load_file(miniature_folder / part), load_file(again / part)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    info = json.loads((miniature_folder / "training.json").read_text())
    assert len(info["losses"]["unet"]) == T.MINIATURE_SMOKE.unet_steps and info["scaling_factor"] > 0
    assert T.miniature_models(T.MINIATURE_SMOKE, root=miniature_folder.parent, progress=False) == miniature_folder
    other = replace(T.MINIATURE_SMOKE, seed=1)
    assert T.miniature_path(other, miniature_folder.parent) != miniature_folder


def test_an_interrupted_run_leaves_no_folder(tmp_path, monkeypatch) -> None:
    def fail(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(T.world, "training_set", fail)
    with pytest.raises(KeyboardInterrupt):
        T.miniature_models(T.MINIATURE_SMOKE, root=tmp_path, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        T.MiniatureConfig(unet_steps=0)
