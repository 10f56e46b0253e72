"""Shell transcripts for the book's pages: run a command for real, then print it and what it printed.

    from diffclf_lite.book.transcript import run
    run("diffclf merge runs/shapes", cwd=work)      # prints "$ diffclf merge runs/shapes", then its output

A page shows the command as a reader would type it (`diffclf ...`, `torchrun ...`) and runs the same arguments with
the kernel's interpreter (`python -m diffclf_lite`, `python -m torch.distributed.run`), so the transcript comes from
the package the page imports. Output lines are wrapped at the page's width; a long output is cut with a note saying
how many lines were left out; a non-zero exit status is printed after the output, as `(exit status 2)`.
"""
from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

__all__ = ["argv", "environment", "shown", "wrap_output", "run", "start", "kill"]

WIDTH = 88
MAX_LINES = 12
# The command a reader types -> what runs it with the kernel's own interpreter.
PROGRAMS = {"diffclf": [sys.executable, "-m", "diffclf_lite"],
            "torchrun": [sys.executable, "-m", "torch.distributed.run"]}
# Quiet, offline, one thread per process: a page's commands use a local model and tiny tensors, and several
# processes on a few cores are much slower when each spins up a thread per core.
QUIET = {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1",
         "TRANSFORMERS_VERBOSITY": "error", "DIFFUSERS_VERBOSITY": "error", "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1"}


def argv(command: str) -> list[str]:
    """The arguments that run `command`: its first word through PROGRAMS, other programs as they are."""
    words = shlex.split(command)
    if not words:
        raise ValueError("an empty command: nothing to run.")
    return [*PROGRAMS.get(words[0], [words[0]]), *words[1:]]


def environment() -> dict[str, str]:
    """The caller's environment, quiet (unless it says otherwise), with this package first on PYTHONPATH."""
    package_root = str(Path(__file__).resolve().parents[2])
    env = {**QUIET, **os.environ}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p)
    return env


def shown(command: str, width: int = WIDTH) -> str:
    """`$ command`, broken into lines of at most `width` columns with shell continuations (` \\`)."""
    lines = textwrap.wrap("$ " + command, width - 2, subsequent_indent="    ", break_long_words=False,
                          break_on_hyphens=False)
    return " \\\n".join(lines)


def wrap_output(text: str, width: int = WIDTH, max_lines: int = MAX_LINES) -> str:
    """Each line wrapped at `width` columns; beyond `max_lines` lines, the rest is counted instead of shown."""
    lines = [piece for line in text.rstrip().splitlines()
             for piece in (textwrap.wrap(line, width, break_long_words=False, break_on_hyphens=False) or [""])]
    if len(lines) > max_lines:
        lines = [*lines[: max_lines - 1], f"[... {len(lines) - max_lines + 1} more lines]"]
    return "\n".join(lines)


def _check_no_machine_path(output: str, cwd: Path) -> None:
    for path in {str(cwd), str(cwd.resolve())}:
        if path in output:
            raise ValueError(f"the output names the working folder {path}: pass paths relative to it, so that a "
                             "page shows no folder of the machine it ran on.")


def run(command: str, cwd: str | Path, *, timeout: float = 600, width: int = WIDTH,
        max_lines: int = MAX_LINES) -> subprocess.CompletedProcess:
    """Run `command` in `cwd`; print `$ command`, its output (stdout and stderr as they came) and a non-zero exit
    status. Returns the CompletedProcess (`stdout` holds both streams, unwrapped) for the page's checks."""
    cwd = Path(cwd)
    done = subprocess.run(argv(command), cwd=cwd, env=environment(), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=timeout)
    _check_no_machine_path(done.stdout, cwd)
    print(shown(command, width))
    if done.stdout.strip():
        print(wrap_output(done.stdout, width, max_lines))
    if done.returncode:
        print(f"(exit status {done.returncode})")
    return done


def start(command: str, cwd: str | Path, width: int = WIDTH) -> subprocess.Popen:
    """Start `command` in the background (`$ command &`); its output is discarded, as a killed job's would be."""
    print(shown(command + " &", width))
    return subprocess.Popen(argv(command), cwd=Path(cwd), env=environment(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def kill(job: subprocess.Popen) -> int:
    """`kill -9 %1`: SIGKILL the background job, wait for it; returns its exit status (-9 once killed)."""
    print("$ kill -9 %1")
    job.send_signal(signal.SIGKILL)
    return job.wait()
