"""Chapter conventions (Colab header, needs box, glue key, exercises) and the student-version generator."""
from __future__ import annotations

import copy
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import yaml
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from diffclf_lite.book import assignments as A

ROOT = Path(__file__).resolve().parents[2]
CHAPTERS = A.chapter_paths(ROOT)  # book/*.ipynb without the pages that are not chapters
PIN = A.read_pin(ROOT)
EXERCISE = ":::{exercise}\n:label: ex-x\nDouble it.\n:::\n\n:::{solution} ex-x\n:class: dropdown\nTimes two.\n:::"
QUESTIONS = "\n\n".join(f":::{{exercise}}\n:label: ex-q{i}\nWhy {i}?\n:::\n\n:::{{solution}} ex-q{i}\n:class: dropdown\n"
                        f"Because {i}.\n:::" for i in range(3))
OPENING = ("# Toy\n\n:::{admonition} Learning objectives\n- Double a number.\n- Explain why.\n:::\n\n"
           ":::{admonition} Needs and time\nNo GPU needed; 2 s on a laptop CPU.\n:::")
SOLUTION = "def double(v):\n    ### BEGIN SOLUTION\n    return 2 * v\n    ### END SOLUTION\nprint('defined')"
GRADE = "assert double(3) == 6, double(3)"
SOLUTION_META = {"tags": ["solution"], "diffclf": {"exercise": "ex-x", "wrong": "return 3 * v"}}
GRADE_META = {"tags": ["grade", "remove-cell"], "diffclf": {"exercise": "ex-x", "points": 2}}


def _toy(solution: str = SOLUTION, later: str = "y = 3\nprint(y)") -> nbformat.NotebookNode:
    """A chapter in miniature: opening, install cell, one code exercise with its grade cell, three questions."""
    nb = new_notebook(cells=[
        new_markdown_cell(OPENING),
        new_code_cell(A.install_cell_source(PIN)),
        new_code_cell('from myst_nb import glue\nglue("toy-results", 1, display=False)'),
        new_markdown_cell(EXERCISE),
        new_code_cell(solution, metadata=copy.deepcopy(SOLUTION_META)),
        new_code_cell(GRADE, metadata=copy.deepcopy(GRADE_META)),
        new_markdown_cell(QUESTIONS),
        new_code_cell(later),
    ])
    nb.metadata.update(A.COLAB_METADATA)
    return nb


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_chapter_follows_the_conventions(path: Path) -> None:
    problems = A.check_notebook(nbformat.read(path, as_version=4), path.stem, PIN)
    assert not problems, f"{path.relative_to(ROOT)}:\n  - " + "\n  - ".join(problems) + (
        "\nmetadata and the install cell: python -m diffclf_lite.book.assignments --fix " + str(path.relative_to(ROOT)))


def test_repository_url_and_pin_live_in_config_only() -> None:
    version = re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M).group(1)
    assert PIN.pin == f"v{version}" or re.fullmatch(r"[0-9a-f]{7,40}", PIN.pin), (
        f"_config.yml repository.install_pin {PIN.pin!r}: use the release tag v{version} or a commit hash")
    offenders = []
    for path in sorted((ROOT / "book").rglob("*")):
        if path.suffix == ".ipynb":
            code = [c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]
            text = "\n".join(code[1:]) + "\n".join(c.source for c in nbformat.read(path, as_version=4).cells
                                                   if c.cell_type == "markdown")
        elif path.suffix == ".md":
            text = path.read_text(encoding="utf-8")
        else:
            continue
        if PIN.url in text:
            offenders.append(str(path.relative_to(ROOT)))
    assert not offenders, f"the repository URL is written outside _config.yml and the install cells: {offenders}"


def test_install_cell_is_colab_only_pinned_and_quoted() -> None:
    src = A.install_cell_source(PIN, "sd,book")
    assert '"diffclf-lite[sd,book] @ git+' + PIN.url + "@" + PIN.pin + '"' in src
    assert 'os.path.isdir("/content") and "google.colab" in sys.modules' in src
    compile(src, "install", "exec")


