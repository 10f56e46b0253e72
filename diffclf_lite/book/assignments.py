"""Course tooling for the book's notebooks: the Colab header, the chapter conventions, and student versions.

    python -m diffclf_lite.book.assignments                      # student versions of the chapters -> _build/student
    python -m diffclf_lite.book.assignments --check              # does every chapter follow the conventions?
    python -m diffclf_lite.book.assignments --fix book/ch9.ipynb # write the Colab metadata and the pinned install cell
    python -m diffclf_lite.book.assignments grade SUBMISSION.ipynb   # points per exercise, then `score: X/Y`

The repository URL and the release the install cells pin live in ONE place, `_config.yml` (`repository.url`,
`repository.install_pin`); `--fix` writes them into the notebooks and `--check` (run by the tests) compares.
"""
from __future__ import annotations

import argparse
import ast
import copy
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import nbformat

from . import grading
from .grading import BEGIN, END

PACKAGE = "diffclf-lite"
STUB = 'raise NotImplementedError("Exercise: replace this line with your solution")'
COLAB_METADATA = {"accelerator": "GPU", "colab": {"gpuType": "T4", "provenance": []}}
STUDENT_NOTE = ("> **Student version**, generated from the chapter by `python -m diffclf_lite.book.assignments`: each "
                "exercise's code cell raises `NotImplementedError` until you replace that line with your solution. "
                "The rest of the notebook runs as it is.")  # plain Markdown: Colab does not render MyST directives
_INSTALL = '''# On Colab only: install diffclf-lite, pinned to a release (a local checkout has it).
import os
import subprocess
import sys

SPEC = "{package}[{extras}] @ git+{url}@{pin}"
if os.path.isdir("/content") and "google.colab" in sys.modules:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", SPEC], check=True)'''
_EXTRAS = re.compile(re.escape(PACKAGE) + r"\[([a-z0-9_,-]+)\]")
_ADMONITION = re.compile(r"^(:{3,}|`{3,})\{admonition\}\s*Needs and time\s*$(.*?)^\1\s*$", re.M | re.S | re.I)
_DURATION = re.compile(r"\d\s*(s|seconds?|min|minutes?|h|hours?)\b|\bseconds\b|\bminutes?\b", re.I)
_SOLUTION_FENCE = re.compile(r"^\s*(:{3,}|`{3,})\{solution\}")
# Notebooks in book/ that are pages, not chapters: no objectives, exercises or results table, no student version.
PAGES = ("running_at_scale",)


@dataclass(frozen=True)
class Pin:
    """Where the Colab install cells install from: the repository URL and a release tag or commit."""

    url: str
    pin: str


def read_pin(root: Path | str = ".") -> Pin:
    """The repository URL and install pin from `_config.yml`, the one place they are written."""
    import yaml

    path = Path(root) / "_config.yml"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run from the repository root or pass --root")
    repo = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("repository", {})
    url, pin = repo.get("url"), repo.get("install_pin")
    if not url or not pin:
        raise ValueError(f"{path}: set both repository.url and repository.install_pin (a release tag or commit)")
    return Pin(str(url).rstrip("/"), str(pin))


def install_cell_source(pin: Pin, extras: str = "book") -> str:
    """The first code cell of every chapter: a pip install of the pinned release, on Colab only."""
    return _INSTALL.format(package=PACKAGE, extras=extras, url=pin.url, pin=pin.pin)


def _code_cells(nb) -> list:
    return [c for c in nb.cells if c.cell_type == "code"]


def _is_install_cell(cell) -> bool:
    return cell.cell_type == "code" and "pip" in cell.source and PACKAGE in cell.source


def normalise(nb, pin: Pin):
    """Colab metadata requesting a GPU, the pinned install cell first, solution cells folded on the page."""
    nb = copy.deepcopy(nb)
    nb.metadata.update(copy.deepcopy(COLAB_METADATA))
    code = _code_cells(nb)
    if code and _is_install_cell(code[0]):
        extras = _EXTRAS.search(code[0].source)
        code[0].source = install_cell_source(pin, extras.group(1) if extras else "book")
    else:
        at = nb.cells.index(code[0]) if code else len(nb.cells)
        nb.cells.insert(at, nbformat.v4.new_code_cell(install_cell_source(pin)))
    first = _code_cells(nb)[0]
    tags = first.metadata.setdefault("tags", [])
    if "remove-cell" not in tags:  # Colab runs it; the rendered page has no use for it
        tags.append("remove-cell")
    for cell in _solution_cells(nb):
        tags = cell.metadata.setdefault("tags", [])
        if "hide-input" not in tags:
            tags.append("hide-input")
    return nb


