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
    for label in ("exhaustive", "staged (cifar10)", "successive elimination (C&J)", "racing (ours)", "racing, cap 100 rounds"):
        assert f"gmm10    {label}" in out
    assert "racing (ours) on gmm10:" in out


def test_pruning_benchmark_rejects_unknown_problems(capsys):
    with pytest.raises(SystemExit):
        load("pruning").main(["--problems", "gmm7"])
    assert "unknown problem(s) ['gmm7']" in capsys.readouterr().err
