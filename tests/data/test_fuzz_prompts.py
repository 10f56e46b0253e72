"""Property-based tests of prompt sets (hypothesis): any valid class list, templates or prompt CSV gives a PromptSet whose
per-class errors and predictions are right; anything else a ValueError or TypeError with a message."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from conftest import clear_error
from diffclf_lite.data.prompts import PromptSet, class_prompts, read_class_list, read_prompt_csv

NAMES = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=8).filter(lambda s: s.strip())
TEMPLATE = st.builds(lambda a, b: f"{a}{{}}{b}", st.text(st.sampled_from("ab {}.,"), max_size=5),
                     st.text(st.sampled_from("ab {}.,"), max_size=5))


@given(st.lists(NAMES, min_size=1, max_size=5, unique_by=str.strip), st.lists(TEMPLATE, min_size=1, max_size=3),
       st.integers(1, 4), st.integers(0, 2**16))
def test_class_prompts_and_their_errors(names, templates, N, seed):
    ps = clear_error(lambda: class_prompts(names, templates))
    if ps is None:  # a template with stray braces: refused, said
        return
    C, T = len(names), len(templates)
    assert ps.num_classes == C and len(ps.prompts) == C * T and list(ps.prompt_class) == [c for c in range(C) for _ in templates]
    g = torch.Generator().manual_seed(seed)
    errors = torch.rand(N, C * T, generator=g, dtype=torch.float64)
    alive = torch.rand(N, C * T, generator=g) < 0.7
    alive[:, 0] = True
    per_class = ps.class_errors(errors, alive)
    for i in range(N):
        for c in range(C):
            sel = [j for j in range(C * T) if ps.prompt_class[j] == c and alive[i, j]]
            if sel:
                assert per_class[i, c].item() == pytest.approx(errors[i, sel].mean().item())
            else:
                assert per_class[i, c].isnan()
    pred = ps.predict(errors, alive)
    assert bool(((pred >= 0) & (pred < C)).all())
    assert torch.equal(pred, per_class.nan_to_num(float("inf")).argmin(1))


@given(st.lists(st.tuples(st.integers(-1, 4), st.text(max_size=6)), max_size=6), st.booleans())
def test_prompt_csv_is_read_or_refused(tmp_path_factory, rows, with_names):
    path = tmp_path_factory.mktemp("csv") / "p.csv"
    header = "class_index,prompt,class_name" if with_names else "class_index,prompt"
    lines = [header] + [f"{c},\"{p.replace(chr(34), '')}\"" + (f",n{c}" if with_names else "") for c, p in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    ps = clear_error(lambda: read_prompt_csv(path))
    if ps is not None:
        assert set(ps.prompt_class) == set(range(ps.num_classes)) and len(ps.prompts) == len(ps.prompt_class)


@given(st.binary(max_size=60))
def test_any_bytes_as_a_prompt_csv_or_class_list(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("raw") / "p.csv"
    path.write_bytes(data)
    clear_error(lambda: read_prompt_csv(path))
    clear_error(lambda: read_class_list(path))


@given(st.one_of(st.none(), st.integers(), st.text(max_size=3), st.lists(st.one_of(st.integers(-2, 3), st.floats(-1, 3),
                                                                                   st.text(max_size=2)), max_size=4)))
def test_prompt_sets_refuse_junk(junk):
    clear_error(lambda: PromptSet(("a", "b"), ("x", "y"), junk))
    clear_error(lambda: PromptSet(junk, ("x", "y"), (0, 1)))
    clear_error(lambda: class_prompts(junk))
    clear_error(lambda: class_prompts(["a", "b"], junk))
    ps = class_prompts(["a", "b"])
    clear_error(lambda: ps.class_errors(junk))
    clear_error(lambda: ps.predict(torch.rand(2, 2), junk))


# ---- regression examples of what the fuzzer found ----
@pytest.mark.parametrize("call,error,message", [
    (lambda: class_prompts(["a"], "{}{}"), ValueError, r"needs a '\{\}' \(exactly one\)"),  # was IndexError
    (lambda: class_prompts(["a"], "{} {x}"), ValueError, "other braces doubled"),  # was KeyError
    (lambda: class_prompts("cat"), TypeError, "class_names must be a list of names"),  # was three classes c, a, t
    (lambda: class_prompts(["a", "b"]).class_errors(None), TypeError, "mean_errors must be a tensor"),  # AttributeError
    (lambda: class_prompts(["a", "b"]).class_errors(torch.rand(1, 3)), ValueError, r"shape \(N, 2\)"),  # RuntimeError
    (lambda: PromptSet(("a", "b"), ("x", "y"), (0, 1.5)), TypeError, "each prompt class index must be a whole number"),
])
def test_prompt_set_inputs_found_by_the_fuzzer(call, error, message):
    with pytest.raises(error, match=message):
        call()
    assert class_prompts(["a"], "{0} and {{braces}}").prompts == ("a and {braces}",)
    assert PromptSet(["a", "b"], ["x", "y"], [0, 1]).prompt_class == (0, 1)  # lists are fine, stored as tuples
