"""The benchmark scripts run (tiny sizes) and print their tables: they stay working between real runs."""
import importlib.util
import json
import pathlib

import pytest
import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]


def load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_pruning_benchmark_prints_every_strategy_and_writes_the_records(tmp_path, capsys):
    out_json = tmp_path / "results" / "pruning.json"
    load("pruning").main(["--problems", "gmm10", "--points", "8", "--json", str(out_json)])
    out = capsys.readouterr().out
    labels = ("exhaustive", "staged (cifar10)", "Clark & Jaini (their w_t)", "successive elimination (C&J)",
              "racing (ours)", "profiled racing (ours)", "profiled racing, zone (ours)", "Kim & Nelson, alpha 0.05",
              "confidence sequences, alpha 0.05", "confidence sequences, drawn, alpha 0.05",
              "confidence sequences, zone, in order, 0.05", "confidence sequences, one zone, alpha 0.05",
              "confidence sequences, zone, alpha 0.01",
              "confidence sequences, zone, alpha 0.05", "confidence sequences, zone, alpha 0.1")
    for label in labels:
        assert f"gmm10        0   500 {label:42s}" in out
    assert "gmm10 seed 0:" in out
    records = json.loads(out_json.read_text())
    assert [r["strategy"] for r in records] == list(labels)
    fields = {"problem", "seed", "strategy", "nfe_ratio", "accuracy_change_images", "accuracy_change_points",
              "exact_accuracy_change", "alpha", "error_rate", "recommended"}
    for r in records:
        assert fields <= set(r) and r["problem"] == "gmm10" and r["seed"] == 0
        assert isinstance(r["accuracy_change_images"], int) and isinstance(r["recommended"], bool)
        assert r["accuracy_change_points"] == 100 * r["accuracy_change_images"] / 8
        assert 0 <= r["error_rate"] <= 1 and isinstance(r["exact_accuracy_change"], float)
    assert [r["strategy"] for r in records if r["recommended"]] == ["confidence sequences, zone, alpha 0.1"]
    assert records[1]["nfe_ratio"] == 1.0 and records[1]["alpha"] is None and records[0]["error_rate"] == 0.0
    assert load("pruning").within_half_point(-5, 1000) and not load("pruning").within_half_point(-6, 1000)
    zones = [(r["delta"], r["kappa"]) for r in records if "zone" in r["strategy"] and "confidence" in r["strategy"]]
    assert zones[1][0] > 0 == zones[1][1] and all(d == 0 and k == 3.0 for d, k in zones[:1] + zones[2:]), zones


def test_pruning_benchmark_runs_only_the_strategies_asked_for(capsys):
    """--only (repeatable) keeps the baselines and the strategies whose name contains one of its values."""
    load("pruning").main(["--problems", "gmm10", "--points", "8", "--only", "zone, alpha", "--only", "Kim"])
    shown = [line[21:63].strip() for line in capsys.readouterr().out.splitlines() if line.startswith("gmm10        0")]
    assert shown == ["exhaustive", "staged (cifar10)", "Kim & Nelson, alpha 0.05",
                     "confidence sequences, one zone, alpha 0.05", "confidence sequences, zone, alpha 0.01",
                     "confidence sequences, zone, alpha 0.05", "confidence sequences, zone, alpha 0.1"]
    with pytest.raises(SystemExit):
        load("pruning").main(["--problems", "gmm10", "--points", "8", "--only", " "])
    assert "--only needs a part of a strategy name" in capsys.readouterr().err


def test_pruning_benchmark_resumes_from_its_cache(tmp_path, capsys):
    """With --cache, a rerun prints the same table and recomputes only the chunks that are missing."""
    bench = load("pruning")
    args = ["--problem", "gmm10", "--points", "8", "--grid", "20", "--chunk", "4", "--seeds", "0,1",
            "--cache", str(tmp_path)]
    bench.main(args)
    first = capsys.readouterr().out
    chunks = sorted(tmp_path.glob("*.pt"))
    assert len(chunks) == 2 * (8 + 2)  # per seed: 30 calibration points and 8 test points, 4 at a time
    chunks[0].unlink()  # as if the run had been killed before this chunk was written
    calls = []
    real = bench.dc.classify
    bench.dc.classify = lambda *a, **k: calls.append(1) or real(*a, **k)
    try:
        bench.main(args)
    finally:
        bench.dc.classify = real
    assert capsys.readouterr().out == first and len(calls) == 1 and chunks[0].is_file()
    calls.clear()  # other points are other errors: the cache must miss
    bench.dc.classify = lambda *a, **k: calls.append(1) or real(*a, **k)
    try:
        bench.main([a if a != "8" else "12" for a in args])
    finally:
        bench.dc.classify = real
    assert len(calls) == 2 * 3 and not list(tmp_path.glob(".*"))  # 12 test points per seed, 4 at a time; no leftovers


