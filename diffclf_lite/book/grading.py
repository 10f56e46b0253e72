"""Autograding of the book's code exercises: run a submission with the chapter's hidden tests, count the points.

    python -m diffclf_lite.book.assignments grade submissions/*.ipynb            # one block per notebook
    python -m diffclf_lite.book.assignments grade subs/*.ipynb --csv grades.csv  # and one CSV row per notebook
    python -m diffclf_lite.book.assignments grade book/ch1_elbo_classifier.ipynb --student   # check the tests:
    python -m diffclf_lite.book.assignments grade book/ch1_elbo_classifier.ipynb --wrong     # 0 / loses points

How a chapter declares its grading (checked by `assignments.check_exercises`):
- a code exercise is ONE cell tagged `solution` with metadata `{"diffclf": {"exercise": LABEL, "wrong": SRC}}`, its
  answer between `### BEGIN SOLUTION` and `### END SOLUTION`; `wrong` is a plausible wrong answer for that block;
- after it, one or more cells tagged `grade` (and `remove-cell`, so the page hides them) with metadata
  `{"diffclf": {"exercise": LABEL, "points": N}}`: asserts that pass on the solution only.
The student version drops the grade cells. To grade a submission, the grade cells of the chapter (the solution
notebook, found by the submission's `diffclf.chapter` metadata or its file name) are put back after the submission's
cell of the same exercise, the notebook runs top to bottom in a fresh kernel with errors allowed, and a grade cell
earns its points when it runs without an error. Grade cells found in a submission are discarded (a student cannot
write their own). Submissions run as code on the grader's machine: grade untrusted work in a sandbox.
"""
from __future__ import annotations

import copy
import csv
import os
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"


def meta(cell) -> dict:
    """The `diffclf` metadata of a cell (exercise label, points, wrong answer), or {}."""
    value = cell.metadata.get("diffclf", {})
    return value if isinstance(value, dict) else {}


def is_grade_cell(cell) -> bool:
    return cell.cell_type == "code" and "grade" in cell.metadata.get("tags", [])


def is_solution_cell(cell) -> bool:
    return cell.cell_type == "code" and "solution" in cell.metadata.get("tags", [])


def replace_solution(source: str, answer: str) -> str:
    """The cell with each BEGIN/END SOLUTION block replaced by `answer`, indented like the BEGIN line.

    Unmatched or nested markers are a ValueError naming the cell. The student version uses it with a stub that raises.
    """
    out, inside = [], False
    for line in source.splitlines():
        if line.strip() == BEGIN:
            if inside:
                raise ValueError(f"nested {BEGIN!r} in:\n{source}")
            inside = True
            indent = line[: len(line) - len(line.lstrip())]
            out += [indent + a if a.strip() else a for a in answer.splitlines()]
        elif line.strip() == END:
            if not inside:
                raise ValueError(f"{END!r} without {BEGIN!r} in:\n{source}")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError(f"{BEGIN!r} without {END!r} in:\n{source}")
    return "\n".join(out)


def wrong_version(nb):
    """The chapter with every code exercise's answer replaced by its declared wrong answer (grade cells kept)."""
    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        if is_solution_cell(cell) and "wrong" in meta(cell):
            cell.source = replace_solution(cell.source, meta(cell)["wrong"])
    return nb


@dataclass
class ExerciseScore:
    label: str
    points: int = 0
    possible: int = 0
    notes: list[str] = field(default_factory=list)


@dataclass
class Report:
    """Points per exercise, and the errors raised by cells outside the exercises (a broken notebook)."""

    path: str
    exercises: list[ExerciseScore]
    errors_outside: list[str]

    @property
    def score(self) -> int:
        return sum(e.points for e in self.exercises)

    @property
    def possible(self) -> int:
        return sum(e.possible for e in self.exercises)

    def lines(self) -> list[str]:
        out = [f"{self.path}"]
        for e in self.exercises:
            note = f"  ({'; '.join(e.notes)})" if e.notes else ""
            out.append(f"  {e.label}: {e.points}/{e.possible}{note}")
        out += [f"  error outside the exercises: {err}" for err in self.errors_outside]
        out.append(f"score: {self.score}/{self.possible}")
        return out


def grade_cells_by_exercise(solution_nb) -> dict[str, list]:
    """The chapter's grade cells, grouped by exercise label, in notebook order."""
    groups: dict[str, list] = {}
    for cell in solution_nb.cells:
        if is_grade_cell(cell):
            label = meta(cell).get("exercise")
            points = meta(cell).get("points")
            if not label or not isinstance(points, int) or isinstance(points, bool) or points <= 0:
                raise ValueError(f"a grade cell needs metadata diffclf.exercise and positive integer diffclf.points; "
                                 f"found {meta(cell)!r} in:\n{cell.source[:200]}")
            groups.setdefault(label, []).append(cell)
    return groups


def assemble(submission, solution_nb):
    """The submission without any grade cells of its own, with the chapter's grade cells after each exercise.

    Returns the notebook and, per exercise, the indices of its grade cells in it ([] when the submission lacks the
    exercise's cell: those points are lost).
    """
    tests = grade_cells_by_exercise(solution_nb)
    nb = copy.deepcopy(submission)
    cells, where = [], {label: [] for label in tests}
    for cell in nb.cells:
        if is_grade_cell(cell):
            continue
        cells.append(cell)
        label = meta(cell).get("exercise") if cell.cell_type == "code" else None
        if label in tests and not where[label]:
            for test in tests[label]:
                where[label].append(len(cells))
                cells.append(copy.deepcopy(test))
    nb.cells = cells
    return nb, tests, where