def _solution_cells(nb) -> list:
    return [c for c in nb.cells if grading.is_solution_cell(c)]


def strip_solution(source: str) -> str:
    """Replace every BEGIN/END SOLUTION block by a stub that raises, at the block's indentation."""
    return grading.replace_solution(source, STUB)


def strip_solution_directives(markdown: str) -> str:
    """Drop sphinx-exercise `{solution}` blocks (the book's dropdown answers) from a Markdown cell."""
    out, fence = [], None
    for line in markdown.splitlines():
        if fence is None and (m := _SOLUTION_FENCE.match(line)):
            fence = m.group(1)
        elif fence is not None:
            s = line.strip()
            if s and set(s) == {fence[0]} and len(s) >= len(fence):
                fence = None
        else:
            out.append(line)
    return "\n".join(out).strip("\n")


def student_version(nb, chapter: str | None = None):
    """The student notebook: solutions replaced by stubs tagged `raises-exception`, answers and grade cells removed.

    `chapter` (the chapter's file stem) is written into the notebook's metadata, so the grader finds the chapter a
    submission answers whatever the student names the file.
    """
    problems = check_exercises(nb)
    if problems:
        raise ValueError("cannot make a student version: " + "; ".join(problems))
    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        tags = cell.metadata.get("tags", [])
        if cell.cell_type == "code" and "solution" in tags:
            cell.source = strip_solution(cell.source)
            cell.metadata["tags"] = [t for t in tags if t not in ("solution", "hide-input")] + ["raises-exception"]
            if "diffclf" in cell.metadata:
                cell.metadata["diffclf"] = {"exercise": grading.meta(cell).get("exercise")}  # no wrong answer
        elif cell.cell_type == "markdown" and "{solution}" in cell.source:
            cell.source = strip_solution_directives(cell.source)
    nb.cells = [c for c in nb.cells if not grading.is_grade_cell(c)]
    nb.cells = [c for c in nb.cells if c.cell_type != "markdown" or c.source.strip()]
    if chapter:
        nb.metadata["diffclf"] = {"chapter": chapter}
    first_md = next((i for i, c in enumerate(nb.cells) if c.cell_type == "markdown"), 0)
    nb.cells.insert(first_md + 1, nbformat.v4.new_markdown_cell(STUDENT_NOTE))
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    return nb


def _names(tree: ast.AST, ctx: type) -> set[str]:
    found = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ctx)}
    if ctx is ast.Store:
        found |= {n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
        found |= {(a.asname or a.name).split(".")[0] for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))
                  for a in n.names}
    return found


def _parse(source: str, what: str) -> ast.AST:
    lines = [line for line in source.splitlines() if not line.lstrip().startswith(("%", "!"))]  # IPython magics
    try:
        return ast.parse("\n".join(lines))
    except SyntaxError as err:
        raise ValueError(f"{what} is not valid Python: {err}") from err


