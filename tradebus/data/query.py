"""SQL over the catalog with DuckDB, in place: nothing is loaded until a query reads it.

:func:`connect` opens an in-memory DuckDB database with one view per dataset, over
the Parquet files its manifest lists, plus a ``time`` column (``ts_event`` as a UTC
timestamp, µs) and a ``date`` column (the UTC day of ``time``). The session's time zone
is UTC whatever the machine's, so ``time`` compares right with a ``TIMESTAMPTZ``
(``'2024-01-01 00:00+00'``), ``now()`` or ``current_date``:

* ``<venue>_<market>_<symbol>_<dataset>`` for every dataset, lower-cased, any
  character other than a letter or a digit replaced by ``_``
  (``binance_spot_btcusdt_bars_1m``); datasets whose names give the same view
  (``BTC-USDT`` and ``BTC_USDT``) get none, with a warning, and are read from the kind view;
* one view per kind present (``bars``, ``trades``, ``book``, ``book_depth`` ...): every
  dataset of that kind, with ``venue``, ``market``,
  ``symbol`` and ``dataset`` columns.

Examples
--------
>>> from tradebus.data.query import query                                 # doctest: +SKIP
>>> query("SELECT symbol, count(*) AS n FROM bars GROUP BY symbol", "data/catalog")  # doctest: +SKIP
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pyarrow as pa
from loguru import logger

from tradebus.data.catalog import Catalog, DatasetRef, Manifest
from tradebus.errors import ConfigError, DataError

__all__ = ["connect", "query", "view_name"]

_NOT_WORD = re.compile(r"[^a-z0-9]+")
# What DuckDB parses DESCRIBE, SHOW, SUMMARIZE, VALUES and WITH ... SELECT into too.
_READ_ONLY = (duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN)


def view_name(ref: DatasetRef) -> str:
    """The view of a dataset: ``binance_spot_btcusdt_bars_1m``."""
    return _NOT_WORD.sub("_", f"{ref.venue}_{ref.market}_{ref.symbol}_{ref.dataset}".lower()).strip("_")


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def connect(catalog: Catalog | str | os.PathLike[str]) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with the catalog's views (see the module docstring).

    The views read the files when a query runs; a dataset overwritten in between (``--overwrite`` in
    another process) fails it on a missing file. :func:`query` holds each dataset's version while it runs.

    Raises
    ------
    ConfigError
        If the catalog is not a directory (a mistyped path is not an empty catalog).
    DataError
        If a manifest is invalid or a listed file is missing.
    """
    cat = catalog if isinstance(catalog, Catalog) else Catalog(catalog)
    with _holding(cat) as views:
        return _connect(views)


@contextmanager
def _holding(cat: Catalog) -> Iterator[dict[DatasetRef, tuple[Manifest, list[Path]]]]:
    """Every dataset of ``cat`` with its manifest and files, their versions held for the block (:meth:`Catalog.holding`)."""
    if not cat.root.is_dir():
        raise ConfigError(f"catalog {cat.root}: no such directory")
    with cat.holding(cat.datasets()) as held:
        yield held


def _connect(datasets: dict[DatasetRef, tuple[Manifest, list[Path]]]) -> duckdb.DuckDBPyConnection:
    """A connection with the views of ``datasets`` (in order) over their files."""
    named: dict[str, list[DatasetRef]] = {}
    for ref in datasets:
        named.setdefault(view_name(ref), []).append(ref)
    con = duckdb.connect(":memory:")
    # time is a UTC wall clock: DuckDB would read it in the machine's zone against a TIMESTAMPTZ, now() or current_date
    con.execute("SET TimeZone = 'UTC'")
    per_kind: dict[str, list[str]] = {"bars": [], "trades": []}
    for ref, (manifest, files) in datasets.items():
        listed = "[" + ", ".join(_literal(str(f)) for f in files) + "]"
        # not the hive partition's date: that is the first day of a month or a year in most datasets
        rows = (f"SELECT make_timestamp(ts_event // 1000) AS time, *, CAST(make_timestamp(ts_event // 1000) AS DATE) "
                f"AS date FROM read_parquet({listed}, hive_partitioning = false)")
        name = view_name(ref)
        same = named[name]
        if len(same) == 1:
            con.execute(f'CREATE VIEW "{name}" AS {rows}')
        elif ref == same[0]:
            logger.warning(
                "query: datasets {} would share the view {}, which is left out; select them from the {} view by "
                "venue, market and symbol", ", ".join("/".join(r.relpath().parts) for r in same), name, manifest.kind,
            )
        per_kind.setdefault(manifest.kind, []).append(
            f"SELECT {_literal(ref.venue)} AS venue, {_literal(ref.market)} AS market, {_literal(ref.symbol)} AS symbol, "
            f"{_literal(ref.dataset)} AS dataset, * FROM ({rows})"
        )
    for kind, selects in per_kind.items():
        if selects:
            con.execute(f"CREATE VIEW {kind} AS " + " UNION ALL BY NAME ".join(selects))
    return con


def query(sql: str, catalog: Catalog | str | os.PathLike[str]) -> pa.Table:
    """Run one SQL query over the catalog's views and return the result as an Arrow table.

    Only read-only statements run (``SELECT``, ``WITH``, ``DESCRIBE``, ``SHOW``,
    ``SUMMARIZE``, ``VALUES``, ``EXPLAIN``): a ``COPY ... TO`` could overwrite a catalog file.

    Raises
    ------
    ConfigError
        If the catalog is not a directory.
    DataError
        Naming the problem when DuckDB rejects the query (unknown view, syntax), or the
        statement that is not read-only.
    """
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error:
        statements = []  # a syntax error: reported below, with the views
    for statement in statements:
        if statement.type not in _READ_ONLY:
            raise DataError(
                f"query: {statement.type.name} statement {statement.query.strip()[:80]!r} refused: only read-only "
                "queries run here (SELECT, WITH, DESCRIBE, SHOW, SUMMARIZE, VALUES, EXPLAIN); to export a result, "
                "use --format csv or json"
            )
    cat = catalog if isinstance(catalog, Catalog) else Catalog(catalog)
    with _holding(cat) as held:  # an overwrite in another process waits for the query, which reads these files
        con = _connect(held)
        try:
            relation = con.sql(sql)
            return pa.table({}) if relation is None else relation.to_arrow_table()
        except duckdb.Error as exc:
            views = sorted(r[0] for r in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall())
            raise DataError(f"query failed: {exc}; views: {', '.join(views) or 'none (empty catalog)'}") from None
        finally:
            con.close()
