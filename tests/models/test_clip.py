"""CLIP zero-shot baseline and Winoground scoring: ensembling maths, the offline stand-in's loading path, records
that line up with the diffusion classifier's, and the text/image/group scores on matrices with known answers."""
from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch
from PIL import Image

import diffclf_lite as dc
from diffclf_lite.clip import CLIPClassifier, build_tiny_clip, compare, ensemble_embeddings, evaluate_clip
from diffclf_lite.datasets import ImageDataset, synthetic_shapes
from diffclf_lite.evaluate import Evaluation, evaluate
from diffclf_lite.prompts import class_prompts
from diffclf_lite.sd import StableDiffusion, build_tiny_sd
from diffclf_lite.winoground import (WinogroundExample, clip_scores, diffusion_scores, group_correct, image_correct,
                                     load_winoground, synthetic_winoground, text_correct, winoground_scores)

TEMPLATES = ["a photo of a {}.", "a drawing of a {}.", "a {} on a plain background."]


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory):
    return build_tiny_clip(tmp_path_factory.mktemp("clip") / "tiny")


@pytest.fixture(scope="module")
def clip(clip_folder):
    return CLIPClassifier.from_pretrained(clip_folder, device="cpu", dtype="fp32")


@pytest.fixture(scope="module")
def shapes():
    return synthetic_shapes(n_per_class=2, size=48, seed=0)


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


# ---- results line up with the diffusion classifier's ----
@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory):
    return StableDiffusion.from_pretrained(build_tiny_sd(tmp_path_factory.mktemp("sd") / "tiny"), device="cpu", dtype="fp32")


def test_clip_records_line_up_with_the_diffusion_records(clip, tiny_sd, shapes):
    prompts = class_prompts(shapes.classes, TEMPLATES)
    ev_clip = evaluate_clip(clip, shapes, prompts, batch_size=4, progress=False)
    ev_diff = evaluate(tiny_sd, shapes, prompts, dc.Exhaustive(2), progress=False)
    assert isinstance(ev_clip, Evaluation) and ev_clip.class_names == ev_diff.class_names and ev_clip.prompts == ev_diff.prompts
    assert [set(r) for r in ev_clip.records] == [set(r) for r in ev_diff.records]  # the same fields, image by image
    assert [r["index"] for r in ev_clip.records] == [r["index"] for r in ev_diff.records]
    sim = clip.similarity([im for im, _ in shapes], prompts)
    assert [r["prediction"] for r in ev_clip.records] == sim.argmax(1).tolist()  # argmin of 1 - cos = argmax of cos
    torch.testing.assert_close(torch.tensor([r["class_errors"] for r in ev_clip.records]), 1 - sim, atol=1e-5, rtol=0)
    assert ev_clip.mean_nfe == 1 and ev_clip.confusion().sum() == len(shapes) and list(ev_clip.table().columns) == list(ev_diff.table().columns)
    table = compare({"diffusion": ev_diff, "CLIP": ev_clip})
    assert table["images"].tolist() == [6, 6] and table["NFE / image"].tolist() == [3 * len(TEMPLATES) * 2, 1]
    assert table.loc[1, "accuracy"] == pytest.approx(100 * ev_clip.accuracy)
    assert table.loc[1, "agreement with first"] == pytest.approx(100 * np.mean(
        [a["prediction"] == b["prediction"] for a, b in zip(ev_clip.records, ev_diff.records)]))


def _ev(indices, labels, preds, classes=("a", "b")):
    recs = [{"index": i, "label": y, "prediction": p, "correct": y == p, "nfe": 1, "seconds": 0.1, "class_errors": [0, 0]}
            for i, y, p in zip(indices, labels, preds)]
    return Evaluation(recs, list(classes), ["x", "y"])


def test_compare_keeps_the_common_images_and_refuses_mismatches():
    full, early = _ev([0, 1, 2, 3], [0, 1, 0, 1], [0, 1, 1, 1]), _ev([0, 1], [0, 1], [1, 1])  # `early` hit a time budget
    table = compare({"full": full, "early": early})
    assert table["images"].tolist() == [2, 2] and table["accuracy"].tolist() == [100.0, 50.0]
    assert table["agreement with first"].tolist() == [100.0, 50.0]
    with pytest.raises(ValueError, match="different class lists"):
        compare({"a": full, "b": _ev([0], [0], [0], classes=("a", "c"))})
    with pytest.raises(ValueError, match="different labels"):
        compare({"a": full, "b": _ev([0], [1], [0])})
    with pytest.raises(ValueError, match="share no image"):
        compare({"a": full, "b": _ev([9], [0], [0])})
    with pytest.raises(ValueError, match="at least one"):
        compare({})