def _error_of(cell) -> str | None:
    for out in cell.get("outputs", []):
        if out.get("output_type") == "error":
            value = str(out.get("evalue", "")).strip().splitlines()
            return f"{out.get('ename', 'Error')}: {value[0][:160] if value else ''}".rstrip(": ")
    return None


def _execute(nb, cwd: Path, timeout: int, profile: str) -> str | None:
    """Run every cell in a fresh kernel, errors allowed; returns why the run stopped early, if it did."""
    from nbclient import NotebookClient
    from nbclient.exceptions import DeadKernelError

    saved = os.environ.get("DIFFCLF_PROFILE")
    os.environ["DIFFCLF_PROFILE"] = profile  # the kernel inherits it
    try:
        NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=True, interrupt_on_timeout=True,
                       resources={"metadata": {"path": str(cwd)}}).execute()
    except DeadKernelError as err:
        return f"the kernel died ({err})"
    except Exception as err:  # noqa: BLE001 - any failure of the runner itself must not lose the other grades
        return f"the run stopped: {type(err).__name__}: {err}"
    finally:
        if saved is None:
            os.environ.pop("DIFFCLF_PROFILE", None)
        else:
            os.environ["DIFFCLF_PROFILE"] = saved
    return None


def grade(submission, solution_nb, path: str = "submission", cwd: Path | str = ".", timeout: int = 600,
          profile: str = "smoke") -> Report:
    """Run the submission with the chapter's grade cells and count each exercise's points."""
    nb, tests, where = assemble(submission, solution_nb)
    stopped = _execute(nb, Path(cwd), timeout, profile)
    scores = []
    for label, cells in tests.items():
        score = ExerciseScore(label, possible=sum(meta(c)["points"] for c in cells))
        if not where[label]:
            score.notes.append("exercise cell not found in the submission")
        for index in where[label]:
            cell = nb.cells[index]
            error = _error_of(cell)
            if error is None and cell.get("execution_count") is not None:
                score.points += meta(cell)["points"]
            else:
                score.notes.append(error or "not run")
        scores.append(score)
    graded = {i for idx in where.values() for i in idx}
    outside = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code" or i in graded or is_solution_cell(cell) or meta(cell).get("exercise"):
            continue
        error = _error_of(cell)
        if error and "raises-exception" not in cell.metadata.get("tags", []):
            outside.append(f"cell {i}: {error}")
    if stopped:
        outside.append(stopped)
    return Report(path, scores, outside)


def find_solution(submission, path: Path, solutions: Path) -> Path:
    """The chapter a submission answers: its `diffclf.chapter` metadata, else its file name."""
    stem = (submission.metadata.get("diffclf") or {}).get("chapter") or path.stem
    candidate = solutions / f"{stem}.ipynb"
    if not candidate.is_file():
        known = sorted(p.stem for p in solutions.glob("*.ipynb"))
        raise ValueError(f"{path}: no chapter {stem!r} in {solutions} (known: {', '.join(known) or 'none'}); name "
                         "the file after its chapter or keep the notebook metadata the student version carries, "
                         "and pass --solutions with the folder of the chapters")
    return candidate


def read_notebook(path: Path):
    try:
        return nbformat.read(path, as_version=4)
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file") from None
    except Exception as err:  # nbformat raises several kinds for a file that is not a notebook
        raise ValueError(f"{path}: not a readable notebook ({type(err).__name__}: {err})") from None


def grade_paths(paths: list[str], solutions: str = "book", variant: str | None = None, csv_path: str | None = None,
                timeout: int = 600, profile: str = "smoke", echo=print) -> int:
    """Grade each notebook; a bad one is reported and skipped, the others are still graded. Returns an exit code."""
    from . import assignments

    folder, failed = Path(solutions), 0
    writer = None
    handle = open(csv_path, "w", newline="", encoding="utf-8") if csv_path else None  # noqa: SIM115
    try:
        for raw in paths:
            path = Path(raw)
            try:
                submission = read_notebook(path)
                solution = read_notebook(path if variant else find_solution(submission, path, folder))
                if variant == "student":
                    submission = assignments.student_version(solution)
                elif variant == "wrong":
                    submission = wrong_version(solution)
                report = grade(submission, solution, str(path), cwd=path.parent, timeout=timeout, profile=profile)
            except ValueError as err:
                failed += 1
                echo(f"{path}: not graded: {err}")
                continue
            for line in report.lines():
                echo(line)
            if handle:
                if writer is None:
                    writer = csv.writer(handle)
                    writer.writerow(["notebook", "exercise", "points", "possible", "notes"])
                for e in report.exercises:
                    writer.writerow([str(path), e.label, e.points, e.possible, "; ".join(e.notes)])
                writer.writerow([str(path), "score", report.score, report.possible, "; ".join(report.errors_outside)])
                handle.flush()  # a later failure loses nothing already graded
    finally:
        if handle:
            handle.close()
    return 1 if failed else 0