def test_student_version_replaces_solutions_and_keeps_the_rest() -> None:
    student = A.student_version(_toy())
    cell = next(c for c in student.cells if "raises-exception" in c.metadata.get("tags", []))
    assert cell.source == f"def double(v):\n    {A.STUB}\nprint('defined')"  # indentation kept
    assert "solution" not in cell.metadata["tags"]
    text = "\n".join(c.source for c in student.cells)
    assert "2 * v" not in text and "Times two" not in text and "{solution}" not in text
    assert "{exercise}" in text and "y = 3" in text and "Student version" in text


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_student_version_of_every_chapter_hides_its_solutions(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    student = A.student_version(nb)
    stubs = [c for c in student.cells if "raises-exception" in c.metadata.get("tags", [])]
    assert len(stubs) == len(A._solution_cells(nb)) >= 1
    assert not any(A.BEGIN in c.source or A.END in c.source for c in student.cells), path.name
    for c in stubs:
        compile(c.source, path.name, "exec")


@pytest.mark.parametrize("bad, message", [
    ("### BEGIN SOLUTION\nx = 1", "has no"),
    ("### BEGIN SOLUTION\nx = 1\n### END SOLUTION\n### END SOLUTION", "without"),
    ("### BEGIN SOLUTION\n### BEGIN SOLUTION\nx = 1\n### END SOLUTION", "nested"),
    ("x = 1", "no '### BEGIN SOLUTION'"),
    ("if True:\n### BEGIN SOLUTION\n    x = 1\n### END SOLUTION", "not valid Python"),
])
def test_malformed_solution_cells_are_named(bad: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        A.student_version(_toy(solution=bad))


def test_a_later_cell_using_a_solution_name_is_caught() -> None:
    problems = A.check_exercises(_toy(later="print(double(2))"))
    assert any("['double']" in p for p in problems), problems
    assert A.check_exercises(_toy()) == []


def test_check_names_each_missing_convention() -> None:
    nb = _toy()
    assert A.check_notebook(nb, "toy", PIN) == []
    nb.metadata.pop("accelerator")
    nb.cells[0].source = "# Toy"
    nb.cells[1].source = nb.cells[1].source.replace(PIN.pin, "main")
    problems = " | ".join(A.check_notebook(nb, "other", PIN))
    for words in ('"accelerator": "GPU"', "pinned to", "Needs and time", 'glue("other-results"'):
        assert words in problems, (words, problems)


def test_normalise_writes_metadata_and_install_cell_idempotently() -> None:
    nb = _toy()
    nb.metadata = {"kernelspec": {"name": "python3"}}
    nb.cells[1].source = nb.cells[1].source.replace("[book]", "[sd,book]").replace(f"@{PIN.pin}", "")
    fixed = A.normalise(nb, PIN)
    assert fixed.metadata["accelerator"] == "GPU" and fixed.metadata["colab"]["gpuType"] == "T4"
    assert fixed.cells[1].source == A.install_cell_source(PIN, "sd,book")  # extras kept, pin added
    assert "hide-input" in fixed.cells[4].metadata["tags"]
    assert A.normalise(fixed, PIN) == fixed
    del nb.cells[1]  # no install cell: one is inserted before the first code cell
    assert A.normalise(nb, PIN).cells[1].source == A.install_cell_source(PIN)


def test_read_pin_explains_a_missing_setting(tmp_path: Path) -> None:
    (tmp_path / "_config.yml").write_text(yaml.safe_dump({"repository": {"url": "https://x"}}))
    with pytest.raises(ValueError, match="install_pin"):
        A.read_pin(tmp_path)
    with pytest.raises(FileNotFoundError, match="--root"):
        A.read_pin(tmp_path / "nowhere")


def test_cli_check_fails_on_a_broken_chapter(tmp_path: Path, capsys) -> None:
    nb = _toy()
    nb.metadata = {}
    nbformat.write(nb, tmp_path / "toy.ipynb")
    assert A.main(["--root", str(ROOT), "--check", str(tmp_path / "toy.ipynb")]) == 1
    assert '"accelerator": "GPU"' in capsys.readouterr().out
    assert A.main(["--root", str(ROOT), "--fix", str(tmp_path / "toy.ipynb")]) == 0
    assert A.main(["--root", str(ROOT), "--out", str(tmp_path / "students"), str(tmp_path / "toy.ipynb")]) == 0
    assert (tmp_path / "students" / "toy.ipynb").is_file()


def _toy_runnable() -> nbformat.NotebookNode:
    nb = _toy(solution="### BEGIN SOLUTION\nz = 1\n### END SOLUTION")
    del nb.cells[1:3]  # no install or glue cell: only the exercise and the cell after it
    return nb


def test_the_executor_behind_jupyter_book_honours_raises_exception() -> None:
    """myst-nb executes with nbclient: the stub raises, the notebook still runs, and untagged it would fail."""
    student = A.student_version(_toy_runnable())
    NotebookClient(student, timeout=60, kernel_name="python3", allow_errors=False).execute()
    stub = next(c for c in student.cells if "raises-exception" in c.metadata.get("tags", []))
    assert stub.outputs[0]["ename"] == "NotImplementedError" and "y = 3" in student.cells[-1].source
    assert student.cells[-1].outputs[0]["text"] == "3\n"  # the cell after the stub ran
    stub.metadata["tags"] = []
    with pytest.raises(CellExecutionError, match="NotImplementedError"):
        NotebookClient(student, timeout=60, kernel_name="python3", allow_errors=False).execute()


def test_nbval_honours_raises_exception(tmp_path: Path) -> None:
    nbformat.write(A.student_version(_toy_runnable()), tmp_path / "student.ipynb")
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax",
                          "--nbval-kernel-name", "python3", str(tmp_path / "student.ipynb")],
                         capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert run.returncode == 0 and " passed" in run.stdout, run.stdout + run.stderr


def test_the_pages_that_are_not_chapters_exist_and_are_left_out() -> None:
    assert A.PAGES and all((ROOT / "book" / f"{stem}.ipynb").is_file() for stem in A.PAGES), A.PAGES
    assert not {p.stem for p in CHAPTERS} & set(A.PAGES) and len(CHAPTERS) >= 1