# ---- Winoground scores (Thrush et al. 2022 §3.2): S[caption, image] ----
@pytest.mark.parametrize("matrix,text,image", [
    ([[1.0, 0.0], [0.0, 1.0]], True, True),  # each caption with its image: all correct
    ([[0.0, 1.0], [1.0, 0.0]], False, False),  # swapped
    ([[1.0, 0.5], [0.0, 0.2]], False, True),  # image 1 prefers caption 0, but each caption prefers its image
    ([[0.5, 0.9], [0.1, 1.0]], True, False),  # each image prefers its caption, but caption 0 prefers image 1
    ([[1.0, 0.0], [1.0, 1.0]], False, False),  # a tie counts as a failure
])
def test_scores_on_hand_made_matrices(matrix, text, image):
    assert text_correct(matrix).tolist() == [text] and image_correct(matrix).tolist() == [image]
    assert group_correct(matrix).tolist() == [text and image]


def test_scores_match_the_papers_definitions_and_chance_levels():
    s = torch.randn(30000, 2, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ref = [(d["c0i0"] > d["c1i0"] and d["c1i1"] > d["c0i1"], d["c0i0"] > d["c0i1"] and d["c1i1"] > d["c1i0"])
           for d in ({f"c{c}i{i}": float(m[c, i]) for c, i in itertools.product((0, 1), (0, 1))} for m in s[:500])]
    assert text_correct(s[:500]).tolist() == [r[0] for r in ref] and image_correct(s[:500]).tolist() == [r[1] for r in ref]
    table = winoground_scores(s)  # exchangeable scores: chance is 1/4, 1/4 and 1/6 (Thrush et al.)
    se = 100 * np.sqrt(0.25 * 0.75 / len(s))
    assert abs(table.loc["all", "text"] - 25) < 4 * se and abs(table.loc["all", "image"] - 25) < 4 * se
    assert abs(table.loc["all", "group"] - 100 / 6) < 4 * se


def test_score_table_by_tag_and_bad_input():
    good, bad = [[1.0, 0.0], [0.0, 1.0]], [[0.0, 1.0], [1.0, 0.0]]
    table = winoground_scores([good, good, bad, good], ["Object", "Relation", "Relation", "Both"])
    assert table.index.tolist() == ["all", "Object", "Relation", "Both"] and table["examples"].tolist() == [4, 1, 2, 1]
    assert table["text"].tolist() == [75.0, 100.0, 50.0, 100.0] and table["group"].tolist() == [75.0, 100.0, 50.0, 100.0]
    with pytest.raises(ValueError, match=r"\(N, 2, 2\)"):
        text_correct(torch.zeros(3, 2, 3))
    with pytest.raises(ValueError, match="NaN"):
        image_correct([[float("nan"), 0], [0, 1]])
    with pytest.raises(ValueError, match="one tag per example"):
        winoground_scores([good], ["Object", "Both"])


# ---- Winoground data and the two models' score matrices ----
def test_synthetic_set_is_in_the_hub_layout_and_loads_back(tmp_path):
    folder = synthetic_winoground(tmp_path / "w", n_examples=4, size=32)
    assert (folder / "data" / "examples.jsonl").is_file() and (folder / "data" / "images.zip").is_file()
    examples = load_winoground(folder)
    assert [e.id for e in examples] == [0, 1, 2, 3] and [e.tag for e in examples] == ["Object", "Relation"] * 2
    for e in examples:
        assert sorted(e.captions[0].split()) == sorted(e.captions[1].split()) and e.captions[0] != e.captions[1]
        a, b = e.images
        assert a.size == b.size == (32, 32) and np.asarray(a).tolist() != np.asarray(b).tolist()
    with pytest.raises(ValueError, match="examples.jsonl and images.zip"):
        load_winoground(tmp_path)
    jsonl = folder / "data" / "examples.jsonl"
    lines = jsonl.read_text().splitlines()
    jsonl.write_text("\n".join(lines + [lines[0].replace('"ex_0_img_1"', '"ex_99_img_1"')]))
    with pytest.raises(ValueError, match="missing, e.g. \\['ex_99_img_1'\\]"):
        load_winoground(folder)
    jsonl.write_text('{"id": 0, "image_0": "ex_0_img_0", "caption_0": "a"}\n')
    with pytest.raises(ValueError, match="lacks \\['image_1', 'caption_1'\\]"):
        load_winoground(folder)


def test_a_loose_images_folder_with_a_missing_file_fails_at_load_time(tmp_path):
    import zipfile

    folder = synthetic_winoground(tmp_path / "w", n_examples=2, size=32) / "data"
    with zipfile.ZipFile(folder / "images.zip") as zf:  # the same set, unpacked into images/<name>.png
        zf.extractall(folder / "unpacked")
    (folder / "images.zip").unlink()
    pngs = sorted((folder / "unpacked").rglob("*.png"))
    (folder / "images").mkdir()
    for png in pngs:
        png.rename(folder / "images" / png.name)
    assert len(load_winoground(folder.parent)) == 2
    (folder / "images" / pngs[-1].name).unlink()
    with pytest.raises(ValueError, match=f"missing, e.g. \\['{pngs[-1].stem}'\\]"):
        load_winoground(folder.parent)


def test_diffusion_scores_of_no_examples_is_a_clear_error():
    with pytest.raises(ValueError, match="no Winoground examples"):
        diffusion_scores(object(), [])


def test_hub_failure_explains_the_licence_and_login(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ValueError, match="accept the licence.*huggingface-cli login"):
        load_winoground("facebook/winoground", cache_dir=tmp_path)


class MatchingModel:
    """A text-conditional eps-model that knows each caption's image exactly: eps_hat is the true noise when the
    caption matches the image and is off otherwise, so the matching caption's error is 0."""

    def __init__(self, refs: dict[str, torch.Tensor]) -> None:
        self.refs, self.device = refs, torch.device("cpu")
        self.alphas_cumprod = dc.alphas_cumprod_from_betas(dc.beta_schedule("linear", 1000))

    def set_prompts(self, prompts):
        self.num_conditions, self._ref = len(prompts), torch.stack([self.refs[p] for p in prompts])

    def encode(self, images):
        return torch.stack([torch.as_tensor(im, dtype=torch.float64) for im in images])

    def eps(self, x_t, t, cond_index):
        abar = self.alphas_cumprod[t][:, None]
        return (x_t - abar.sqrt() * self._ref[cond_index]) / (1 - abar).sqrt()


def test_diffusion_scores_are_minus_errors_with_the_known_answer():
    g = torch.Generator().manual_seed(0)
    refs = {f"caption {k}": torch.randn(6, generator=g, dtype=torch.float64) for k in range(6)}
    examples = [WinogroundExample(k, (f"caption {2 * k}", f"caption {2 * k + 1}"), "Object",
                                  lambda k=k: (refs[f"caption {2 * k}"], refs[f"caption {2 * k + 1}"])) for k in range(3)]
    s = diffusion_scores(MatchingModel(refs), examples, n_timesteps=5, examples_per_call=2, batch_size=7)
    assert s.shape == (3, 2, 2)
    torch.testing.assert_close(s[:, [0, 1], [0, 1]], torch.zeros(3, 2, dtype=torch.float64))  # matching: error 0
    assert (s[:, [0, 1], [1, 0]] < 0).all() and group_correct(s).all()
    budget = diffusion_scores(MatchingModel(refs), examples, n_timesteps=5, examples_per_call=2, max_seconds=0)
    torch.testing.assert_close(budget, s[:2])  # a spent time budget stops after the first chunk of examples
    with pytest.raises(ValueError, match="set_prompts"):
        diffusion_scores(dc.GaussianMixture.random(2, 6, seed=0), examples)


def test_diffusion_scores_share_one_plan_across_images_and_match_classify(tiny_sd, tmp_path):
    examples = load_winoground(synthetic_winoground(tmp_path / "w", n_examples=3, size=64))
    s = diffusion_scores(tiny_sd, examples, n_timesteps=4, examples_per_call=2, seed=3)
    for k, e in enumerate(examples):
        tiny_sd.set_prompts(list(e.captions))
        r = dc.classify(tiny_sd, list(e.images), dc.Exhaustive(4), seed=3)  # one plan for both images
        torch.testing.assert_close(s[k], -r.mean_errors.T, atol=1e-6, rtol=1e-6)


def test_clip_scores_are_cosines(clip, tmp_path):
    examples = load_winoground(synthetic_winoground(tmp_path / "w", n_examples=3, size=40))
    s = clip_scores(clip, examples)
    e = examples[1]
    expected = clip.embed_text(list(e.captions)) @ clip.embed_images(list(e.images)).T  # [caption, image]
    torch.testing.assert_close(s[1], expected.double(), atol=1e-6, rtol=0)
    assert s.abs().max() <= 1 + 1e-6


def test_unreadable_images_and_time_budget_are_recorded_like_evaluate(clip, shapes):
    from diffclf_lite.datasets import UnreadableImage

    def get(i):
        if i == 2:
            raise UnreadableImage("broken.png: cannot be decoded", label=shapes[i][1])
        return shapes[i]

    ev = evaluate_clip(clip, ImageDataset("broken", shapes.classes, get, len(shapes)), class_prompts(shapes.classes),
                       batch_size=4, progress=False)
    assert [r["index"] for r in ev.records] == list(range(6)) and "error" in ev.records[2] and "prediction" not in ev.records[2]
    assert compare({"clip": ev})["images"].tolist() == [5]  # the unreadable image is left out of the accuracy
    early = evaluate_clip(clip, shapes, class_prompts(shapes.classes), batch_size=4, progress=False, max_seconds=0)
    assert len(early.records) == 4 and early.settings["stopped_early"]
