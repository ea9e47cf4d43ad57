"""Recordings into the catalog: every paper session becomes backtest data.

:func:`import_recording` parses a paper daemon's recorder file (or a hftbacktest capture)
with the very feed parsers of its paper config -- as ``tradebus replay`` does -- and writes
every message they emit into catalog datasets through
:class:`~tradebus.data.market_ingest.CatalogSink`: trades, quotes, the L2 book (the snapshot
the book sync seeded, then every delta it applied), mark prices, funding rates and bars.
``ts_init`` is the frame's recorded receive time. A frame a parser rejects (a garbled
payload) is left out, counted, logged at WARNING with the first one's number and reason, and
noted in every manifest written. The command is ``tradebus data import-recording``
(registered on the data CLI by :mod:`tradebus.cli`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from loguru import logger
from rich.console import Console
from rich.markup import escape

from tradebus.data.catalog import Catalog, DatasetExists, Manifest
from tradebus.data.market_ingest import CatalogSink
from tradebus.errors import DataError, ParseError, TradebusError

__all__ = ["import_recording", "import_recording_cmd"]


def import_recording(
    recording: str | Path,
    config: Any,
    catalog: Catalog | str | Path,
    *,
    suffix: str = "",
    mode: str = "create",
) -> dict[tuple[str, str], Manifest]:
    """Parse a recorder file or hftbacktest capture with ``config``'s feeds into catalog datasets.

    Parameters
    ----------
    recording
        The recording (format detected as in ``tradebus replay``).
    config
        The :class:`~tradebus.node.config.PaperConfig` whose feeds made it.
    catalog
        Catalog (or its root).
    suffix, mode
        See :class:`CatalogSink`.

    Returns
    -------
    dict
        The manifest of every dataset written, by ``(instrument_id, kind)``.

    Raises
    ------
    DataError
        Unreadable recording (names the file and frame), a dataset that exists (``mode="create"``),
        or receive times that go back (the rows must be in time order).
    """
    from tradebus.node.feeds import build_feeds
    from tradebus.node.playback import read_recording

    cat = catalog if isinstance(catalog, Catalog) else Catalog(catalog)
    instruments = config.instrument_map()
    market_of = {iid: fc.market for fc in config.feeds for iid in fc.subscriptions}

    def locate(iid: str) -> tuple[str, str, str]:
        inst = instruments[iid]
        return inst.venue.lower(), market_of.get(iid, "spot"), inst.symbol

    sink = CatalogSink(cat, locate, suffix, mode, notes=(f"imported from recording {Path(recording).name}",))
    clock = [0]
    feeds = build_feeds(config, sink, live=False, clock_ns=lambda: clock[0])
    frame = 0
    rejected = 0
    first_rejected = ""
    try:
        for frame, (recv_ns, conn, raw) in enumerate(read_recording(recording, feeds), 1):
            clock[0] = recv_ns
            feed = next((f for f in feeds if f.accepts(conn)), None)
            if feed is None:
                prefix = conn.partition(":")[0]
                by_market = [f for f in feeds if f.config.market == prefix]
                feed = by_market[0] if len(by_market) == 1 else None
            if feed is None:
                continue
            try:
                feed.on_frame(raw, recv_ns, conn)
            except ParseError as exc:
                rejected += 1
                first_rejected = first_rejected or f"frame {frame}: {exc}"
        if rejected:
            note = f"{rejected} frame(s) rejected by the parsers and left out (first: {first_rejected})"
            logger.warning("{}: {}", Path(recording).name, note)
            sink.notes = (*sink.notes, note)
        return sink.commit()
    except DatasetExists:
        sink.abort()
        raise
    except DataError as exc:
        sink.abort()
        if str(exc).startswith(str(recording)):  # the reader names the file (and line) itself
            raise
        raise DataError(f"{recording}: frame {frame}: {exc}") from None
    except BaseException:
        sink.abort()
        raise


def import_recording_cmd(
    recording: Annotated[Path, typer.Argument(help="Recorder file or hftbacktest capture.")],
    config: Annotated[Path, typer.Option("--config", "-c", help="The paper config of the recorded feeds.")],
    suffix: Annotated[str, typer.Option(help="Appended to each dataset name (book, quotes, trades ...).")] = "",
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing datasets.")] = False,
    catalog: Annotated[Path, typer.Option("--catalog", help="Catalog root directory.")] = Path("data/catalog"),
) -> None:
    """Parse a recording with its feeds into book, quotes, trades, mark price and funding datasets.

    Exit codes as every data command: 2 a bad option or config, 3 bad data or an existing dataset.
    """
    from tradebus.data.cli import EXIT_CODES
    from tradebus.node.config import load_paper_config

    try:
        manifests = import_recording(
            recording, load_paper_config(config), catalog, suffix=suffix, mode="overwrite" if overwrite else "create"
        )
    except TradebusError as exc:
        message = f"{exc.path}: dataset exists; replace it with --overwrite" if isinstance(exc, DatasetExists) else str(exc)
        Console(stderr=True).print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
        raise typer.Exit(next(code for cls, code in EXIT_CODES if isinstance(exc, cls))) from None
    for manifest in manifests.values():
        where = f"{manifest.venue}/{manifest.market}/{manifest.symbol}/{manifest.dataset}"
        Console().print(f"imported {recording.name} -> {where} ({manifest.rows:,} rows)", highlight=False, soft_wrap=True)
