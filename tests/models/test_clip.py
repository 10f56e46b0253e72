"""The CLIP adapter: ensembling maths and the offline stand-in's loading path, preprocessing and errors."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import TEMPLATES
from diffclf_lite.data.datasets import ImageDataset, synthetic_shapes
from diffclf_lite.data.prompts import class_prompts
from diffclf_lite.models.clip import CLIPClassifier, build_tiny_clip, ensemble_embeddings
from diffclf_lite.runs.evaluate_clip import evaluate_clip


# ---- template ensembling (Radford et al. §3.1.4) ----
def test_ensembling_averages_unit_embeddings_and_renormalises():
    e = torch.tensor([[3.0, 0.0], [0.0, 0.5], [1.0, 1.0]])  # prompts 0, 1 -> class 0; prompt 2 -> class 1
    out = ensemble_embeddings(e, [0, 0, 1], 2)
    torch.testing.assert_close(out, torch.tensor([[1.0, 1.0], [1.0, 1.0]]) / 2 ** 0.5)  # lengths do not weigh in
    assert not torch.allclose(ensemble_embeddings(e, [0, 0, 1], 2)[0], torch.nn.functional.normalize(e[:2].mean(0), dim=0))


def test_one_template_per_class_is_plain_zero_shot():
    g = torch.Generator().manual_seed(0)
    e = torch.randn(5, 7, generator=g)
    torch.testing.assert_close(ensemble_embeddings(e, range(5), 5), e / e.norm(dim=1, keepdim=True))
    perm = [3, 0, 4, 1, 2]  # prompts in any order: each class gets its own prompt's unit vector
    torch.testing.assert_close(ensemble_embeddings(e, perm, 5)[perm], e / e.norm(dim=1, keepdim=True))


def test_ensembling_rejects_bad_input():
    with pytest.raises(ValueError, match="no prompt"):
        ensemble_embeddings(torch.randn(2, 3), [0, 0], 2)
    with pytest.raises(ValueError, match="one embedding row per prompt"):
        ensemble_embeddings(torch.randn(3, 3), [0, 1], 2)
    with pytest.raises(ValueError, match="must lie in"):
        ensemble_embeddings(torch.randn(2, 3), [0, 2], 2)


# ---- the tiny stand-in, loaded through from_pretrained ----
def test_tiny_clip_round_trips_through_save_and_from_pretrained(clip_folder, clip, tmp_path):
    from transformers import CLIPModel

    assert {"config.json", "model.safetensors", "processor_config.json"} <= {p.name for p in clip_folder.iterdir()}
    assert json.loads((clip_folder / "config.json").read_text())["architectures"] == ["CLIPModel"]
    again = CLIPClassifier.from_pretrained(build_tiny_clip(tmp_path / "again"), device="cpu")  # same seed: same weights
    for (k, a), (_, b) in zip(clip.model.state_dict().items(), again.model.state_dict().items()):
        assert torch.equal(a, b), k
    ids = clip.tokenizer("a photo of a cat").input_ids
    assert clip.tokenizer.decode(ids, skip_special_tokens=True).strip() == "a photo of a cat"
    raw = CLIPModel.from_pretrained(clip_folder).eval()  # the embeddings are the model's projected features, unit norm
    img = [synthetic_shapes(1, 40)[0][0]]
    with torch.inference_mode():
        direct = raw.get_image_features(pixel_values=clip.processor(images=img, return_tensors="pt").pixel_values)
    direct = direct if isinstance(direct, torch.Tensor) else direct.pooler_output
    torch.testing.assert_close(clip.embed_images(img), direct / direct.norm(dim=-1, keepdim=True), atol=1e-5, rtol=1e-5)


def test_similarity_with_one_template_equals_plain_cosine_and_ensembling_matches_by_hand(clip, shapes):
    images = [shapes[i][0] for i in range(3)]
    single = class_prompts(shapes.classes, "a photo of a {}.")
    cos = clip.embed_images(images) @ clip.embed_text(list(single.prompts)).T
    torch.testing.assert_close(clip.similarity(images, single), cos)
    many = class_prompts(shapes.classes, TEMPLATES)
    text = clip.embed_text(list(many.prompts)).view(3, len(TEMPLATES), -1).mean(1)  # prompts are grouped by class
    torch.testing.assert_close(clip.similarity(images, many), clip.embed_images(images) @ (text / text.norm(dim=-1, keepdim=True)).T)
    assert clip.embed_text(["a", "b c"]).norm(dim=-1).sub(1).abs().max() < 1e-5


@pytest.mark.parametrize("mode", ["1", "L", "LA", "P", "RGBA", "CMYK", "I;16", "I", "F"])
def test_any_pil_mode_is_preprocessed(clip, mode):
    grey = np.random.default_rng(0).integers(0, 256, (30, 50)).astype(np.float64)
    img = {"I;16": lambda: Image.fromarray((grey * 257).astype(np.uint16)), "F": lambda: Image.fromarray((grey / 255).astype(np.float32)),
           "I": lambda: Image.fromarray(grey.astype(np.int32))}.get(mode, lambda: Image.fromarray(grey.astype(np.uint8)).convert(mode))()
    assert img.mode == mode
    x = clip.preprocess(img)
    assert x.shape == (1, 3, 32, 32) and torch.isfinite(x).all() and x.std() > 0.01


def test_bad_input_gets_clear_errors(clip, clip_folder, tmp_path, shapes):
    with pytest.raises(ValueError, match="non-empty list of non-empty strings"):
        clip.embed_text([])
    with pytest.raises(ValueError, match="non-empty list of non-empty strings"):
        clip.embed_text(["a photo", "  "])
    with pytest.raises(ValueError, match="PIL image"):
        clip.embed_images([42])
    with pytest.raises(ValueError, match="non-empty list of images"):
        clip.embed_images([])
    with pytest.raises(ValueError, match="class names must be non-empty"):
        class_prompts([], TEMPLATES)  # an empty class list never reaches the model
    with pytest.raises(ValueError, match="PromptSet"):
        evaluate_clip(clip, shapes, ["a photo of a circle."], progress=False)
    with pytest.raises(ValueError, match="empty"):
        evaluate_clip(clip, ImageDataset("none", shapes.classes, shapes.get, 0), class_prompts(shapes.classes), progress=False)
    with pytest.raises(ValueError, match="outside the 2 classes"):
        evaluate_clip(clip, shapes, class_prompts(shapes.classes[:2]), progress=False)
    with pytest.raises(ValueError, match="openai/clip-vit-large-patch14"):
        CLIPClassifier.from_pretrained(tmp_path / "nothing-here", local_files_only=True)
    with pytest.raises(ValueError, match="fp16, bf16, fp32"):
        CLIPClassifier.from_pretrained(clip_folder, device="cpu", dtype="int8")
    with pytest.raises(ValueError, match="has none|CUDA GPU"):
        CLIPClassifier.from_pretrained(clip_folder, device=f"cuda:{torch.cuda.device_count()}")  # one past the last
