"""Mark-price and funding-rate files: the time column read as the instant it names."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest

from tradebus.data.perpetual import mark_gaps, marks_in_window, read_funding_rates, read_mark_prices, row_gaps
from tradebus.engine.messages import MarkPrice
from tradebus.errors import DataError

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "perpetual"


@pytest.mark.parametrize(("scale", "unit"), [(1, "s"), (1_000, "ms")])
def test_a_csv_date_in_unix_time_is_read_in_its_unit(tmp_path: Path, scale: int, unit: str) -> None:
    """Before, a numeric ``date`` was taken as ns: funding of 2021-11-27 was stamped 1970-01-01T00:27:17."""
    seconds = np.array([1_637_971_200, 1_638_000_000])
    funding = tmp_path / "funding.csv"
    funding.write_text("date,rate\n" + "".join(f"{s * scale},0.0001\n" for s in seconds))
    marks = tmp_path / "marks.csv"
    marks.write_text("date,mark_price\n" + "".join(f"{s * scale},1.5\n" for s in seconds))
    expected = pd.to_datetime(seconds * scale, unit=unit, utc=True).as_unit("ns").asi8.tolist()
    assert [f.ts_event for f in read_funding_rates(funding, "X.SIM")] == expected
    assert [f.next_funding_ns for f in read_funding_rates(funding, "X.SIM")] == expected
    assert [m.ts_event for m in read_mark_prices(marks, "X.SIM")] == expected


def test_a_csv_date_that_is_no_plausible_unix_time_is_refused_naming_the_file(tmp_path: Path) -> None:
    funding = tmp_path / "funding.csv"
    funding.write_text("date,rate\n12345,0.0001\n")
    with pytest.raises(DataError, match=r"funding.csv.*date 12345 is not a plausible Unix time"):
        read_funding_rates(funding, "X.SIM")


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf"), None])
@pytest.mark.parametrize("suffix", [".feather", ".parquet", ".csv"])
def test_a_missing_or_non_finite_value_is_refused_naming_file_and_row_in_every_format(
        tmp_path: Path, suffix: str, value: float | None) -> None:
    """Before, a NaN or ±inf in Feather or Parquet (and ±inf in a CSV) was dropped without a word while an empty
    cell was refused, and the docstring said every such row was dropped."""
    dates = pd.to_datetime(["2021-11-15T00:00:00Z", "2021-11-15T08:00:00Z", "2021-11-15T16:00:00Z"]).as_unit("ms")
    for column, reader, what in (("rate", read_funding_rates, "funding rate"), ("mark_price", read_mark_prices,
                                                                                  "mark price")):
        good = 0.0001 if column == "rate" else 1.5
        table = pa.table({"date": pa.array(dates), column: pa.array([good, value, good], pa.float64())})
        path = tmp_path / f"{column}{suffix}"
        if suffix == ".feather":
            feather.write_feather(table, path)
        elif suffix == ".parquet":
            pq.write_table(table, path)
        else:
            cell = "" if value is None else str(value)
            path.write_text(f"date,{column}\n" + "".join(f"{d.isoformat()},{v}\n" for d, v in zip(
                dates, [good, cell, good], strict=True)))
        missing = value is None or (suffix == ".csv" and value != value)  # Arrow reads a CSV 'nan' as null
        expected = f"{column} is missing" if missing else f"{what} {value} at 2021-11-15T08:00:00Z is not a finite"
        with pytest.raises(DataError, match=rf"{path.name} row 2: {expected}"):
            reader(path, "X.SIM")


def test_feather_dates_are_the_instants_pandas_reads() -> None:
    path = FIX / "XRP_USDT_USDT-8h-funding_rate.feather"
    expected = pd.read_feather(path)["date"].dt.tz_convert("UTC").dt.as_unit("ns").astype("int64").tolist()
    assert [f.ts_event for f in read_funding_rates(path, "X.SIM")] == expected


def test_funding_gaps_name_each_stretch_of_the_window_with_a_missing_row(tmp_path: Path) -> None:
    """Rows every 8 h at Binance's late stamps, the one of 2021-11-18 00:00 missing: a window over it
    holds the stretch from the row before to the row after."""
    h = 3_600_000_000_000
    day = 1_637_193_600_000_000_000  # 2021-11-18T00:00Z
    stamps = [day - 24 * h, day - 16 * h, day - 8 * h + 17_000_000, day + 11_000_000, day + 8 * h]  # the fourth is left out
    funding = tmp_path / "funding.parquet"
    pd.DataFrame({"ts_event": stamps[:3] + stamps[4:], "rate": 0.0001}).to_parquet(funding)
    rows = read_funding_rates(funding, "X.SIM")
    assert row_gaps(rows, day - 16 * h, day + 8 * h + 1) == (8 * h, [(day - 8 * h + 17_000_000, day + 8 * h)])
    # a window starting more than an interval before its first row, and ending more than one after its last
    assert row_gaps(rows, day - 20 * h, day - 16 * h + 1)[1] == []
    assert row_gaps(rows, day - 34 * h, day - 16 * h + 1)[1] == [(day - 34 * h, day - 24 * h)]
    assert row_gaps(rows, day + 8 * h, day + 24 * h)[1] == [(day + 8 * h, day + 24 * h)]
    # the late stamp of a row (00:00:00.017) is no gap
    assert row_gaps(rows, day - 24 * h, day - 8 * h + 18_000_000)[1] == []
    # a window with no row at all
    assert row_gaps(rows, day + 9 * h, day + 30 * h)[1] == [(day + 9 * h, day + 30 * h)]
    assert row_gaps(rows[:1], None, None) == (0, [])
    # rows mostly sharing their time have no period (the median spacing is 0): nothing to check, no error
    same = [MarkPrice("X.SIM", t, t, 1.0, float("nan")) for t in (day, day, day, day + h)]
    assert row_gaps(same, day - h, day + 2 * h) == (0, [])


def test_marks_in_a_window_starting_between_rows_begin_with_the_mark_in_force_at_its_start() -> None:
    """Before, a window from 08:30 over hourly marks began at the 09:00 mark: until then positions were
    valued at bar closes, though the 08:00 mark (in the file) was in force."""
    h = 3_600_000_000_000
    marks = [MarkPrice("X.SIM", t * h, t * h, 1.0 + t / 100, float("nan")) for t in range(6, 12)]
    start, end = 8 * h + h // 2, 11 * h
    got = marks_in_window(marks, start, end)
    # the 08:00 mark delivered at the start, its own time kept; nothing at or after the end, nothing later
    assert [(m.ts_event, m.ts_init, m.mark_price) for m in got] == [
        (8 * h, start, 1.08), (9 * h, 9 * h, 1.09), (10 * h, 10 * h, 1.10)
    ]
    # a window starting at a mark, before the first mark, or open: the rows in it, none added
    assert marks_in_window(marks, 8 * h, end) == marks[2:5]
    assert marks_in_window(marks, 5 * h, 7 * h) == marks[:1]
    assert marks_in_window(marks, None, None) == marks
    # a window between two marks with no row in it: the mark in force alone
    assert [(m.ts_event, m.ts_init) for m in marks_in_window(marks, start, start + h // 4)] == [(8 * h, start)]


def test_a_mark_file_90_s_apart_is_checked_at_its_own_spacing_so_one_missing_row_is_a_gap() -> None:
    """Before, the interval of marks 90 s apart was rounded to the minute, 2 min: the 180 s between the rows
    around a missing one was within 1.5 intervals and no stretch was found."""
    s = 1_000_000_000
    marks = [MarkPrice("X.SIM", i * 90 * s, i * 90 * s, 1.5, float("nan")) for i in range(40) if i != 20]
    assert row_gaps(marks, 0, 40 * 90 * s) == (90 * s, [(19 * 90 * s, 21 * 90 * s)])
    assert mark_gaps(marks, 10 * 90 * s + 5 * s, 40 * 90 * s) == (90 * s, [(19 * 90 * s, 21 * 90 * s)])


def test_a_mark_file_a_second_apart_is_checked_for_stretches_without_rows() -> None:
    """Before, the interval of a 1 s mark file was rounded to the minute, 0, and no stretch was checked:
    a 30 s hole in it (rows 40 to 69 missing) was not found. Rows stamped up to 3 ms late are no gap."""
    s = 1_000_000_000
    times = [i * s + (3_000_000 if i % 2 else 0) for i in range(100) if not 40 <= i < 70]
    marks = [MarkPrice("X.SIM", t, t, 1.5, float("nan")) for t in times]
    assert row_gaps(marks, 0, 100 * s) == (s, [(39 * s + 3_000_000, 70 * s)])
    assert row_gaps(marks, 0, 110 * s) == (s, [(39 * s + 3_000_000, 70 * s), (99 * s + 3_000_000, 110 * s)])
    # 250 ms apart: to the millisecond
    quarter = [MarkPrice("X.SIM", t, t, 1.5, float("nan")) for t in (0, 250_000_000, 500_000_001, 1_500_000_000)]
    assert row_gaps(quarter, 0, 1_750_000_000) == (250_000_000, [(500_000_001, 1_500_000_000)])


def test_mark_gaps_of_a_window_starting_in_a_stretch_without_marks_name_its_part_in_the_window() -> None:
    """Hourly marks at 06:00 then 09:00 (07:00 and 08:00 missing), a window from 08:30: it is valued at the
    06:00 mark until 09:00. Counted from 08:30 alone, the half hour to 09:00 was shorter than the interval."""
    h = 3_600_000_000_000
    marks = [MarkPrice("X.SIM", t * h, t * h, 1.0, float("nan")) for t in (5, 6, 9, 10, 11)]
    assert row_gaps(marks, 8 * h + h // 2, 12 * h) == (h, [])
    assert mark_gaps(marks, 8 * h + h // 2, 12 * h) == (h, [(8 * h + h // 2, 9 * h)])
    # the stretch ended before the window: nothing; a window from a mark on, or open: as row_gaps
    assert mark_gaps(marks, 9 * h + h // 2, 12 * h) == (h, [])
    assert mark_gaps(marks, 6 * h, 12 * h) == row_gaps(marks, 6 * h, 12 * h) == (h, [(6 * h, 9 * h)])
    assert mark_gaps(marks, None, None) == row_gaps(marks, None, None)
