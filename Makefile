# diffclf-lite: `make book` builds the book, `make test` runs the tests (see README.md).
VENV ?= .venv
PYTHON ?= python3
# torch is installed first, on its own. torch==2.13.0 is the CPU wheel this build machine carries
# (pip finds it on the local disk); a plain `torch` from PyPI would pull a multi-GB CUDA build.
# Elsewhere, override it: `make TORCH=torch test` (or any specifier). pyproject.toml keeps only a
# lower bound (torch>=2.1), so the editable install below keeps whichever torch is installed here.
TORCH ?= torch==2.13.0

STAMP := $(VENV)/.installed

# Jupyter looks up kernelspecs in the venv before ~/.local/share/jupyter, so the `python3` kernel
# that nbval and jupyter-book start is the venv's own interpreter (the venv target installs it).
export JUPYTER_PREFER_ENV_PATH := 1

.PHONY: venv book test clean distclean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --upgrade pip
	$(VENV)/bin/pip install "$(TORCH)"
	$(VENV)/bin/pip install -e ".[all]"
	$(VENV)/bin/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (diffclf-lite)"
	touch $@

# MPLBACKEND=Agg is for plain Python only (the unit tests): a kernel started with it inherits Agg
# instead of its inline backend, and then no figure is drawn, so nbval would not catch a plot that
# fails to render and the book would show no figures. Notebook kernels keep the inline backend,
# which needs no display either; `unexport` drops an MPLBACKEND set in the caller's shell.
unexport MPLBACKEND
# Unit tests first, then every notebook in book/ executed by nbval with the venv's kernel.
# One torch thread per process: the tests' tensors are tiny, and on a 2-core machine shared with a notebook kernel
# or other jobs, torch's spinning worker threads made small ops up to 20x slower (measured).
# Among the unit tests, tests/book/test_grading.py runs the autograder on every chapter three times: as written (full
# marks), as its student version (0 points, and every other cell still runs), and with its declared wrong answers
# (each exercise loses points).
# tests/test_book_pages.py (among the unit tests) builds the book in the smoke profile into _build/pagetest and
# opens every page in headless Chromium; it leaves two screenshots in _build/screenshots/.
STUDENT := _build/student
test: venv
	OMP_NUM_THREADS=1 DIFFCLF_PROFILE=smoke MPLBACKEND=Agg $(VENV)/bin/python -m pytest tests
	OMP_NUM_THREADS=1 DIFFCLF_PROFILE=smoke $(VENV)/bin/python -m pytest --nbval-lax --nbval-kernel-name python3 book

# Generates the student notebooks (the teacher pages offer them for download), trains the models the chapters load
# (chapter 3's digits model, the miniature Stable Diffusion and CLIP; once per machine, cached, with progress), then
# executes every chapter (execute_notebooks: force) and renders _build/html. --all re-reads every page, so each build
# executes every chapter again: a build after a failed one cannot pass on the failed build's pages. Any warning fails
# the build (--keep-going only reports all of them before failing).
# Threads: torch's OpenMP workers spin while they wait; on a 2-core machine shared with other CPU-bound jobs two
# spinning threads ran up to 20x slower than one (measured). OMP_WAIT_POLICY=PASSIVE makes waiting workers sleep, so a
# busy machine slows the build in proportion to the load while a quiet one still gets both cores.
# The rendered pages show no download or loading progress bars (QUIET); run interactively, the notebooks keep them.
QUIET := HF_HUB_DISABLE_PROGRESS_BARS=1 TRANSFORMERS_VERBOSITY=error DIFFUSERS_VERBOSITY=error TRANSFORMERS_NO_ADVISORY_WARNINGS=1
book: venv
	$(VENV)/bin/python -m diffclf_lite.book.assignments --out $(STUDENT)
	OMP_WAIT_POLICY=PASSIVE $(VENV)/bin/python -m diffclf_lite.book.prepare --profile cpu
	$(QUIET) OMP_WAIT_POLICY=PASSIVE DIFFCLF_PROFILE=cpu $(VENV)/bin/jupyter-book build . -W -n --keep-going --all

clean:
	rm -rf _build .pytest_cache *.egg-info
	find . -path ./$(VENV) -prune -o \( -name __pycache__ -o -name .ipynb_checkpoints \) -type d -print -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
