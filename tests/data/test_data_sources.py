"""Input files read in chunks: what the CSV reader hands to pyarrow."""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow.csv as pacsv
import pytest

from tradebus.data.sources import open_source
from tradebus.errors import DataError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "data"


@pytest.mark.parametrize("block_bytes", [97, 1 << 20])  # the ragged row in a later chunk, or in the first
def test_csv_reader_hands_arrow_no_python_callable_and_still_numbers_a_ragged_row(
    monkeypatch: pytest.MonkeyPatch, block_bytes: int
) -> None:
    # Arrow drops its reader on its own threads; a Python callable held by it then takes the GIL there,
    # which aborted `data import` at exit about once in 40 runs ("terminate called without an active exception").
    handlers: list[object] = []
    open_csv = pacsv.open_csv

    def recording(*args: object, **kwargs: object) -> pacsv.CSVStreamingReader:
        parse = kwargs.get("parse_options")
        handlers.append(parse.invalid_row_handler if isinstance(parse, pacsv.ParseOptions) else None)
        return open_csv(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(pacsv, "open_csv", recording)
    path = FIXTURES / "bars_ragged.csv"
    with pytest.raises(DataError) as info:
        for _ in open_source(path, block_bytes=block_bytes).frames:
            pass
    assert str(info.value).startswith(f"{path} row 6: expected 6 fields, got 5: "), str(info.value)
    assert handlers and all(h is None for h in handlers)


@pytest.mark.parametrize("sep", [";", "\t"])
@pytest.mark.parametrize("header", [True, False])
def test_a_csv_separated_by_semicolons_or_tabs_is_refused_naming_the_separator(
        tmp_path: Path, sep: str, header: bool) -> None:
    """A spreadsheet's ';' export was refused as 'missing time column ... got ['time;open;high;low;close;volume']'."""
    lines = (FIXTURES / "ADABTC-1m-2021-11-27_head120.csv").read_text().splitlines()[:3]
    rows = [",".join(line.split(",")[:6]) for line in lines]
    path = tmp_path / "klines.csv"
    path.write_text("\n".join((["time,open,high,low,close,volume"] if header else []) + rows).replace(",", sep) + "\n")
    with pytest.raises(DataError, match=re.escape(f"{path}: line 1 has no comma but 5 {sep!r}: ") + ".*comma-separated"):
        open_source(path)
