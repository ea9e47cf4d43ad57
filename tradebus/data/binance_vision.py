"""Binance public data (``data.binance.vision``): download, verify and import the archives.

Binance publishes one zip per symbol and day (``daily``) or month (``monthly``), each
holding one CSV, next to a ``.CHECKSUM`` file (``<sha256>  <zip name>``)::

    <base>/spot/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2021-01-08.zip[.CHECKSUM]
    <base>/spot/daily/trades/BTCUSDT/BTCUSDT-trades-2021-01-08.zip
    <base>/futures/um/monthly/aggTrades/BTCUSDT/BTCUSDT-aggTrades-2021-01.zip

``market`` is ``spot``, ``um`` (USD-M futures) or ``cm`` (COIN-M futures). Spot klines
have no header, futures ones do; spot archives from 2025 on stamp in microseconds,
older ones in milliseconds: the importer detects both per file.

Steps
-----
1. :func:`archives` lists the zips of a date range.
2. :func:`fetch` downloads them with at most ``workers`` in parallel into a cache
   directory. A zip already there whose sha256 matches its ``.CHECKSUM`` is reused
   (a re-run resumes where the last one stopped). Each download streams into a ``.part``
   file of its own in the zip's directory and is renamed onto the zip only once verified,
   so two runs sharing a cache can fetch the same archive at once; the ``.part`` files a killed
   run left (unwritten for an hour) are removed when their archive is next fetched. A day the server does not have
   (HTTP 404) is listed as missing. An HTTP 429 or 5xx is asked again, up to
   :data:`RETRIES` times, after the ``Retry-After`` the server names (at most
   :data:`RETRY_CAP_S`), else 1, 2, 4 s; then the archive is refused. A zip whose sha256 differs from its checksum,
   or that is not a readable zip holding one CSV, is refused: removed and reported; so is one
   whose ``.CHECKSUM`` names another zip (before it is downloaded).
   Ctrl-C or SIGTERM stops it at once: no further archive is requested, the ones
   being downloaded are dropped (their ``.part`` files removed), the verified ones
   stay for the next run.
3. :func:`import_archives` streams the verified CSVs, in date order, into one
   catalog dataset through :func:`tradebus.data.ingest.import_path`; nothing is
   written to the catalog unless every archive was verified and every row is valid.

Only the URL prefix is configurable (``base_url``); tests serve the same layout from
a local HTTP server.
"""

from __future__ import annotations

import glob
import hashlib
import http.client
import os
import secrets
import shutil
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Literal, TypeVar

from loguru import logger

from tradebus.data.book_depth import import_book_depth
from tradebus.data.catalog import Catalog, check_name, sha256_file
from tradebus.data.ingest import ImportResult, import_path
from tradebus.errors import ConfigError, DataError, describe_os_error

__all__ = [
    "DEFAULT_BASE_URL",
    "RETRIES",
    "RETRY_CAP_S",
    "Archive",
    "FetchReport",
    "archives",
    "catalog_market",
    "fetch",
    "import_archives",
]

DEFAULT_BASE_URL = "https://data.binance.vision/data"
Market = Literal["spot", "um", "cm"]
DataType = Literal["klines", "trades", "aggTrades", "bookDepth"]
_PREFIX = {"spot": "spot", "um": "futures/um", "cm": "futures/cm"}
_CATALOG_MARKET = {"spot": "spot", "um": "usdm", "cm": "coinm"}
#: Markets whose trade archives' ``qty`` is in base units: contract size 1 (COIN-M's counts contracts of USD).
_BASE_UNIT_TRADES = {"spot": 1.0, "um": 1.0}
_CHUNK = 1 << 20
_T = TypeVar("_T")
_EPOCH = date(1970, 1, 1)
_DAY_NS = 86_400 * 10**9
RETRIES = 3
"""Times a request answered 429 (rate limited) or 5xx is asked again before its archive is refused."""
RETRY_CAP_S = 60.0
"""Longest wait before asking again, whatever ``Retry-After`` says."""
_RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
_STALE_PART_S = 3600.0
"""A ``.part`` file unwritten this long (seconds) is a killed run's: a live download writes to its own at every read."""


