"""The autograder: solutions score full marks, untouched student versions 0 without crashing, wrong answers lose.

The toy tests check the grader itself in seconds; the chapter tests run every chapter three times in the smoke
profile (as written, as its student version, with its declared wrong answers).
"""
from __future__ import annotations

import copy
import csv
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell

from diffclf_lite.book import assignments as A
from diffclf_lite.book import grading as G

from test_assignments import _toy  # tests/book is on sys.path (pytest prepend mode)

ROOT = Path(__file__).resolve().parents[2]
CHAPTERS = A.chapter_paths(ROOT)  # book/*.ipynb without the pages that are not chapters


def _runnable(**kwargs) -> nbformat.NotebookNode:
    nb = _toy(**kwargs)
    del nb.cells[1:3]  # no install or glue cell
    return nb


def _points(report: G.Report) -> dict[str, tuple[int, int]]:
    return {e.label: (e.points, e.possible) for e in report.exercises}


def test_the_solution_earns_every_point_and_the_report_ends_with_the_score() -> None:
    report = G.grade(_runnable(), _runnable(), "toy.ipynb")
    assert _points(report) == {"ex-x": (2, 2)} and report.errors_outside == []
    assert report.lines()[-1] == "score: 2/2"


def test_the_untouched_student_version_scores_zero_and_runs_to_the_end() -> None:
    student = A.student_version(_runnable(), "toy")
    assert not any(G.is_grade_cell(c) for c in student.cells), "the student version must not hold the tests"
    assert student.metadata["diffclf"] == {"chapter": "toy"}
    report = G.grade(student, _runnable())
    assert _points(report) == {"ex-x": (0, 2)} and report.errors_outside == []
    assert "NotImplementedError" in report.exercises[0].notes[0]  # the stub, called by the test


def test_a_wrong_answer_loses_the_points() -> None:
    report = G.grade(G.wrong_version(_runnable()), _runnable())
    assert _points(report) == {"ex-x": (0, 2)}
    assert "AssertionError: 9" in report.exercises[0].notes[0]  # the grade cell's own message


def test_a_student_answer_is_graded_on_its_merits() -> None:
    student = A.student_version(_runnable(), "toy")
    cell = next(c for c in student.cells if "raises-exception" in c.metadata.get("tags", []))
    cell.source = cell.source.replace(A.STUB, "return v + v")
    assert _points(G.grade(student, _runnable())) == {"ex-x": (2, 2)}


def test_tests_written_into_a_submission_are_ignored() -> None:
    student = A.student_version(_runnable(), "toy")
    at = next(i for i, c in enumerate(student.cells) if "raises-exception" in c.metadata.get("tags", []))
    fake = new_code_cell("pass", metadata={"tags": ["grade"], "diffclf": {"exercise": "ex-x", "points": 50}})
    student.cells.insert(at + 1, fake)
    assert _points(G.grade(student, _runnable())) == {"ex-x": (0, 2)}


def test_a_missing_exercise_cell_loses_its_points_with_a_reason() -> None:
    student = A.student_version(_runnable(), "toy")
    student.cells = [c for c in student.cells if "raises-exception" not in c.metadata.get("tags", [])]
    report = G.grade(student, _runnable())
    assert _points(report) == {"ex-x": (0, 2)} and "not found" in report.exercises[0].notes[0]


def test_an_error_outside_the_exercises_is_reported() -> None:
    report = G.grade(_runnable(later="1 / 0"), _runnable())
    assert _points(report) == {"ex-x": (2, 2)}
    assert len(report.errors_outside) == 1 and "ZeroDivisionError" in report.errors_outside[0]


def test_grade_cells_need_points() -> None:
    nb = _runnable()
    grade_cell = next(c for c in nb.cells if G.is_grade_cell(c))
    grade_cell.metadata["diffclf"]["points"] = 0
    with pytest.raises(ValueError, match="positive integer"):
        G.grade(nb, nb)
    assert any("positive integer" in p for p in A.check_exercises(nb))


def test_conventions_require_a_wrong_answer_and_hidden_tests() -> None:
    nb = _runnable()
    solution = next(c for c in nb.cells if G.is_solution_cell(c))
    del solution.metadata["diffclf"]["wrong"]
    next(c for c in nb.cells if G.is_grade_cell(c)).metadata["tags"] = ["grade"]
    problems = " | ".join(A.check_exercises(nb))
    assert "wrong answer" in problems and "remove-cell" in problems, problems


def test_cli_grades_a_folder_reports_bad_files_and_writes_csv(tmp_path: Path, capsys) -> None:
    solutions = tmp_path / "book"
    solutions.mkdir()
    nbformat.write(_runnable(), solutions / "toy.ipynb")
    subs = tmp_path / "subs"
    subs.mkdir()
    student = A.student_version(_runnable(), "toy")
    nbformat.write(student, subs / "alice.ipynb")  # renamed by the student: found by its metadata
    answered = copy.deepcopy(student)
    stub = next(c for c in answered.cells if "raises-exception" in c.metadata.get("tags", []))
    stub.source = stub.source.replace(A.STUB, "return 2 * v")
    nbformat.write(answered, subs / "bob.ipynb")
    (subs / "carol.ipynb").write_text("this is not a notebook")
    code = A.main(["grade", str(subs / "alice.ipynb"), str(subs / "carol.ipynb"), str(subs / "bob.ipynb"),
                   "--solutions", str(solutions), "--csv", str(tmp_path / "grades.csv")])
    out = capsys.readouterr().out
    assert code == 1  # one notebook could not be graded
    assert "carol.ipynb: not graded: " in out and "not a readable notebook" in out
    assert out.count("score: 0/2") == 1 and out.count("score: 2/2") == 1  # bob was graded after carol failed
    rows = list(csv.DictReader((tmp_path / "grades.csv").open()))
    assert [(Path(r["notebook"]).name, r["exercise"], r["points"]) for r in rows] == [
        ("alice.ipynb", "ex-x", "0"), ("alice.ipynb", "score", "0"), ("bob.ipynb", "ex-x", "2"),
        ("bob.ipynb", "score", "2")]


def test_cli_names_an_unknown_chapter_and_a_missing_folder(tmp_path: Path, capsys) -> None:
    nb = _runnable()
    nbformat.write(nb, tmp_path / "essay.ipynb")
    assert A.main(["grade", str(tmp_path / "essay.ipynb"), "--solutions", str(tmp_path)]) == 0  # itself
    (tmp_path / "other").mkdir()
    assert A.main(["grade", str(tmp_path / "essay.ipynb"), "--solutions", str(tmp_path / "other")]) == 1
    assert "no chapter 'essay'" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        A.main(["grade", str(tmp_path / "essay.ipynb"), "--solutions", str(tmp_path / "nowhere")])
    assert "--solutions" in capsys.readouterr().err


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_chapter_grading(path: Path) -> None:
    chapter = nbformat.read(path, as_version=4)
    full = G.grade(chapter, chapter, path.name, cwd=path.parent)
    assert full.possible > 0, f"{path.name} has no graded exercise"
    assert full.score == full.possible and not full.errors_outside, "\n".join(full.lines())
    student = G.grade(A.student_version(chapter, path.stem), chapter, path.name, cwd=path.parent)
    assert student.score == 0 and not student.errors_outside, "\n".join(student.lines())
    wrong = G.grade(G.wrong_version(chapter), chapter, path.name, cwd=path.parent)
    kept = [f"{e.label}: {e.points}/{e.possible}" for e in wrong.exercises if e.points == e.possible]
    assert not kept, f"{path.name}: the declared wrong answer keeps full marks in {kept}"
