"""Shell transcripts: the command runs for real, its output and exit status are printed as they came, short."""
from __future__ import annotations

import sys
import time

import pytest

from diffclf_lite.book import transcript as T


def test_a_command_is_run_and_printed_with_its_output(tmp_path, capsys):
    (tmp_path / "a.txt").write_text("hello\n")
    done = T.run("ls", tmp_path)
    assert done.returncode == 0 and done.stdout == "a.txt\n"
    assert capsys.readouterr().out == "$ ls\na.txt\n"


def test_diffclf_runs_the_package_and_a_failure_prints_its_exit_status(tmp_path, capsys):
    assert T.argv("diffclf merge runs/x")[:3] == [sys.executable, "-m", "diffclf_lite"]
    assert T.argv("torchrun --nproc_per_node 2 -m m")[:3] == [sys.executable, "-m", "torch.distributed.run"]
    done = T.run("diffclf merge nowhere", tmp_path)
    out = capsys.readouterr().out
    assert done.returncode == 2 and "diffclf merge: error:" in done.stdout
    assert out.startswith("$ diffclf merge nowhere\ndiffclf merge: error:") and out.endswith("(exit status 2)\n")


def test_long_commands_and_outputs_fit_the_page():
    command = "diffclf evaluate " + " ".join(f"--option{i} value{i}" for i in range(12))
    lines = T.shown(command, width=60).splitlines()
    assert all(len(line) <= 60 for line in lines) and len(lines) > 1
    assert all(line.endswith(" \\") for line in lines[:-1]) and lines[1].startswith("    --")
    assert " ".join(line.rstrip(" \\").strip() for line in lines) == "$ " + command  # nothing lost
    text = T.wrap_output("word " * 100 + "\n" + "\n".join(f"line {i}" for i in range(30)), width=50, max_lines=8)
    kept = text.splitlines()
    assert len(kept) == 8 and all(len(line) <= 50 for line in kept)
    assert kept[-1] == f"[... {10 + 30 - 7} more lines]"  # 10 wrapped lines of 10 words, 30 lines, 7 shown


def test_a_transcript_never_shows_the_machine_s_working_folder(tmp_path):
    with pytest.raises(ValueError, match="relative"):
        T.run("pwd", tmp_path)


def test_a_background_job_is_killed_with_sigkill(tmp_path, capsys):
    job = T.start(f"{sys.executable} -c 'import time; time.sleep(60)'", tmp_path)
    time.sleep(0.2)
    assert T.kill(job) == -9
    out = capsys.readouterr().out
    assert out.endswith("time.sleep(60)' &\n$ kill -9 %1\n")