def check_exercises(nb) -> list[str]:
    """Exercises for course use: a `{exercise}` directive and a `solution` cell whose answer can be removed."""
    problems = []
    if not any(c.cell_type == "markdown" and re.search(r"\{exercise\}", c.source) for c in nb.cells):
        problems.append("no sphinx-exercise `{exercise}` directive in any Markdown cell")
    solutions = _solution_cells(nb)
    if not solutions:
        problems.append(f"no code cell tagged `solution` (with {BEGIN!r} ... {END!r})")
    only_in_solutions: set[str] = set()
    for i, cell in enumerate(solutions):
        if BEGIN not in cell.source or END not in cell.source:
            problems.append(f"solution cell {i + 1} has no {BEGIN!r} ... {END!r} lines")
            continue
        try:
            _parse(strip_solution(cell.source), f"solution cell {i + 1} with its solution removed")
            only_in_solutions |= _names(_parse(cell.source, f"solution cell {i + 1}"), ast.Store)
        except ValueError as err:
            problems.append(str(err))
    problems += _check_grading(nb, solutions)
    others = [c for c in _code_cells(nb) if c not in solutions and not grading.is_grade_cell(c)]
    for cell in others:
        try:
            only_in_solutions -= _names(_parse(cell.source, "a code cell"), ast.Store)
        except ValueError:
            pass  # not our convention to check; nbval reports broken cells
    for cell in others:
        try:
            used = _names(_parse(cell.source, "a code cell"), ast.Load) & only_in_solutions
        except ValueError:
            continue
        if used:
            problems.append(f"a code cell uses {sorted(used)}, defined only in a solution cell (the student "
                            "version would break): define them outside the solution")
    return problems


def _exercise_labels(nb) -> list[str]:
    return [m.group(1) for c in nb.cells if c.cell_type == "markdown"
            for m in re.finditer(r"\{exercise\}[^\n]*\n(?:\s*:[a-z-]+:.*\n)*?\s*:label:\s*(\S+)", c.source)]


def _check_grading(nb, solutions: list) -> list[str]:
    """Each code exercise names its exercise, declares a wrong answer, and has graded tests hidden from the page."""
    problems, labels = [], set(_exercise_labels(nb))
    try:
        tests = grading.grade_cells_by_exercise(nb)
    except ValueError as err:
        return [str(err)]
    answered = set()
    for i, cell in enumerate(solutions):
        label, wrong = grading.meta(cell).get("exercise"), grading.meta(cell).get("wrong")
        if not label:
            problems.append(f"solution cell {i + 1} has no metadata diffclf.exercise (the label of its exercise)")
            continue
        answered.add(label)
        if label not in labels:
            problems.append(f"solution cell {i + 1} names exercise {label!r}, which no {{exercise}} directive labels")
        if label not in tests:
            problems.append(f"exercise {label!r} has no grade cell (tag `grade`, metadata diffclf.exercise/points)")
        if not isinstance(wrong, str) or not wrong.strip():
            problems.append(f"exercise {label!r}: declare a plausible wrong answer in metadata diffclf.wrong")
        else:
            try:
                _parse(grading.replace_solution(cell.source, wrong), f"exercise {label!r} with its wrong answer")
            except ValueError as err:
                problems.append(str(err))
    for label, cells in tests.items():
        if label not in answered:
            problems.append(f"grade cells for {label!r}, but no solution cell with diffclf.exercise {label!r}")
        if any("remove-cell" not in c.metadata.get("tags", []) for c in cells):
            problems.append(f"a grade cell of {label!r} is not tagged remove-cell (the page would show the tests)")
    return problems


MIN_EXERCISES = 4
_OBJECTIVES = re.compile(r"^(:{3,}|`{3,})\{admonition\}\s*Learning objectives\s*$(.*?)^\1\s*$", re.M | re.S | re.I)


def check_notebook(nb, stem: str, pin: Pin) -> list[str]:
    """Every convention of a chapter that a machine can check; an empty list means it complies."""
    problems = []
    meta = nb.metadata
    if meta.get("accelerator") != "GPU" or not isinstance(meta.get("colab"), dict):
        problems.append('notebook metadata lacks "accelerator": "GPU" and "colab" (Colab would not offer a GPU)')
    code = _code_cells(nb)
    extras = _EXTRAS.search(code[0].source) if code else None
    expected = install_cell_source(pin, extras.group(1) if extras else "book")
    if not code or code[0].source.strip() != expected:
        problems.append(f"the first code cell is not the Colab-only install pinned to {pin.url}@{pin.pin}")
    markdown = [c for c in nb.cells if c.cell_type == "markdown"]
    found = _ADMONITION.search(markdown[0].source) if markdown else None
    if not found:
        problems.append("the first Markdown cell has no ':::{admonition} Needs and time' block")
    else:
        body = found.group(2)
        if "GPU" not in body:
            problems.append("the 'Needs and time' admonition does not say whether a GPU is needed")
        if not _DURATION.search(body):
            problems.append("the 'Needs and time' admonition states no duration")
        if len([line for line in body.splitlines() if line.strip()]) > 2:
            problems.append("the 'Needs and time' admonition is one line: machine details go to the teacher page")
    objectives = _OBJECTIVES.search(markdown[0].source) if markdown else None
    if not objectives or len(re.findall(r"^\s*[-*] \S", objectives.group(2), re.M)) < 2:
        problems.append("the first Markdown cell has no ':::{admonition} Learning objectives' block of 2+ bullets")
    count = sum(len(re.findall(r"\{exercise\}", c.source)) for c in markdown)
    if count < MIN_EXERCISES:
        problems.append(f"{count} exercises: a chapter has at least {MIN_EXERCISES}")
    key = re.compile(r"""glue\(\s*["']""" + re.escape(stem) + r"""-results["']""")
    if not any(key.search(c.source) for c in code):
        problems.append(f'no glue("{stem}-results", <table>, display=False) for the results page')
    return problems + check_exercises(nb)