@dataclass(frozen=True, order=True)
class Archive:
    """One published zip: its period label (``2021-01-08`` or ``2021-01``) and path under the base URL."""

    period: str
    path: str

    @property
    def name(self) -> str:
        """The zip's file name."""
        return self.path.rsplit("/", 1)[-1]


class _Stopped(Exception):
    """The fetch was interrupted: a download in flight gives up."""


@dataclass
class FetchReport:
    """What :func:`fetch` did.

    Attributes
    ----------
    ready
        Verified zips in the cache, in period order.
    downloaded, reused
        Period labels fetched now, and found verified in the cache.
    missing
        Period labels the server does not have (HTTP 404).
    refused
        One message per archive that failed verification or could not be fetched.
    """

    ready: list[Path] = field(default_factory=list)
    downloaded: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)


def catalog_market(market: str) -> str:
    """The catalog's market name of a Binance archive market (``um`` -> ``usdm``)."""
    return _CATALOG_MARKET[market]


def archives(
    market: Market,
    data: DataType,
    symbol: str,
    start: date,
    end: date,
    *,
    interval: str | None = None,
    monthly: bool = False,
) -> list[Archive]:
    """The archives of ``[start, end]`` (inclusive; monthly: every month touched).

    Raises
    ------
    DataError
        On an unknown market or data type, a symbol or interval that is not a catalog name (each
        is a directory of the archive's path in the cache), klines without an interval, monthly
        bookDepth (Binance publishes it daily only), or ``end < start``; each named by the flag of
        ``tradebus data download binance`` that sets it (``--end``, ``--interval``, ...).
    """
    check_name("symbol", symbol)
    if interval is not None:
        check_name("interval", interval)
    if market not in _PREFIX:
        raise DataError(f"--market {market!r} is not a Binance archive market: {', '.join(sorted(_PREFIX))}")
    if data not in ("klines", "trades", "aggTrades", "bookDepth"):
        raise DataError(f"--data {data!r} is not klines, trades, aggTrades or bookDepth")
    if data == "bookDepth" and market == "spot":
        raise DataError("--data bookDepth is published for futures only (--market um or cm)")
    if data == "bookDepth" and monthly:
        raise DataError("bookDepth is published as daily archives only: drop --monthly (the days of --start..--end "
                        "are fetched one archive each)")
    if (data == "klines") != (interval is not None):
        raise DataError("--data klines needs --interval (1m, 1h, ...)" if interval is None
                        else f"--interval {interval} is for klines only, not --data {data}")
    if end < start:
        raise DataError(f"--end {end} is before --start {start}")
    if monthly:
        labels, month = [], date(start.year, start.month, 1)
        while month <= end:
            labels.append(month.strftime("%Y-%m"))
            month = date(month.year + month.month // 12, month.month % 12 + 1, 1)
    else:
        labels = [(start + timedelta(days=i)).isoformat() for i in range((end - start).days + 1)]
    folder = f"{_PREFIX[market]}/{'monthly' if monthly else 'daily'}/{data}/{symbol}"
    if interval is not None:
        return [Archive(p, f"{folder}/{interval}/{symbol}-{interval}-{p}.zip") for p in labels]
    return [Archive(p, f"{folder}/{symbol}-{data}-{p}.zip") for p in labels]


def _get(url: str, timeout: float) -> bytes | None:
    """The body of ``url``, or ``None`` on HTTP 404."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (http(s) base URL)
            return response.read()
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise


def _download(url: str, target: Path, timeout: float, stop: threading.Event) -> tuple[str, Path] | None:
    """Stream ``url`` into a ``.part`` file of its own beside ``target``: its sha256 and path, or ``None`` on 404.

    The part file's name is unique (``<zip name>.<random>.part``), so two runs downloading the same
    archive into one cache each write their own; the caller verifies it and renames it onto ``target``.
    Raises :class:`_Stopped` (the ``.part`` file removed) once ``stop`` is set.
    """
    part = target.with_name(f"{target.name}.{secrets.token_hex(8)}.part")
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, part.open("xb") as out:  # noqa: S310
            while not stop.is_set() and (chunk := response.read(_CHUNK)):
                digest.update(chunk)
                out.write(chunk)
            if stop.is_set():
                raise _Stopped
    except urllib.error.HTTPError as exc:
        part.unlink(missing_ok=True)
        if exc.code == 404:
            return None
        raise
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    return digest.hexdigest(), part


def _drop_stale_parts(target: Path, timeout: float) -> None:
    """Remove the ``.part`` files of ``target`` a killed run left (unwritten for ``_STALE_PART_S``, or ``2 * timeout``).

    Each download's part file has a name of its own, so no later download overwrites a SIGKILLed one's;
    a part still being written (another run's, fetching the same archive) is newer and kept.
    """
    cutoff = time.time() - max(_STALE_PART_S, 2.0 * timeout)
    for part in target.parent.glob(f"{glob.escape(target.name)}.*part"):
        try:
            if part.stat().st_mtime < cutoff:
                part.unlink()
                logger.info("binance vision: removed {}, left by a run that was killed", part)
        except FileNotFoundError:  # another run removed it meanwhile
            continue


def _retry_wait(exc: urllib.error.HTTPError, attempt: int) -> float:
    """Seconds to wait before asking again: the answer's ``Retry-After`` (seconds), else 1, 2, 4, ... (capped)."""
    after = exc.headers.get("Retry-After") if exc.headers is not None else None
    try:
        seconds = float(after) if after is not None else 2.0**attempt
    except ValueError:  # an HTTP date
        seconds = 2.0**attempt
    return min(RETRY_CAP_S, max(0.0, seconds))


def _retrying(call: Callable[[], _T], url: str, stop: threading.Event) -> _T:
    """``call()``, asked again after a 429 or 5xx answer (see the module docstring); :class:`_Stopped` once stopped."""
    attempt = 0
    while True:
        try:
            return call()
        except urllib.error.HTTPError as exc:
            if exc.code not in _RETRY_STATUS or attempt == RETRIES:
                raise
            wait, status = _retry_wait(exc, attempt), exc.code
            exc.close()
        attempt += 1
        logger.info("binance vision: {} answered HTTP {}; asking again in {:g} s ({} of {})", url, status, wait,
                    attempt, RETRIES)
        if stop.wait(wait):
            raise _Stopped


def _check_zip(path: Path) -> str | None:
    """Why the zip cannot be imported (``None``: it is a sound zip of one CSV)."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.namelist()
            if len(members) != 1 or not members[0].lower().endswith(".csv"):
                return f"holds {members}, expected one CSV file"
            bad = archive.testzip()
            if bad is not None:
                return f"member {bad} fails its CRC check (corrupt archive)"
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError) as exc:
        return f"is not a readable zip archive ({type(exc).__name__}: {exc}); corrupt archive"
    return None


def fetch(
    items: list[Archive],
    cache_dir: Path,
    *,
    base_url: str = DEFAULT_BASE_URL,
    workers: int = 4,
    timeout: float = 60.0,
    on_done: Callable[[Archive, str], None] | None = None,
) -> FetchReport:
    """Download and verify archives into ``cache_dir`` (see the module docstring).

    Parameters
    ----------
    items
        From :func:`archives`.
    cache_dir
        Where the zips are kept (mirroring the URL layout); re-runs reuse verified ones.
    base_url
        URL prefix of the ``spot/`` and ``futures/`` trees.
    workers
        Archives fetched at once (at least 1).
    timeout
        Seconds per HTTP request.
    on_done
        Called (from a worker thread) with each archive and its outcome:
        ``"downloaded"``, ``"reused"``, ``"missing"`` or ``"refused"``.

    Raises
    ------
    ConfigError
        If ``base_url`` is not an ``http://`` or ``https://`` URL with a host and, if it names one, a port
        number from 1 to 65535 (before any request).
    DataError
        If ``workers`` is below 1.
    """
    if workers < 1:
        raise DataError(f"workers must be >= 1, got {workers}")
    try:
        parts = urllib.parse.urlsplit(base_url)
        web = parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:  # "http://[::1" (an unclosed IPv6 host)
        web = False
    if not web:
        raise ConfigError(f"base URL {base_url!r} is not an http:// or https:// URL with a host (Binance's is "
                          f"{DEFAULT_BASE_URL}); nothing was downloaded")
    try:
        port_ok = parts.port != 0
    except ValueError:  # "http://127.0.0.1:abc", ":99999": urlsplit parses them, every request fails
        port_ok = False
    if not port_ok:
        port = parts.netloc.rpartition(":")[2]
        raise ConfigError(f"base URL {base_url!r}: port {port!r} is not a port number (1 to 65535); "
                          f"nothing was downloaded")
    base = base_url.rstrip("/")
    report = FetchReport()
    lock = threading.Lock()
    ready: dict[str, Path] = {}
    stop = threading.Event()

    def one(item: Archive) -> None:
        if stop.is_set():
            return
        try:
            outcome, message = _fetch_one(item, cache_dir, base, timeout, stop)
        except _Stopped:
            return
        with lock:
            if outcome in ("downloaded", "reused"):
                ready[item.period] = cache_dir / item.path
                getattr(report, outcome).append(item.period)
            elif outcome == "missing":
                report.missing.append(item.period)
            else:
                report.refused.append(message)
        if on_done is not None:
            on_done(item, outcome)

    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="binance-vision")
    try:
        for future in [pool.submit(one, item) for item in items]:
            future.result()
    except BaseException:  # Ctrl-C, SIGTERM: the queued archives are dropped, not downloaded before stopping
        stop.set()
        logger.warning("binance vision: stopping; the downloads in flight are dropped, the verified archives kept "
                       "in {} for the next run", cache_dir)
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown()
    report.ready = [ready[p] for p in sorted(ready)]
    for name in ("downloaded", "reused", "missing", "refused"):
        getattr(report, name).sort()
    return report


def _fetch_one(item: Archive, cache_dir: Path, base: str, timeout: float, stop: threading.Event) -> tuple[str, str]:
    url = f"{base}/{item.path}"
    target = cache_dir / item.path
    try:
        checksum = _retrying(lambda: _get(url + ".CHECKSUM", timeout), url + ".CHECKSUM", stop)
        if checksum is None:
            return "missing", f"{item.name}: not published"
        fields = checksum.decode("ascii", "replace").split()
        if not fields or len(fields[0]) != 64:
            return "refused", f"{item.name}: malformed .CHECKSUM {checksum[:80]!r}"
        named = fields[1].lstrip("*") if len(fields) > 1 else item.name  # sha256sum's binary mode marks "*name"
        if named != item.name:
            return "refused", (f"{item.name}: its .CHECKSUM file names {named!r}, another archive (the server "
                               f"published the wrong checksum file); archive refused")
        expected = fields[0].lower()
        _drop_stale_parts(target, timeout)
        if target.is_file() and sha256_file(target) == expected and _check_zip(target) is None:
            return "reused", ""
        target.parent.mkdir(parents=True, exist_ok=True)
        downloaded = _retrying(lambda: _download(url, target, timeout, stop), url, stop)
        if downloaded is None:
            return "missing", f"{item.name}: checksum published but the archive is not"
    except (urllib.error.URLError, OSError) as exc:
        return "refused", f"{item.name}: download failed: {exc}"
    except http.client.HTTPException as exc:  # IncompleteRead, BadStatusLine: not OSErrors
        return "refused", f"{item.name}: download failed: response cut short or malformed ({exc!r})"
    digest, part = downloaded
    problem = None if digest == expected else f"sha256 {digest} does not match its .CHECKSUM {expected}"
    problem = problem or _check_zip(part)
    if problem is not None:
        part.unlink(missing_ok=True)
        return "refused", f"{item.name}: {problem}; archive refused"
    # only a verified zip takes the archive's name: atomic, and one another run placed meanwhile holds the same bytes
    try:
        os.replace(part, target)
    except OSError as exc:
        part.unlink(missing_ok=True)
        return "refused", f"{item.name}: could not be placed in the cache: {exc}"
    logger.debug("binance vision: {} verified ({})", item.name, digest)
    return "downloaded", ""


def _extracted(zips: list[Path], workdir: Path) -> Iterator[Path]:
    """Each zip's CSV extracted into ``workdir`` in turn, removed once the next is asked for.

    An OS error extracting one (a full disk, a file size limit) is a :class:`ConfigError` naming the zip and
    ``workdir``; the import then stops and writes nothing.
    """
    for path in zips:
        target = workdir / "its CSV"
        try:
            with zipfile.ZipFile(path) as archive:
                member = archive.namelist()[0]
                target = workdir / Path(member).name
                with archive.open(member) as src, target.open("wb") as dst:
                    shutil.copyfileobj(src, dst, _CHUNK)
        except OSError as exc:
            raise ConfigError(f"binance archive {path}: cannot extract {target.name} into the temporary folder {workdir} "
                              f"({describe_os_error(exc)}); nothing was imported: free space there, or point TMPDIR "
                              f"at a folder with room for one archive's CSV") from None
        try:
            yield target
        finally:
            target.unlink(missing_ok=True)


def _midnight_ns(day: date) -> int:
    return (day - _EPOCH).days * _DAY_NS


def import_archives(
    catalog: Catalog | str | os.PathLike[str],
    zips: list[Path],
    *,
    market: Market,
    data: DataType,
    symbol: str,
    interval: str | None = None,
    dataset: str | None = None,
    mode: Literal["create", "append", "overwrite"] = "create",
    days: tuple[date, date] | None = None,
) -> ImportResult:
    """Import verified archives (from :func:`fetch`) into one dataset, in order.

    The dataset is ``binance/<spot|usdm|coinm>/<symbol>/<bars_<interval>|trades|aggtrades|book_depth>``.
    The CSV of one archive at a time is extracted to a temporary directory (``bookDepth``
    zips are read in place by :func:`tradebus.data.book_depth.import_book_depth`).

    Parameters
    ----------
    days
        ``(start, end)``, UTC days, inclusive: only the trades of these days, or the bars opening
        in them, are imported (a monthly archive holds the whole month). ``None``: every row.

    Raises
    ------
    DataError
        Naming the archive (its zip in the cache) and its CSV, the row and field of the first bad
        value, or no row in ``days``; nothing is written.
    ConfigError
        An OS error extracting a CSV (a full disk, a file size limit; naming the zip and the
        temporary folder) or writing the catalog; nothing is written, the temporary folder is removed.
    """
    if not zips:
        raise DataError("no verified archives to import")
    if data == "bookDepth":
        manifest = import_book_depth(sorted(zips), catalog, symbol, market=catalog_market(market), mode=mode)
        return ImportResult([manifest], "timestamp")
    kind: Literal["bars", "trades"] = "bars" if data == "klines" else "trades"
    name = dataset or ("aggtrades" if data == "aggTrades" else None)
    window = None if days is None else (_midnight_ns(days[0]), _midnight_ns(days[1] + timedelta(days=1)))
    try:
        scratch = tempfile.TemporaryDirectory(prefix="tradebus-binance-")
    except OSError as exc:
        raise ConfigError(f"cannot create a temporary folder in {tempfile.gettempdir()} to extract the binance archives "
                          f"({describe_os_error(exc)}); nothing was imported: point TMPDIR at a writable folder") from None
    with scratch as workdir:
        try:
            return import_path(
                catalog,
                _extracted(sorted(zips), Path(workdir)),
                venue="binance",
                market=catalog_market(market),
                symbol=symbol,
                kind=kind,
                interval=interval,
                dataset=name,
                bar_time="open" if kind == "bars" else "auto",
                mode=mode,
                window_ns=window,
                notes=[f"Binance public data: {len(zips)} verified {data} archives ({zips[0].name} .. {zips[-1].name})"],
                contract_size=_BASE_UNIT_TRADES.get(market),
            )
        except DataError as exc:
            if workdir not in str(exc):
                raise
            # the error names the CSV extracted into the temporary directory, gone once the import stops: name its zip
            text = str(exc)
            for path in zips:
                with zipfile.ZipFile(path) as archive:
                    member = Path(archive.namelist()[0]).name
                text = text.replace(str(Path(workdir) / member), f"{path} ({member})")
            raise DataError(text) from None
