"""Trial results on disk: a Parquet dataset with one file per trial, written as each trial finishes.

``trials/trial-000042.parquet`` holds one row: ``trial``, ``status``, ``error``, ``tier`` (the
backtest tier that ran it: ``accelerated`` or ``event``), one
``param.<path>`` column per swept parameter, the metrics of
:data:`~tradebus.sweep.trial.METRIC_COLUMNS` and the timing columns ``worker_s`` (run
time inside the worker), ``worker_cpu_s`` (the worker's CPU time for it) and ``wall_s``
(submission to result, in the driver). Every file
has the same schema, so the directory reads as one dataset (``pyarrow.dataset``,
DuckDB ``read_parquet('trials/*.parquet')``). A file is written to a hidden temporary name,
fsynced and renamed, so a trial's file exists only once it is complete (also after a power
loss): a sweep that is interrupted, or stopped by a failed write, resumes by skipping the
trials that have a file.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from tradebus.reports.writers import output_error, write_parquet_file
from tradebus.sweep.space import Param
from tradebus.sweep.trial import METRIC_COLUMNS, TIMING_COLUMNS

__all__ = ["TrialStore"]

_TYPES = {"int64": pa.int64(), "float64": pa.float64(), "bool": pa.bool_(), "string": pa.string()}


class TrialStore:
    """The ``trials/`` dataset of one optimisation (a sweep, or one walk-forward fold)."""

    def __init__(self, directory: str | os.PathLike[str], params: Sequence[Param]) -> None:
        self.directory = Path(directory)
        self.params = list(params)
        fields = [pa.field("trial", pa.int64()), pa.field("status", pa.string()), pa.field("error", pa.string()),
                  pa.field("tier", pa.string())]
        fields += [pa.field(p.column, _TYPES[p.arrow_type()]) for p in self.params]
        fields += [pa.field(name, _TYPES[kind]) for name, kind in METRIC_COLUMNS.items()]
        fields += [pa.field(name, pa.float64()) for name in TIMING_COLUMNS]
        self.schema = pa.schema(fields)

    def path(self, trial: int) -> Path:
        """The file of trial ``trial``."""
        return self.directory / f"trial-{trial:06d}.parquet"

    def done(self) -> set[int]:
        """Numbers of the trials that have a (complete) file."""
        if not self.directory.is_dir():
            return set()
        return {int(p.stem.split("-")[1]) for p in self.directory.glob("trial-*.parquet")}

    def write(self, row: dict[str, Any], params: dict[str, Any]) -> None:
        """Write one trial's row (``params`` as ``{path: value}``) atomically (:func:`write_parquet_file`).

        Raises
        ------
        ConfigError
            An OS error (a full disk), naming the trial's file; no file of the trial is left.
        """
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise output_error(self.directory, exc) from None
        values = dict(row)
        for p in self.params:
            value = params.get(p.path)
            values[p.column] = str(value) if p.arrow_type() == "string" and value is not None else value
        table = pa.table({f.name: [values.get(f.name)] for f in self.schema}, schema=self.schema)
        # one row: compression only costs time
        write_parquet_file(table, self.path(int(row["trial"])), compression="none")

    def read(self, trial: int) -> dict[str, Any]:
        """The row of one trial."""
        return pq.read_table(self.path(trial), schema=self.schema).to_pylist()[0]

    def params_of(self, row: dict[str, Any]) -> dict[str, Any]:
        """``{path: value}`` of a stored row."""
        return {p.path: row[p.column] for p in self.params}

    def table(self) -> pa.Table:
        """Every stored trial, sorted by trial number."""
        paths = sorted(self.directory.glob("trial-*.parquet"))
        if not paths:
            return self.schema.empty_table()
        # One dataset over the files reads them on Arrow's threads: half the time of a loop of reads.
        return ds.dataset([str(p) for p in paths], schema=self.schema, format="parquet").to_table().sort_by("trial")
