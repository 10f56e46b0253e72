"""Resumable and sharded dataset evaluation: SIGKILL at random points then rerun = one uninterrupted run, byte for
byte; a folder made with other settings is refused; 2 processes (torchrun + accelerate) merge to the 1-process result."""
from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from diffclf_lite.data.prompts import class_prompts
from diffclf_lite.engine.strategies import Exhaustive
from diffclf_lite.models.gmm import GaussianMixture
from diffclf_lite.runs import records as R
from diffclf_lite.runs.evaluate import evaluate, merge

ROOT = Path(__file__).resolve().parents[2]
N_IMAGES = 24

# One script for every run: a 4-class Gaussian mixture (exact eps), a slowed-down eps so that kills land mid-run.
SCRIPT = """
import sys, time
from diffclf_lite.runs.evaluate import evaluate
from diffclf_lite.models.gmm import GaussianMixture
from diffclf_lite.data.prompts import class_prompts
from diffclf_lite.engine.strategies import Exhaustive

class Slow(GaussianMixture):
    def eps(self, x_t, t, c):
        time.sleep(float(sys.argv[2]))
        return super().eps(x_t, t, c)

model = Slow.random(4, 6, separation=1.0, seed=3)
points, labels = model.sample(6, seed=1)  # 24 points, classes 0..3
data = [(p.tolist(), int(l)) for p, l in zip(points, labels)]
state = None
if len(sys.argv) > 3 and sys.argv[3] == "shard":
    from accelerate import PartialState
    state = PartialState(cpu=True)
ev = evaluate(model, data, class_prompts(["a", "b", "c", "d"]), Exhaustive(40), seed=7, batch_size=50,
              images_per_call=3, progress=False, output=sys.argv[1], state=state)
print("DONE", len(ev.records), ev.accuracy)
"""


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def script(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("resume") / "run_eval.py"
    path.write_text(SCRIPT)
    return path


@pytest.fixture(scope="module")
def reference(script, tmp_path_factory) -> Path:
    """One uninterrupted single-process run."""
    out = tmp_path_factory.mktemp("ref") / "out"
    done = subprocess.run([sys.executable, str(script), str(out), "0"], env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "DONE 24" in done.stdout, done.stderr
    return out


def _record_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((folder / "records").glob("*.json"))}


def test_sigkill_at_random_points_then_resume_equals_an_uninterrupted_run(script, reference, tmp_path):
    out, rng, kills = tmp_path / "out", random.Random(0), 0
    for _ in range(4):  # kill after a random number of finished records, plus a random delay (mid-write too)
        target = len(R.done_indices(out)) + rng.randint(1, 4)
        proc = subprocess.Popen([sys.executable, str(script), str(out), "0.02"], env=_env(),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.time() + 240
        while len(R.done_indices(out)) < target and proc.poll() is None and time.time() < deadline:
            time.sleep(0.005)
        time.sleep(rng.uniform(0, 0.05))
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait()
        proc.stderr.close()
    assert kills >= 3 and 0 < len(R.done_indices(out)) < N_IMAGES  # the kills really interrupted the run
    done = subprocess.run([sys.executable, str(script), str(out), "0"], env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "DONE 24" in done.stdout, done.stderr
    assert _record_bytes(out) == _record_bytes(reference) and len(_record_bytes(out)) == N_IMAGES
    assert (out / "records.jsonl").read_bytes() == (reference / "records.jsonl").read_bytes()
    assert not list((out / "records").glob(".*.tmp"))  # leftovers of killed writes are cleaned at the next start
    assert json.loads((out / "summary.json").read_text())["images"] == N_IMAGES


def test_two_processes_with_torchrun_merge_to_the_single_process_result(script, reference, tmp_path):
    out = tmp_path / "sharded"
    with socket.socket() as sock:  # a free port for the gloo rendezvous
        sock.bind(("127.0.0.1", 0))
        port = str(sock.getsockname()[1])
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", port,
           str(script), str(out), "0", "shard"]
    done = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0 and done.stdout.count("DONE 24") == 2, done.stderr[-2000:]
    ranks = sorted(p.name for p in (out / "timing").glob("rank*.jsonl"))
    assert ranks == ["rank0.jsonl", "rank1.jsonl"]  # both processes did work
    per_rank = [{json.loads(line)["index"] for line in (out / "timing" / r).read_text().splitlines()} for r in ranks]
    assert per_rank[0] and per_rank[1] and not per_rank[0] & per_rank[1]  # disjoint shares of the images
    assert _record_bytes(out) == _record_bytes(reference)
    (out / "records.jsonl").unlink()
    ev = merge(out)  # the merge step alone rebuilds the table
    assert (out / "records.jsonl").read_bytes() == (reference / "records.jsonl").read_bytes()
    assert ev.accuracy == merge(reference, write=False).accuracy


def _gmm_run(out, **kwargs):
    model = GaussianMixture.random(3, 4, separation=1.5, seed=0)
    pts, lbl = model.sample(2, seed=0)
    data = [(p.tolist(), int(c)) for p, c in zip(pts, lbl)]
    settings = {"seed": 0, "batch_size": 16, **kwargs}
    return evaluate(model, data, class_prompts(["x", "y", "z"]), Exhaustive(10), progress=False, output=out, **settings)


def test_other_settings_are_refused_naming_the_setting(tmp_path, capsys):
    out = tmp_path / "run"
    first = _gmm_run(out)
    with pytest.raises(ValueError, match=r"seed: the folder has 0, this run has 1.*--overwrite"):
        _gmm_run(out, seed=1)
    with pytest.raises(ValueError, match=r"loss: the folder has \"l2\", this run has \"l1\""):
        _gmm_run(out, loss="l1")
    again = _gmm_run(out, batch_size=5)  # a soft setting: allowed, and said
    assert "batch_size 16 -> 5" in capsys.readouterr().out and again.records == first.records
    threads = torch.get_num_threads()
    torch.set_num_threads(threads + 1)  # float32 kernels may sum in another order: allowed, and said
    try:
        assert _gmm_run(out).records == first.records
    finally:
        torch.set_num_threads(threads)
    assert f"cpu_threads {threads} -> {threads + 1}" in capsys.readouterr().out
    changed = _gmm_run(out, seed=1, overwrite=True)
    assert json.loads((out / R.MANIFEST).read_text())["seed"] == 1 and len(changed.records) == 6


def test_a_record_depends_only_on_its_image_and_the_seed(tmp_path):
    full = _gmm_run(tmp_path / "a")
    for k in (5, 2):  # delete records, as a kill would leave them missing, and recompute them alone
        (tmp_path / "a" / "records" / f"{k:09d}.json").unlink()
    resumed = _gmm_run(tmp_path / "a")
    def strip(ev):  # wall time is the only thing allowed to differ
        return [json.dumps({k: v for k, v in r.items() if k != "seconds"}) for r in ev.records]

    assert strip(resumed) == strip(full) and (tmp_path / "a" / "records" / f"{5:09d}.json").is_file()


def test_damaged_or_foreign_folders_are_named(tmp_path):
    out = tmp_path / "run"
    _gmm_run(out)
    (out / "records" / ".000000001.json.abc.tmp").write_text('{"index": 1, "lab')  # a killed write: ignored
    assert R.done_indices(out) == set(range(6))
    (out / "records" / "000000003.json").write_text('{"index": 3, "lab')  # damage from outside: named, not read
    with pytest.raises(ValueError, match="000000003.json is not a valid record"):
        merge(out)
    (out / "records" / "000000003.json").unlink()
    with pytest.raises(ValueError, match="1 of 6 images have no record yet.*rerun the same evaluate command"):
        merge(out)
    assert merge(out, allow_partial=True).settings["missing"] == 1
    with pytest.raises(ValueError, match="not an evaluation output folder"):
        merge(tmp_path)
    foreign = tmp_path / "foreign"
    shutil.copytree(out / "records", foreign / "records")
    with pytest.raises(ValueError, match="has records but no manifest.json"):
        _gmm_run(foreign)


def test_a_strategy_setting_its_repr_leaves_out_is_still_compared(tmp_path):
    from diffclf_lite.engine.strategies import SuccessiveElimination

    model = GaussianMixture.random(3, 4, separation=1.5, seed=0)
    data = [(p.tolist(), int(c)) for p, c in zip(*model.sample(1, seed=0))]
    ps = class_prompts(["x", "y", "z"])
    evaluate(model, data, ps, SuccessiveElimination(40, min_rounds=5, seed=0), progress=False, output=tmp_path / "o")
    assert repr(SuccessiveElimination(40, seed=0)) == repr(SuccessiveElimination(40, seed=1))  # the repr cannot tell
    with pytest.raises(ValueError, match="strategy_state: the folder has"):
        evaluate(model, data, ps, SuccessiveElimination(40, min_rounds=5, seed=1), progress=False, output=tmp_path / "o")