def chapter_paths(root: Path | str = ".") -> list[Path]:
    """The chapter notebooks: book/*.ipynb except the PAGES."""
    return sorted(p for p in (Path(root) / "book").glob("*.ipynb") if p.stem not in PAGES)


def _notebooks(root: Path, given: list[str]) -> list[Path]:
    paths = [Path(p) for p in given] or chapter_paths(root)
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"no such notebook(s): {missing}")
    return paths


def grade_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m diffclf_lite.book.assignments grade",
                                     description=grading.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebooks", nargs="+", help="submissions (or chapters, with --student / --wrong)")
    parser.add_argument("--solutions", default="book", help="folder of the chapters with their tests (default: book)")
    parser.add_argument("--csv", help="also write one row per exercise to this CSV file")
    parser.add_argument("--profile", default="smoke", choices=["smoke", "cpu", "gpu"],
                        help="DIFFCLF_PROFILE for the run (default: smoke, seconds per chapter)")
    parser.add_argument("--timeout", type=int, default=600, help="seconds per cell (default: 600)")
    variant = parser.add_mutually_exclusive_group()
    variant.add_argument("--student", action="store_true", help="grade the student version of each chapter given")
    variant.add_argument("--wrong", action="store_true", help="grade each chapter with its declared wrong answers")
    args = parser.parse_args(argv)
    if args.timeout <= 0:
        parser.error(f"--timeout must be a positive number of seconds, not {args.timeout}")
    if not Path(args.solutions).is_dir():
        parser.error(f"--solutions {args.solutions}: no such folder (the folder holding the chapter notebooks)")
    return grading.grade_paths(args.notebooks, args.solutions, "student" if args.student else
                               "wrong" if args.wrong else None, args.csv, args.timeout, args.profile)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["grade"]:
        return grade_main(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m diffclf_lite.book.assignments", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebooks", nargs="*", help="chapter notebooks (default: book/*.ipynb but the PAGES)")
    parser.add_argument("--root", default=".", help="repository root, where _config.yml is (default: .)")
    parser.add_argument("--out", default="_build/student", help="folder for the student versions")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="report every chapter that breaks a convention")
    mode.add_argument("--fix", action="store_true", help="write the Colab metadata and pinned install cell")
    args = parser.parse_args(argv)
    root = Path(args.root)
    paths = _notebooks(root, args.notebooks)
    if args.check or args.fix:
        pin, failed = read_pin(root), 0
        for path in paths:
            nb = nbformat.read(path, as_version=4)
            if args.fix:
                nbformat.write(normalise(nb, pin), path)
                nb = nbformat.read(path, as_version=4)
            problems = check_notebook(nb, path.stem, pin)
            failed += bool(problems)
            print(f"{path}: " + ("ok" if not problems else "\n  - " + "\n  - ".join(problems)))
        return 1 if failed else 0
    out, failed = Path(args.out), 0
    out.mkdir(parents=True, exist_ok=True)
    for path in paths:
        try:
            nbformat.write(student_version(nbformat.read(path, as_version=4), path.stem), out / path.name)
            print(f"{path} -> {out / path.name}")
        except ValueError as err:
            failed += 1
            print(f"{path}: {err}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
