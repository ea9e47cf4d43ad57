"""What `tradebus features list` says about a kind's parameters is what a spec may give."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from tradebus.cli import app
from tradebus.features.registry import get_kind
from tradebus.features.stepper import Stepper

runner = CliRunner()


def listing(kind: str) -> str:
    result = runner.invoke(app, ["features", "list", kind], env={"COLUMNS": "400"})
    assert result.exit_code == 0
    return result.output


@pytest.mark.parametrize("kind", ["ewm_mean", "ewm_std", "ewm_kurt"])
def test_ewm_kinds_list_their_decay_keywords_and_an_optional_min_periods(kind: str) -> None:
    out = listing(kind)
    assert all(key in out for key in ("span", "halflife", "alpha", "com"))
    assert "min_periods=required" not in out
    Stepper(kind, span=10)  # what the listing says is enough


def test_hmm_lists_its_matrix_keywords_not_sixteen_required_cells() -> None:
    out = listing("hmm")
    assert "transition" in out and "means" in out and "stds" in out
    assert "a02=required" not in out
    Stepper("hmm", transition=[[0.9, 0.1], [0.2, 0.8]], means=[0.0, 0.0], stds=[0.01, 0.03])


def test_kinds_without_keyword_mapping_list_their_declared_parameters() -> None:
    assert "window=required, min_periods=0" in listing("rolling_std")
    assert "window=20, k=2" in listing("bollinger")
    assert get_kind("obv").parameters_doc() == "-"


def test_one_kind_in_detail_prints_its_description_as_written_not_folded_and_indented() -> None:
    """On an 80-column terminal the description was folded into a 19-character table column, its
    lines after the first indented by the docstring's four spaces."""
    result = runner.invoke(app, ["features", "list", "bollinger"], env={"COLUMNS": "100"})
    assert result.exit_code == 0
    lines = result.output.splitlines()
    for expected in ("Bollinger bands on a simple moving average with population standard deviation.",
                     "``upper = mid + k sd``, ``lower = mid - k sd``,",
                     "NaN policy: skip.",
                     "State: ``[ready, last_x, ring(window)]``. Params: ``[window, k]``."):
        assert expected in lines, expected
    assert "NAME.mid, NAME.upper, NAME.lower, NAME.pctb," in result.output
