"""The command line, end to end on the offline stand-in, and its messages for wrong arguments."""
from __future__ import annotations

import json
import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from diffclf_lite.engine.strategies import Exhaustive, Staged
from diffclf_lite.runs.cli import main, parse_strategy

ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "diffclf_lite", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env=env)


def test_evaluate_end_to_end_writes_records(tiny_sd_folder, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["evaluate", "--model", str(tiny_sd_folder), "--data", "synthetic", "--subset", "4", "--strategy", "exhaustive:3",
                 "--prompts", "paper", "--batch-size", "5", "--device", "cpu", "--dtype", "fp32", "--output", str(out),
                 "--no-progress"])
    assert code == 0 and "4 images, accuracy" in capsys.readouterr().out
    records = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    assert len(records) == 4 and all(r["nfe"] == 9 and len(r["class_errors"]) == 3 for r in records)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["images"] == 4 and summary["loss"] == "l2" and summary["prompts"] == ["a photo of a circle.",
                                                                                           "a photo of a square.",
                                                                                           "a photo of a triangle."]
    assert summary["accuracy"] == pytest.approx(sum(r["correct"] for r in records) / 4)
    assert (out / "results.csv").read_text().startswith("index,label,label_name")


def test_evaluate_with_confidence_sequences_spends_at_most_the_exhaustive_evaluations(tiny_sd_folder, tmp_path):
    """--strategy anytime:N runs the chapter's pruning with a guarantee; on three classes it evaluates each image at
    least in the first screening round (2 x 3) and at most on the whole grid (N x 3), and the run names it."""
    runs = {}
    for spec in ("anytime:20", "exhaustive:20"):
        out = tmp_path / spec.replace(":", "-")
        assert main(["evaluate", "--model", str(tiny_sd_folder), "--data", "synthetic", "--subset", "4", "--strategy",
                     spec, "--device", "cpu", "--dtype", "fp32", "--output", str(out), "--no-progress"]) == 0
        runs[spec] = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    assert [r["nfe"] for r in runs["exhaustive:20"]] == [60] * 4
    assert len(runs["anytime:20"]) == 4 and all(6 <= r["nfe"] <= 60 for r in runs["anytime:20"])
    assert "AnytimeElimination" in json.loads((tmp_path / "anytime-20" / "summary.json").read_text())["strategy"]


def test_prompt_csv_with_several_prompts_per_class(tiny_sd_folder, tmp_path):
    csv = tmp_path / "p.csv"
    csv.write_text("class_index,prompt\n0,a circle\n0,a round thing\n1,a square\n2,a triangle\n")
    out = tmp_path / "run"
    main(["evaluate", "--model", str(tiny_sd_folder), "--data", "synthetic", "--subset", "2", "--strategy", "exhaustive:2",
          "--prompts", str(csv), "--device", "cpu", "--output", str(out), "--no-progress"])
    rec = json.loads((out / "records.jsonl").read_text().splitlines()[0])
    assert len(rec["prompt_errors"]) == 4 and len(rec["class_errors"]) == 3 and rec["nfe"] == 8
    assert rec["class_errors"][0] == pytest.approx((rec["prompt_errors"][0] + rec["prompt_errors"][1]) / 2)


def test_strategy_specs():
    s, loss = parse_strategy("paper", "cifar10")
    assert isinstance(s, Staged) and s.n_samples == [50, 500] and s.to_keep == [5, 1] and loss == "l1"
    assert parse_strategy("paper:food101", None)[1] == "l2"
    s, loss = parse_strategy("exhaustive:20", None)
    assert isinstance(s, Exhaustive) and s.n_timesteps == 20 and loss is None
    assert parse_strategy("staged:25,250:5,1", None)[0].n_samples == [25, 250]
    racing, elimination = parse_strategy("racing", None)[0], parse_strategy("elimination:500", None)[0]
    assert type(racing).__name__ == "Racing" and racing.n_timesteps == 1000 and racing.pooled
    assert type(elimination).__name__ == "SuccessiveElimination" and elimination.n_timesteps == 500
    anytime = parse_strategy("anytime:500", None)[0]  # the guarantee covers i.i.d. draws: uniform, not "in order"
    assert (anytime.n_timesteps, anytime.alpha, anytime.kappa, anytime.delta) == (500, 0.1, 3.0, 0.0)
    assert torch.equal(anytime.proposal, torch.full((500,), 1 / 500, dtype=torch.float64))
    assert parse_strategy("anytime", None)[0].n_timesteps == 1000
    for bad, message in [("exhaustive", "exhaustive:N"), ("staged:1,2", "staged:SAMPLES:KEEP"),
                         ("racing:5", "grid of 20 to 1000"), ("elimination:x", "elimination:N"), ("anytime:2000", "anytime:N"),
                         ("paper", "needs a dataset"), ("fast", "not understood"), ("paper:mnist", "not one of the paper.s datasets")]:
        with pytest.raises(ValueError, match=message):
            parse_strategy(bad, None)


