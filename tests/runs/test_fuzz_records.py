"""Property-based tests of run records (hypothesis): records survive the round trip, a resumed run with any batch size
or chunking writes exactly the records of one uninterrupted run, manifests that differ are named, and a damaged
folder is a ValueError naming the file, never another exception."""
from __future__ import annotations

import json
import shutil

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import clear_error
from diffclf_lite import Exhaustive, GaussianMixture, Racing
from diffclf_lite.data.prompts import class_prompts
from diffclf_lite.runs import records as R
from diffclf_lite.runs.evaluate import evaluate, merge

JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
                    max_leaves=8)


@given(st.lists(st.tuples(st.integers(0, 10**6), st.dictionaries(st.text(max_size=5), JSON, max_size=4)),
                max_size=5, unique_by=lambda r: r[0]))
def test_records_round_trip(tmp_path_factory, records):
    folder = tmp_path_factory.mktemp("rec")
    for index, body in records:
        R.write_record(folder, {**body, "index": index})
    back = R.read_records(folder)
    assert back == {i: {**body, "index": i} for i, body in records} and R.done_indices(folder) == set(back)


@given(st.dictionaries(st.text(min_size=1, max_size=6), JSON, max_size=5), st.text(min_size=1, max_size=6), JSON)
def test_manifest_differences_name_each_hard_setting(manifest, key, value):
    assert R.manifest_differences(manifest, dict(manifest)) == []
    changed = {**manifest, key: value}
    diffs = R.manifest_differences(manifest, changed)
    if key in R.SOFT_SETTINGS or manifest.get(key) == value:
        assert diffs == []
    else:
        assert len(diffs) == 1 and f"{key}: the folder has" in diffs[0]


@st.composite
def runs(draw):
    C, n = draw(st.integers(2, 4)), draw(st.integers(1, 6))
    gmm = GaussianMixture.random(C, 3, seed=draw(st.integers(0, 100)), separation=1.0)
    pts, lbl = gmm.sample(n, seed=1)
    data = [(p.tolist(), int(c)) for p, c in zip(pts, lbl)]
    strategy = draw(st.sampled_from([Exhaustive(6), Racing(20, max_rounds=8)]))
    return gmm, data, class_prompts([f"c{k}" for k in range(C)]), strategy


@given(runs(), st.integers(1, 40), st.integers(1, 4), st.integers(1, 40), st.integers(1, 4), st.data())
def test_a_resumed_run_writes_the_records_of_one_uninterrupted_run(tmp_path_factory, run, b1, k1, b2, k2, data):
    gmm, dataset, prompts, strategy = run
    root = tmp_path_factory.mktemp("run")
    one = evaluate(gmm, dataset, prompts, strategy, batch_size=b1, images_per_call=k1, progress=False, output=root / "a")
    shutil.copytree(root / "a" / "records", root / "b" / "records")
    shutil.copy(root / "a" / R.MANIFEST, root / "b" / R.MANIFEST)
    lost = data.draw(st.sets(st.sampled_from(range(len(dataset)))), label="records lost in a crash")
    for i in lost:
        (root / "b" / "records" / f"{i:09d}.json").unlink()
    again = evaluate(gmm, dataset, prompts, strategy, batch_size=b2, images_per_call=k2, progress=False, output=root / "b")
    assert (root / "a" / "records.jsonl").read_bytes() == (root / "b" / "records.jsonl").read_bytes()
    assert [r["nfe"] for r in again.records] == [r["nfe"] for r in one.records]
    assert all(0 <= r["prediction"] < prompts.num_classes and r["correct"] == (r["prediction"] == r["label"])
               for r in one.records)


@given(st.binary(max_size=40), st.one_of(st.none(), JSON))
def test_damaged_folders_are_named(tmp_path_factory, garbage, manifest):
    folder = tmp_path_factory.mktemp("bad")
    R.write_record(folder, {"index": 0, "label": 0, "prediction": 0, "correct": True, "nfe": 1, "class_errors": [0.1]})
    (folder / "records" / "000000001.json").write_bytes(garbage)
    (folder / R.MANIFEST).write_text(json.dumps(manifest if manifest is not None else {"indices": [0, 1]}))
    clear_error(lambda: R.read_records(folder))
    clear_error(lambda: merge(folder, write=False, allow_partial=True))
    (folder / "records" / "000000001.json").unlink()
    clear_error(lambda: merge(folder, write=False, allow_partial=True))  # the manifest alone
    (folder / "timing").mkdir()
    (folder / "timing" / "rank0.jsonl").write_bytes(garbage)
    assert set(R.read_timing(folder)) <= {0, 1}  # unparsable lines are skipped


@given(st.one_of(st.none(), st.integers(-2, 2), st.floats(), st.text(max_size=3), st.lists(st.integers(-1, 3), max_size=3)))
def test_evaluate_refuses_junk_settings(tmp_path_factory, junk):
    gmm = GaussianMixture.random(2, 3, seed=0)
    data = [(gmm.sample(1, seed=0)[0][0].tolist(), 0)]
    prompts = class_prompts(["a", "b"])
    out = tmp_path_factory.mktemp("junk")
    for name in ("batch_size", "images_per_call", "seed", "loss", "weighting"):
        clear_error(lambda: evaluate(gmm, data, prompts, Exhaustive(3), progress=False, output=out, overwrite=True, **{name: junk}))
    clear_error(lambda: evaluate(gmm, [(data[0][0], junk)], prompts, Exhaustive(3), progress=False))
    clear_error(lambda: evaluate(gmm, data, prompts, junk, progress=False))


# ---- regression examples of what the fuzzer found ----
def test_a_foreign_manifest_or_damaged_timing_found_by_the_fuzzer(tmp_path):
    R.write_record(tmp_path, {"index": 0, "label": 0, "prediction": 0, "correct": True, "nfe": 1, "class_errors": [0.1]})
    for manifest in ([], {}, {"indices": 5, "classes": [], "prompts": []}):  # were TypeError / KeyError
        (tmp_path / R.MANIFEST).write_text(json.dumps(manifest))
        with pytest.raises(ValueError, match="manifest.json is not a run manifest"):
            merge(tmp_path, write=False)
    (tmp_path / R.MANIFEST).write_text(json.dumps({"indices": [0], "classes": ["a"], "prompts": ["x"]}))
    (tmp_path / "timing").mkdir()
    (tmp_path / "timing" / "rank0.jsonl").write_bytes(b'\x80{"index": 0}\n{"index": 0, "seconds": 2.5}\n')
    assert R.read_timing(tmp_path) == {0: 2.5}  # was UnicodeDecodeError: a damaged line is skipped
    assert merge(tmp_path, write=False).records[0]["seconds"] == 2.5


@pytest.mark.parametrize("name", ["batch_size", "images_per_call", "seed", "label"])
@pytest.mark.parametrize("value", [float("inf"), float("nan"), 2.5])
def test_evaluate_settings_found_by_the_fuzzer(tmp_path, name, value):
    """Infinite counts raised OverflowError (int(inf)), NaN a bare 'cannot convert float NaN to integer'."""
    gmm = GaussianMixture.random(2, 3, seed=0)
    point = gmm.sample(1, seed=0)[0][0].tolist()
    data = [(point, value if name == "label" else 0)]
    kwargs = {} if name == "label" else {name: value}
    label = "the label of image 0" if name == "label" else name
    with pytest.raises(TypeError, match=f"{label} must be a whole number"):
        evaluate(gmm, data, class_prompts(["a", "b"]), Exhaustive(3), progress=False, output=tmp_path, **kwargs)
