from __future__ import annotations

import pandas as pd
import pytest

from diffclf_lite.book.display import p_value, percent, table


def test_p_values_read_as_people_write_them() -> None:
    assert p_value(1.4e-20) == "p < 0.001" and p_value(0.0009999) == "p < 0.001"
    assert p_value(0.001) == "p = 0.001" and p_value(0.0341) == "p = 0.034" and p_value(0.5) == "p = 0.50"
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        p_value(1.5)


def test_percent_with_standard_error() -> None:
    assert percent(0.94, 0.0168) == "94.0% ± 1.7" and percent(0.5) == "50.0%"


def test_table_hides_the_index_and_formats_percentages() -> None:
    html = table(pd.DataFrame({"model": ["a"], "accuracy": [0.927]}), ["accuracy"]).to_html()
    assert "92.7%" in html and "0.927" not in html and 'class="row_heading' not in html
