"""The data a sweep's trials read, fingerprinted so that a resumed sweep notices when it changed.

A sweep directory keeps its trials' results; running the same command again skips them. The
config's fingerprint covers every setting but not the data the config points at, so the
fingerprint of each input is kept beside it (``sweep.json``, key ``data``) and compared on resume:

* a catalog dataset (``data.sources.N.dataset``): its manifest's entries (path, rows, time range,
  sha256) of the files the run's window reads, and each file's size (a file replaced behind the
  manifest's back). Bars appended after ``data.end`` change nothing the run reads; a re-import or
  an append inside the window does. Nothing is hashed: the manifest holds each file's sha256.
  The fingerprint also covers the manifest's stretches that a run over the window is refused over
  (``unsynced``, ``stale``, ``missed_trades``: :func:`tradebus.cli.check_stale_feeds`) and its
  ``shared_times``; a manifest with none of them in the window keeps the fingerprint it had before
  they were stored.
  A book dataset's files before the window are inputs too: a window starting after its first row
  starts from the book its rows before the start rebuild (:mod:`tradebus.data.replay`).
* a file (``data.sources.N.file``, ``data.marks.N.file``, ``data.funding.N.file``,
  ``venue.book.ack_latency_samples``, a strategy parameter typed as a path such as a saved model's
  ``strategy.params.model``): the sha256 of its bytes (a file is read whole; about
  1 s a GB), so a copied or touched file with the same content is the same input.

The source of a strategy that is not built in (``strategy.name: mystrats.trend:Breakout``) is
kept too (:func:`code_inputs`, key ``code``): the sha256 of each Python file of its top-level
package (or of its module's file), so that fixing a strategy and running the same command
again does not report the trials of the old code as the new one's.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from tradebus.config import RunConfig, strategy_entries
from tradebus.config.base import model_paths
from tradebus.data.catalog import Catalog, Manifest, sha256_file
from tradebus.reports.metrics import format_ns
from tradebus.strategies.base import resolve_strategy, strategy_source_files

__all__ = ["changes", "code_inputs", "data_inputs"]


def data_inputs(config: RunConfig, window: tuple[int | None, int | None]) -> dict[str, dict[str, Any]]:
    """``{config field: description with a sha256}`` of every data input ``config``'s runs read.

    Parameters
    ----------
    config
        A path-resolved run config.
    window
        ``(first, last)`` ``ts_init`` (ns, inclusive; ``None`` unbounded) that the sweep's runs
        read: catalog files wholly outside it are left out.

    Raises
    ------
    DataError
        A catalog dataset's manifest is invalid or lists a missing file.
    """
    inputs: dict[str, dict[str, Any]] = {}
    for n, src in enumerate(config.data.sources):
        if src.file is not None:
            inputs[f"data.sources.{n}.file"] = _file(src.file)
        elif config.data.catalog is not None:
            inputs[f"data.sources.{n}.dataset"] = _dataset(Catalog(config.data.catalog), src.catalog_key, window)
    for key in ("marks", "funding"):
        for n, entry in enumerate(getattr(config.data, key)):
            inputs[f"data.{key}.{n}.file"] = _file(entry.file)
    samples = config.venue.book.ack_latency_samples
    if samples is not None:
        inputs["venue.book.ack_latency_samples"] = _file(Path(samples).resolve())
    for where, entry in strategy_entries(config):
        params = resolve_strategy(entry.name).validate_params(entry.params)
        for key, path in model_paths(params):
            inputs[f"{where}.params.{key}"] = _file(path)
    return inputs


def code_inputs(config: RunConfig) -> dict[str, dict[str, Any]]:
    """``{strategy field: description with a sha256}`` of the source of every strategy of ``config`` not built in.

    The description: ``path`` (the module's file, or the directory of its top-level package's files),
    ``files``, ``bytes`` and a sha256 of each file's name (relative to that directory) and content.
    """
    inputs: dict[str, dict[str, Any]] = {}
    for where, entry in strategy_entries(config):
        resolve_strategy(entry.name)  # imported when the config was loaded: imports nothing
        files = strategy_source_files(entry.name)
        if not files:
            continue
        root = Path(os.path.commonpath([f.parent for f in files]))
        listed = [(str(f.relative_to(root)), sha256_file(f)) for f in files]
        inputs[f"{where}.name"] = {
            "path": str(files[0] if len(files) == 1 else root), "files": len(files),
            "bytes": sum(f.stat().st_size for f in files),
            "sha256": hashlib.sha256(json.dumps(listed, separators=(",", ":")).encode()).hexdigest(),
        }
    return inputs


def changes(old: dict[str, dict[str, Any]], new: dict[str, dict[str, Any]]) -> list[str]:
    """What differs between two :func:`data_inputs`, one phrase per changed input (empty: the same data)."""
    out = []
    for key in sorted(old.keys() | new.keys()):
        before, after = old.get(key), new.get(key)
        if before is None or after is None:
            out.append(f"{key} {'added' if before is None else 'removed'}")
        elif before.get("sha256") != after.get("sha256"):
            absent = _ABSENT if "dataset" in after else {}
            diffs = [f"{name} {before.get(name, absent.get(name))} -> {after.get(name, absent.get(name))}"
                     for name in _SHOWN if (name in after or name in absent)
                     and before.get(name, absent.get(name)) != after.get(name, absent.get(name))]
            where = after.get("path") or after.get("dataset")
            out.append(f"{key} ({where}): {', '.join(diffs) if diffs else 'content differs'}")
    return out


#: Fields of an input's description named when it changed (the sha256 says only that it did).
_SHOWN = ("path", "dataset", "catalog", "bytes", "files", "rows", "first", "last", "unsynced", "stale", "missed_trades",
          "shared_times")
#: A dataset's description leaves these out at their value here (so that it reads as before they were kept).
_ABSENT: dict[str, Any] = {"unsynced": 0, "stale": 0, "missed_trades": 0, "shared_times": False}


def _file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {"path": str(path), "sha256": None}  # the trials say the file is missing
    return {"path": str(path), "bytes": path.stat().st_size, "sha256": sha256_file(path)}


def _dataset(
    catalog: Catalog, key: tuple[str, str, str, str], window: tuple[int | None, int | None]
) -> dict[str, Any]:
    # One version of the dataset, each file's size taken under the catalog's read lock (an overwrite may follow).
    manifest, entries = catalog.entries(*key, end_ns=window[1])
    if manifest.kind != "book" and window[0] is not None:  # a book's files before the window rebuild its book there
        entries = [(path, e) for path, e in entries if e.end_ns >= window[0]]
    files = [(e.path, e.rows, e.start_ns, e.end_ns, e.sha256, e.size) for _, e in entries]
    holes = _holes(manifest, window)
    # Left out when empty: a manifest without holes in the window keeps the fingerprint it had before they were.
    hashed = [manifest.kind, files, holes] if holes else [manifest.kind, files]
    digest = hashlib.sha256(json.dumps(hashed, separators=(",", ":")).encode()).hexdigest()
    return {
        "dataset": "/".join(key), "catalog": str(catalog.root), "files": len(files),
        "rows": sum(e.rows for _, e in entries),
        "first": format_ns(entries[0][1].start_ns) if entries else None,
        "last": format_ns(entries[-1][1].end_ns) if entries else None,
        **{name: value if name == "shared_times" else len(value) for name, value in holes.items()},
        "sha256": digest,
    }


def _holes(manifest: Manifest, window: tuple[int | None, int | None]) -> dict[str, Any]:
    """The manifest's stretches a run over ``window`` is refused over (or warned of), and ``shared_times``.

    A stretch ``(start_ns, end_ns, ...)`` counts when the window overlaps it as the backtest's checks
    see it (:func:`tradebus.cli.check_stale_feeds`); only non-empty fields are kept.
    """
    first, last = window

    def inside(stretches: list[Any]) -> list[list[Any]]:
        return [list(s) for s in stretches if (first is None or s[1] > first) and (last is None or s[0] <= last)]

    holes: dict[str, Any] = {
        "unsynced": inside(manifest.unsynced), "stale": inside(manifest.stale),
        "missed_trades": inside(manifest.missed_trades), "shared_times": manifest.shared_times,
    }
    return {name: value for name, value in holes.items() if value}
