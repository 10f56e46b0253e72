"""`python -m diffclf_lite evaluate ...` is the `diffclf` command (see `runs.cli`)."""
import sys

from .runs.cli import main

sys.exit(main())