def test_pruning_benchmark_on_a_digits_checkpoint(tmp_path, capsys):
    """The digits problem runs end to end on a (barely trained) tiny checkpoint: the real model is too slow here."""
    from diffclf_lite.training import digits_checkpoint

    ckpt = digits_checkpoint(steps=2, preset="tiny", root=tmp_path, progress=False, batch_size=8)
    load("pruning").main(["--problem", "digits", "--points", "20", "--grid", "20", "--checkpoint", str(ckpt)])
    out = capsys.readouterr().out
    assert "digits       0    20 staged (cifar10)" in out and "digits       0    20 confidence sequences, zone" in out
    exhaustive = next(line for line in out.splitlines() if line.startswith("digits       0    20 exhaustive"))
    assert exhaustive.split()[8] == "200"  # 20 timesteps x 10 classes for every digit


def test_pruning_benchmark_on_the_miniature_text_model(miniature_folder, tmp_path, capsys):
    """The miniature text-conditional Stable Diffusion (barely trained here: the book's takes minutes per run) on its
    held-out digit task: every strategy replayed on one set of exhaustive errors, flat records written."""
    out_json = tmp_path / "pruning.json"
    load("pruning").main(["--problem", "miniature", "--points", "20", "--grid", "20", "--checkpoint",
                          str(miniature_folder), "--json", str(out_json)])
    out = capsys.readouterr().out
    exhaustive = next(line for line in out.splitlines() if line.startswith("miniature    0    20 exhaustive"))
    assert exhaustive.split()[8] == "200"  # 20 timesteps x 10 prompts for every image
    records = json.loads(out_json.read_text())
    assert {r["problem"] for r in records} == {"miniature"} and all(r["points"] == 20 for r in records)
    assert {"confidence sequences, zone, alpha 0.1", "Clark & Jaini (their w_t)", "staged (cifar10)"} <= {
        r["strategy"] for r in records}
    assert all(r["exact_accuracy_change"] is None for r in records)  # no known truth for a network
    assert sum(r["recommended"] for r in records) == 1


def test_pruning_benchmark_rejects_unknown_problems(capsys):
    with pytest.raises(SystemExit):
        load("pruning").main(["--problems", "gmm7"])
    assert "unknown problem(s) ['gmm7']" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        load("pruning").main(["--problem", "digits", "--grid", "10"])
    assert "--grid at least 20" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        load("pruning").main(["--problem", "gmm100", "--grid", "20"])
    assert "too coarse for gmm100's staged schedule" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        load("pruning").main(["--seeds", "0,one"])
    assert "--seeds takes comma-separated integers" in capsys.readouterr().err


def test_gpu_check_tiny_runs_every_chapter_path_from_the_shipped_configs(tmp_path):
    """--tiny: the same builders, loaders and chapter code paths as on a GPU, with shrunken configs on the CPU."""
    out = load("gpu_check").main(["--tiny", "--out", str(tmp_path / "check.json")])
    rows = {(r["chapter"], r["what"].split(",")[0].split(":")[0]): r for r in out["rows"]}
    assert set(c for c, _ in rows) == {"ch2_stable_diffusion", "ch3_class_conditional", "ch3b_alternatives",
                                       "ch4_clip_vs_diffusion"}
    assert rows[("ch2_stable_diffusion", "classify")]["nfe/image"] == 25 * 10 + 225 * 5  # the halved CIFAR-10 schedule
    assert rows[("ch3_class_conditional", "DiT classify 10 classes")]["nfe/image"] == 25 * 10 + 225 * 3
    assert rows[("ch4_clip_vs_diffusion", "OpenCLIP ViT-H/14")]["logits"] == [32, 10]
    assert all(r["s/image"] > 0 for r in out["rows"]) and json.loads((tmp_path / "check.json").read_text())["tiny"]


def test_sd_speed_counts_attention_flops_and_resets_the_compiler():
    bench = load("sd_speed")
    # SD 2 base at 64x64 latents: ~678 GFLOP without self-attention, ~804 with it (counted here, not written anywhere)
    assert 790 < bench.unet_gflop(bench.SD2_BASE_UNET, 64) < 820
    import torch

    f = torch.compile(lambda x: x * 2 + 1, backend="eager")  # no C++ toolchain needed
    bench.reset_compiler()
    f(torch.ones(3))
    assert bench.compiled_graphs() == 1
    bench.reset_compiler()
    assert bench.compiled_graphs() == 0  # a later compiled row starts from nothing, with its own recompile budget


def test_miniature_benchmark_reports_both_models_on_every_task(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DIFFCLF_CACHE", str(tmp_path / "cache"))
    miniature = load("miniature")
    out = miniature.main(["--smoke", "--images", "6", "--timesteps", "2", "--json", str(tmp_path / "m.json")])
    saved = json.loads((tmp_path / "m.json").read_text())
    assert saved["scores"] == out["scores"] and len(out["scores"]) == 6  # 3 tasks x 2 phrasings
    for row in out["scores"]:
        for model in ("diffusion", "CLIP"):
            k = round(row[f"{model}_accuracy"] * 6)
            assert abs(row[f"{model}_accuracy"] - k / 6) < 1e-12  # a fraction of the 6 images
            assert abs(row[f"{model}_se"] - (k / 6 * (1 - k / 6) / 6) ** 0.5) < 1e-12
        assert row["only_diffusion_right"] + row["only_clip_right"] <= 6 and 0 < row["mcnemar_p"] <= 1
    assert set(saved["training_seconds"]) == {"autoencoder", "unet", "clip", "total"}
    assert "training (wall clock" in capsys.readouterr().out
