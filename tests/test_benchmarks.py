"""The benchmark scripts run (tiny sizes) and print their tables: they stay working between real runs."""
import importlib.util
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_pruning_benchmark_prints_every_strategy(capsys):
    load("pruning").main(["--problems", "gmm10", "--points", "8"])
    out = capsys.readouterr().out
    for label in ("exhaustive", "staged (cifar10)", "successive elimination (C&J)", "racing (ours)", "racing, cap 100 rounds",
                  "profiled racing (ours)"):
        assert f"gmm10      500 {label:32s}" in out
    assert "racing (ours) on gmm10:" in out and "profiled racing (ours) on gmm10:" in out


def test_pruning_benchmark_on_a_digits_checkpoint(tmp_path, capsys):
    """The digits problem runs end to end on a (barely trained) tiny checkpoint: the real model is too slow here."""
    from diffclf_lite.training import digits_checkpoint

    ckpt = digits_checkpoint(steps=2, preset="tiny", root=tmp_path, progress=False, batch_size=8)
    load("pruning").main(["--problem", "digits", "--points", "20", "--grid", "20", "--checkpoint", str(ckpt)])
    out = capsys.readouterr().out
    assert "digits      20 staged (cifar10)" in out and "digits      20 profiled racing (ours)" in out
    exhaustive = next(line for line in out.splitlines() if line.startswith("digits      20 exhaustive"))
    assert exhaustive.split()[5:7] == ["200", "200"]  # 20 timesteps x 10 classes for every digit


def test_pruning_benchmark_rejects_unknown_problems(capsys):
    with pytest.raises(SystemExit):
        load("pruning").main(["--problems", "gmm7"])
    assert "unknown problem(s) ['gmm7']" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        load("pruning").main(["--problem", "digits", "--grid", "10"])
    assert "--grid at least 20" in capsys.readouterr().err
