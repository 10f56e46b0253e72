"""Checks of the repository itself: dependency lists agree, notebooks are stripped, the TOC is complete."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

try:  # Python 3.11+
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the `test` extra installs tomli there
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
HEAVY = ("diffusers", "transformers", "seaborn", "matplotlib", "pandas")


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def _pyproject_requirements() -> list[str]:
    project = _pyproject()["project"]
    reqs = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        reqs.extend(extra)
    return reqs


def _environment_pip_requirements() -> list[str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text(encoding="utf-8"))
    pip_sections = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(pip_sections) == 1, "environment.yml should have exactly one `pip:` section"
    return [str(r) for r in pip_sections[0]]


def _normalise(req: str) -> str:
    """One canonical spelling of a requirement: lowercase canonical name, sorted extras and specifiers."""
    r = Requirement(req)
    extras = f"[{','.join(sorted(canonicalize_name(e) for e in r.extras))}]" if r.extras else ""
    marker = f"; {r.marker}" if r.marker else ""
    return f"{canonicalize_name(r.name)}{extras}{r.specifier}{marker}"  # SpecifierSet str is sorted


def test_environment_yml_matches_pyproject() -> None:
    py = {_normalise(r) for r in _pyproject_requirements()}
    env_lines = _environment_pip_requirements()
    env = {_normalise(r) for r in env_lines if not r.startswith("-")}
    assert py == env, (
        "pyproject.toml (core + all extras) and environment.yml's pip section differ:\n"
        f"  only in pyproject.toml:  {sorted(py - env)}\n"
        f"  only in environment.yml: {sorted(env - py)}"
    )
    assert "-e ." in [line.strip() for line in env_lines], "environment.yml should install the package with `-e .`"
    deps = yaml.safe_load((ROOT / "environment.yml").read_text(encoding="utf-8"))["dependencies"]
    assert "pip" in deps and any(str(d).replace(" ", "").startswith("python>=3.10") for d in deps)


def test_all_extra_is_union_of_other_extras() -> None:
    extras = _pyproject()["project"]["optional-dependencies"]
    union = {_normalise(r) for name, reqs in extras.items() if name != "all" for r in reqs}
    assert {_normalise(r) for r in extras["all"]} == union


def test_no_exact_pins() -> None:
    for req in _pyproject_requirements():
        assert "==" not in req, f"pyproject.toml pins {req!r}: use a lower bound (students install next to Colab's stack)"
    for lineno, line in enumerate((ROOT / "environment.yml").read_text(encoding="utf-8").splitlines(), 1):
        code = line.split("#", 1)[0]
        assert "==" not in code, f"environment.yml:{lineno} pins {line.strip()!r}: use a lower bound"


def _notebooks() -> list[Path]:
    return sorted(p for p in BOOK.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)


def _chapters() -> list[Path]:
    """Every page source under book/: notebooks and Markdown files."""
    pages = list(_notebooks()) + [p for p in BOOK.rglob("*.md") if ".ipynb_checkpoints" not in p.parts]
    return sorted(pages)


def test_book_has_notebooks() -> None:
    assert _notebooks(), "book/ should contain at least one notebook"


@pytest.mark.parametrize("path", _notebooks(), ids=lambda p: str(p.relative_to(ROOT)))
def test_notebook_outputs_are_stripped(path: Path) -> None:
    nb = json.loads(path.read_text(encoding="utf-8"))
    dirty = [
        i
        for i, cell in enumerate(nb["cells"])
        if cell["cell_type"] == "code" and (cell.get("outputs") or cell.get("execution_count") is not None)
    ]
    assert not dirty, (
        f"{path.relative_to(ROOT)}: code cells {dirty} have outputs or an execution count; "
        "strip them before committing (Jupyter: Edit > Clear Outputs of All Cells, then save)"
    )


def _toc_files() -> list[str]:
    """Every `root`/`file` entry of _toc.yml, as written (paths relative to the repository root)."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))
    found: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("root", "file") and isinstance(value, str):
                    found.append(value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(toc)
    return found


def _resolve_toc_entry(entry: str) -> Path | None:
    base = ROOT / entry
    if base.suffix in (".md", ".ipynb") and base.is_file():
        return base
    hits = [base.with_name(base.name + ext) for ext in (".md", ".ipynb") if base.with_name(base.name + ext).is_file()]
    return hits[0] if len(hits) == 1 else None


def test_toc_entries_exist() -> None:
    entries = _toc_files()
    assert entries, "_toc.yml lists no files"
    missing = [e for e in entries if _resolve_toc_entry(e) is None]
    assert not missing, f"_toc.yml lists files that do not exist (or exist as both .md and .ipynb): {missing}"


def test_every_chapter_is_in_toc() -> None:
    listed = {_resolve_toc_entry(e) for e in _toc_files()}
    unlisted = [str(p.relative_to(ROOT)) for p in _chapters() if p not in listed]
    assert not unlisted, f"pages under book/ missing from _toc.yml (they would not be built): {unlisted}"


def test_import_does_not_pull_heavy_dependencies() -> None:
    code = (
        "import sys, json, diffclf_lite; "
        f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == 0, f"`import diffclf_lite` failed:\n{proc.stderr}"
    heavy = json.loads(proc.stdout.strip().splitlines()[-1])
    assert heavy == [], f"`import diffclf_lite` imports {heavy}; import them lazily, inside the functions that need them"


def test_readme_and_ci_run_the_documented_commands() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "make book" in readme and "make test" in readme
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    commands = [line.split("#", 1)[0].strip() for line in ci.splitlines()]
    assert any(re.fullmatch(r"(exec\s+)?make\s+test", c) for c in commands), ".ci/run should run `make test`"


def test_readme_python_example_runs():
    """The README's example is code a reader will paste: it must run as written."""
    import re

    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    assert blocks, "README.md has no python example"
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})


