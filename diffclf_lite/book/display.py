"""How the book states numbers to people: p-values, percentages with standard errors, tables without an index."""
from __future__ import annotations

import math


def p_value(p: float) -> str:
    """'p < 0.001' below a thousandth, else two significant digits ('p = 0.034'); a test's p-value for prose."""
    p = float(p)
    if not 0.0 <= p <= 1.0 or math.isnan(p):
        raise ValueError(f"a p-value lies in [0, 1], got {p}")
    return "p < 0.001" if p < 0.001 else f"p = {p:.2g}" if p < 0.1 else f"p = {p:.2f}"


def percent(x: float, se: float | None = None, digits: int = 1) -> str:
    """A fraction as a percentage, with its standard error in points when given: '94.0% ± 1.7'."""
    text = f"{100 * float(x):.{digits}f}%"
    return text if se is None else f"{text} ± {100 * float(se):.{digits}f}"


def table(df, percent_columns=(), digits: int = 1, **formats):
    """A DataFrame styled for the page: no index, fractions in `percent_columns` shown as percentages."""
    fmt = {c: f"{{:.{digits}%}}" for c in percent_columns}
    fmt.update(formats)
    return df.style.format(fmt).hide(axis="index")
