"""`python -m diffclf_lite.training --out FOLDER`: train chapter 3's digits model (see `digits.main`)."""
from .digits import main

main()