ROOT = Path(__file__).resolve().parents[1]
UNSAFE = re.compile(r"\bpickle\b|\bjoblib\b|\bdill\b|allow_pickle\s*=\s*True|torch\.load\((?![^)]*weights_only\s*=\s*True)")


def test_no_unsafe_deserialisation_in_the_package():
    """Checkpoints and noise banks are untrusted: only safetensors / from_pretrained / torch.load(weights_only=True)."""
    files = [*(ROOT / "diffclf_lite").rglob("*.py"), *(ROOT / "benchmarks").rglob("*.py"), *(ROOT / "book").glob("*.ipynb")]
    hits = [f"{f.relative_to(ROOT)}:{n}" for f in files
            for n, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1) if UNSAFE.search(line)]
    assert not hits, f"unsafe loads (use safetensors or torch.load(..., weights_only=True)): {hits}"
    assert UNSAFE.search("torch.load(path)") and UNSAFE.search("import pickle")  # the pattern can fail
    assert not UNSAFE.search("torch.load(path, weights_only=True)")


def _tracked_text_files() -> list[Path]:
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    return [ROOT / f for f in out if Path(f).suffix in (".py", ".ipynb", ".md", ".yml", ".yaml", ".toml", ".cfg", ".txt")
            and (ROOT / f).is_file()]


def test_no_removed_hub_id_or_retired_command_anywhere():
    """Stability AI's SD 2 repositories are gone from the hub and the old hub CLI is now `hf`: nothing may use them."""
    gone = ["stabilityai/stable-diffusion-2" + "-base", "huggingface" + "-cli", "runwayml/" + "stable-diffusion-v1-5"]
    hits = [f"{f.relative_to(ROOT)}: {g}" for f in _tracked_text_files() for g in gone
            if g in f.read_text(encoding="utf-8", errors="replace")]
    assert not hits, f"dead hub ids or commands (use diffclf_lite/data/hub.py's table and `hf`): {hits}"


SD_NEEDS = re.compile(r"(?:from|import) (?:diffusers|transformers|diffclf_lite\.(?:models\.(?:sd|clip|classcond|captioned)|"
                      r"training|book\.alternatives))\b")


@pytest.mark.parametrize("path", _notebooks(), ids=lambda p: str(p.relative_to(ROOT)))
def test_chapters_that_need_diffusers_install_the_sd_extra_on_colab(path: Path) -> None:
    nb = json.loads(path.read_text(encoding="utf-8"))
    code = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
    needs = sorted(set(SD_NEEDS.findall("\n".join(code[1:]))))
    extras = re.search(r"diffclf-lite\[([\w,]+)\]", code[0])
    if needs:
        assert extras and "sd" in extras.group(1).split(","), (
            f"{path.name} imports {needs} but its Colab install cell does not install the `sd` extra")
    assert SD_NEEDS.search("from diffclf_lite.training import x") and not SD_NEEDS.search("from diffclf_lite.data import x")