def test_help_explains_each_option(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", "--help"])
    text = capsys.readouterr().out
    assert exit_info.value.code == 0
    for flag in ("--model", "--data", "--prompts", "--strategy", "--loss", "--subset", "--batch-size", "--dtype",
                 "--device", "--output", "examples:"):
        assert flag in text


def test_a_wrong_argument_from_the_shell_gives_a_message_not_a_traceback():
    proc = _run("evaluate", "--data", "synthetic", "--strategy", "fast")
    assert proc.returncode == 2 and "--strategy 'fast' is not understood" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("args,message", [
    (["evaluate", "--data", "synthetic", "--dtype", "fp8"], "invalid choice: 'fp8'"),
    (["evaluate", "--model", "x"], "the following arguments are required: --data"),
    (["evaluate", "--data", "synthetic"], "'shapes' is not one of the paper's datasets"),
    (["evaluate", "--data", "synthetic", "--subset", "0"], "--subset must be at least 1"),
    (["evaluate", "--data", "synthetic", "--model", "no-such-model"], "neither an existing folder nor a hub id"),
    (["evaluate", "--data", "mnist", "--model", "a/b"], "unknown dataset 'mnist'"),
    (["evaluate", "--data", "synthetic", "--strategy", "exhaustive:2", "--prompts", "nope"], "--prompts 'nope'"),
])
def test_wrong_arguments_give_a_clear_message(args, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and message in err, err


def test_speed_benchmark_runs_in_tiny_mode(tmp_path, capsys):
    """benchmarks/sd_speed.py on the CPU: the engine and the official-style loop spend the planned NFE and agree."""
    from diffclf_lite.runs.evaluate import planned_nfe

    out = tmp_path / "bench.json"
    script = runpy.run_path(str(ROOT / "benchmarks" / "sd_speed.py"), run_name="sd_speed")  # in process: no re-import
    script["main"](["--tiny", "--schedule", "2,10:2,1", "--batch-sizes", "16", "--out", str(out)])
    report = json.loads(out.read_text())
    rows = report["rows"]
    assert rows[0]["setting"] == "baseline" and len(rows) == 4  # baseline, channels_last off/on, classic attention
    assert {r["nfe"] for r in rows} == {planned_nfe(Staged([2, 10], [2, 1]), 10)} == {2 * 10 + 8 * 2}
    assert len({r["prediction"] for r in rows}) == 1  # same plan, same maths: the same answer as the official loop
    assert all(r["evals/s"] > 0 and r["TFLOP/s"] > 0 for r in rows) and report["matmul_tflops_by_dtype"]["fp32"] > 0
    assert all(r["graphs"] == 0 and r["peak dtype"] == "fp32" for r in rows)  # eager rows say so; % of the fp32 rate
    assert "best:" in capsys.readouterr().out


def test_killed_run_resumes_to_the_uninterrupted_records(tiny_sd_folder, tmp_path):
    """`diffclf evaluate` killed with SIGKILL after its first record, then rerun: the same bytes as one clean run."""
    import signal
    import time

    args = ["evaluate", "--model", str(tiny_sd_folder), "--data", "synthetic", "--subset", "6", "--strategy", "exhaustive:4",
            "--device", "cpu", "--dtype", "fp32", "--batch-size", "4", "--no-progress"]
    assert main([*args, "--output", str(tmp_path / "clean")]) == 0
    out = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "diffclf_lite", *args, "--output", str(out)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while not list((out / "records").glob("*.json")) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 1 <= len(list((out / "records").glob("*.json"))) < 6  # killed mid-run
    rerun = _run(*args, "--output", str(out))
    assert rerun.returncode == 0 and "6 images, accuracy" in rerun.stdout, rerun.stderr
    clean = {p.name: p.read_bytes() for p in (tmp_path / "clean" / "records").glob("*.json")}
    assert clean and clean == {p.name: p.read_bytes() for p in (out / "records").glob("*.json")}
    assert (out / "records.jsonl").read_bytes() == (tmp_path / "clean" / "records.jsonl").read_bytes()
    (out / "records.jsonl").unlink()
    assert main(["merge", str(out)]) == 0 and (out / "records.jsonl").read_bytes() == (tmp_path / "clean" / "records.jsonl").read_bytes()


def test_miniature_commands_train_write_the_test_sets_and_evaluate_them(miniature_folder, tmp_path, monkeypatch,
                                                                       capsys):
    from diffclf_lite.training import miniature as T

    monkeypatch.setattr(T, "MINIATURE_CONFIG", T.MINIATURE_SMOKE)  # the cached two-step miniatures of the fixture
    monkeypatch.setattr(T, "cache_dir", lambda: miniature_folder.parent)
    assert main(["miniature", "train", str(tmp_path / "mini"), "--no-progress"]) == 0
    for part in ("sd/unet/config.json", "sd/model_index.json", "clip/config.json", "training.json"):
        assert (tmp_path / "mini" / part).is_file()
    assert main(["miniature", "data", str(tmp_path / "mini"), "--images", "10"]) == 0
    digit = tmp_path / "mini" / "data" / "digit"
    assert sum(1 for _ in digit.rglob("*.png")) == 10 and (digit / "prompts.csv").is_file()
    out = tmp_path / "run"
    assert main(["evaluate", "--model", str(tmp_path / "mini" / "sd"), "--data", str(digit), "--strategy",
                 "exhaustive:2", "--device", "cpu", "--output", str(out), "--no-progress"]) == 0
    assert "10 images, accuracy" in capsys.readouterr().out
    records = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    assert len(records) == 10 and all(r["nfe"] == 2 * 10 for r in records)  # 10 classes x 2 timesteps
    manifest = json.loads((out / "manifest.json").read_text())
    assert "a seven" in json.dumps(manifest)  # the folder's own prompts.csv, not "a photo of a 7_seven."


@pytest.mark.parametrize("args, message", [
    (["miniature", "data", "x", "--images", "0"], "--images must be at least 1"),
    (["miniature", "fly", "x"], "invalid choice"),
    (["miniature", "data", "/proc/nope", "--images", "3"], "OUT /proc/nope: cannot create this folder"),
    (["miniature", "train", "/proc/nope"], "OUT /proc/nope: cannot create this folder"),
])
def test_miniature_commands_reject_wrong_arguments(args, message, capsys):
    with pytest.raises(SystemExit):
        main(args)
    assert message in capsys.readouterr().err
