"""Download published exchange archives into a cache: shared by every venue's archive module.

One archive per period (a day or a month) under a base URL. :func:`fetch` downloads them with at most ``workers``
in parallel into a cache directory mirroring the URL layout. An archive already there that verifies is reused (a
re-run resumes where the last one stopped). Each download streams into a ``.part`` file of its own in the archive's
directory and is renamed onto it only once verified, so two runs sharing a cache can fetch the same archive at once;
the ``.part`` files a killed run left (unwritten for an hour) are removed when their archive is next fetched. A period
the server does not have (HTTP 404) is listed as missing. An HTTP 429 or 5xx is asked again, up to :data:`RETRIES`
times, after the ``Retry-After`` the server names (at most :data:`RETRY_CAP_S`), else 1, 2, 4 s; then the archive is
refused. Ctrl-C or SIGTERM stops it at once: no further archive is requested, the ones being downloaded are dropped
(their ``.part`` files removed), the verified ones stay for the next run.

Verification is the venue's: where it publishes a checksum file beside each archive (Binance's ``.CHECKSUM``,
``<sha256>  <name>``), the sha256 must match it; in every case the venue's ``verify`` callable (the archive's
integrity: zip CRCs, the whole gzip stream, a readable tar, a header it knows) must accept the file.
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
from typing import Any, TypeVar

from loguru import logger

from tradebus.data.catalog import Catalog, sha256_file
from tradebus.data.ingest import ImportResult, import_path
from tradebus.errors import ConfigError, DataError, describe_os_error

__all__ = [
    "RETRIES", "RETRY_CAP_S", "Archive", "FetchReport", "Verify", "check_zip_csv", "day_window", "fetch", "import_zipped_csvs"
]

_CHUNK = 1 << 20
_T = TypeVar("_T")
RETRIES = 3
"""Times a request answered 429 (rate limited) or 5xx is asked again before its archive is refused."""
RETRY_CAP_S = 60.0
"""Longest wait before asking again, whatever ``Retry-After`` says."""
_RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
_STALE_PART_S = 3600.0
"""A ``.part`` file unwritten this long (seconds) is a killed run's: a live download writes to its own at every read."""
_EPOCH = date(1970, 1, 1)
_DAY_NS = 86_400 * 10**9
Verify = Callable[[Path], "str | None"]
"""Why an archive file cannot be imported (``None``: it is sound)."""


@dataclass(frozen=True, order=True)
class Archive:
    """One published archive: its period label (``2021-01-08`` or ``2021-01``) and path under the base URL."""

    period: str
    path: str

    @property
    def name(self) -> str:
        """The archive's file name."""
        return self.path.rsplit("/", 1)[-1]


class _Stopped(Exception):
    """The fetch was interrupted: a download in flight gives up."""


@dataclass
class FetchReport:
    """What :func:`fetch` did.

    Attributes
    ----------
    ready
        Verified archives in the cache, in period order.
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
            if getattr(response, "length", None):  # bytes of its Content-Length not received: the connection dropped
                raise http.client.IncompleteRead(b"", response.length)
    except urllib.error.HTTPError as exc:
        part.unlink(missing_ok=True)
        if exc.code == 404:
            return None
        raise
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    return digest.hexdigest(), part


def _drop_stale_parts(target: Path, timeout: float, venue: str) -> None:
    """Remove the ``.part`` files of ``target`` a killed run left (unwritten for ``_STALE_PART_S``, or ``2 * timeout``).

    Each download's part file has a name of its own, so no later download overwrites a SIGKILLed one's;
    a part still being written (another run's, fetching the same archive) is newer and kept.
    """
    cutoff = time.time() - max(_STALE_PART_S, 2.0 * timeout)
    for part in target.parent.glob(f"{glob.escape(target.name)}.*part"):
        try:
            if part.stat().st_mtime < cutoff:
                part.unlink()
                logger.info("{}: removed {}, left by a run that was killed", venue, part)
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


def _retrying(call: Callable[[], _T], url: str, venue: str, stop: threading.Event) -> _T:
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
        logger.info("{}: {} answered HTTP {}; asking again in {:g} s ({} of {})", venue, url, status, wait,
                    attempt, RETRIES)
        if stop.wait(wait):
            raise _Stopped


def fetch(
    items: list[Archive],
    cache_dir: Path,
    *,
    base_url: str,
    venue: str,
    home: str,
    verify: Verify,
    checksum: str | None = None,
    workers: int = 4,
    timeout: float = 60.0,
    on_done: Callable[[Archive, str], None] | None = None,
) -> FetchReport:
    """Download and verify archives into ``cache_dir`` (see the module docstring).

    Parameters
    ----------
    items
        The archives, from the venue module's ``archives``.
    cache_dir
        Where the archives are kept (mirroring the URL layout); re-runs reuse verified ones.
    base_url
        URL prefix of the archive paths.
    venue
        Names the archive tree in logs and errors (``binance vision``, ``bybit``, ``okx``).
    home
        The venue's own base URL, named when ``base_url`` is not one.
    verify
        Why a downloaded (or cached) archive cannot be imported, ``None`` when it is sound.
    checksum
        Suffix of the checksum file published beside each archive (``.CHECKSUM``), or ``None`` when the venue
        publishes none (then a cached archive is reused when ``verify`` accepts it, and a 404 of the archive
        itself marks the period missing).
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
        raise ConfigError(f"base URL {base_url!r} is not an http:// or https:// URL with a host ({venue}'s is {home}); "
                          f"nothing was downloaded")
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
    where = _Where(cache_dir, base, venue, verify, checksum, timeout, stop)

    def one(item: Archive) -> None:
        if stop.is_set():
            return
        try:
            outcome, message = _fetch_one(item, where)
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

    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=venue.replace(" ", "-"))
    try:
        for future in [pool.submit(one, item) for item in items]:
            future.result()
    except BaseException:  # Ctrl-C, SIGTERM: the queued archives are dropped, not downloaded before stopping
        stop.set()
        logger.warning("{}: stopping; the downloads in flight are dropped, the verified archives kept "
                       "in {} for the next run", venue, cache_dir)
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown()
    report.ready = [ready[p] for p in sorted(ready)]
    for name in ("downloaded", "reused", "missing", "refused"):
        getattr(report, name).sort()
    return report


@dataclass(frozen=True)
class _Where:
    """What every archive of one :func:`fetch` shares."""

    cache_dir: Path
    base: str
    venue: str
    verify: Verify
    checksum: str | None
    timeout: float
    stop: threading.Event


def _expected_sha256(item: Archive, url: str, where: _Where) -> tuple[str | None, str]:
    """The sha256 the checksum file beside ``url`` names: ``(digest, "")``, or ``(None, outcome)``."""
    suffix = where.checksum or ""
    checksum = _retrying(lambda: _get(url + suffix, where.timeout), url + suffix, where.venue, where.stop)
    if checksum is None:
        return None, "missing"
    fields = checksum.decode("ascii", "replace").split()
    if not fields or len(fields[0]) != 64:
        return None, f"{item.name}: malformed {suffix} {checksum[:80]!r}"
    named = fields[1].lstrip("*") if len(fields) > 1 else item.name  # sha256sum's binary mode marks "*name"
    if named != item.name:
        return None, (f"{item.name}: its {suffix} file names {named!r}, another archive (the server "
                      f"published the wrong checksum file); archive refused")
    return fields[0].lower(), ""


def _fetch_one(item: Archive, where: _Where) -> tuple[str, str]:
    url = f"{where.base}/{item.path}"
    target = where.cache_dir / item.path
    expected: str | None = None
    try:
        if where.checksum is not None:
            expected, why = _expected_sha256(item, url, where)
            if expected is None:
                return ("missing", "") if why == "missing" else ("refused", why)
        _drop_stale_parts(target, where.timeout, where.venue)
        if (target.is_file() and (expected is None or sha256_file(target) == expected)
                and where.verify(target) is None):
            return "reused", ""
        target.parent.mkdir(parents=True, exist_ok=True)
        downloaded = _retrying(lambda: _download(url, target, where.timeout, where.stop), url, where.venue, where.stop)
        if downloaded is None:
            return "missing", ""
    except (urllib.error.URLError, OSError) as exc:
        return "refused", f"{item.name}: download failed: {exc}"
    except http.client.HTTPException as exc:  # IncompleteRead, BadStatusLine: not OSErrors
        return "refused", f"{item.name}: download failed: response cut short or malformed ({exc!r})"
    digest, part = downloaded
    problem = None if expected is None or digest == expected else (
        f"sha256 {digest} does not match its {where.checksum} {expected}")
    problem = problem or where.verify(part)
    if problem is not None:
        part.unlink(missing_ok=True)
        return "refused", f"{item.name}: {problem}; archive refused"
    # only a verified archive takes its name: atomic, and one another run placed meanwhile holds the same bytes
    try:
        os.replace(part, target)
    except OSError as exc:
        part.unlink(missing_ok=True)
        return "refused", f"{item.name}: could not be placed in the cache: {exc}"
    logger.debug("{}: {} verified ({})", where.venue, item.name, digest)
    return "downloaded", ""


def day_window(days: tuple[date, date] | None) -> tuple[int, int] | None:
    """``[start midnight, the midnight after end)`` in ns since the epoch of UTC days ``(start, end)``; ``None``: none."""
    if days is None:
        return None
    return ((days[0] - _EPOCH).days * _DAY_NS, (days[1] + timedelta(days=1) - _EPOCH).days * _DAY_NS)


def check_zip_csv(path: Path) -> str | None:
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


def _extracted(zips: list[Path], workdir: Path, venue: str) -> Iterator[Path]:
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
            raise ConfigError(f"{venue} archive {path}: cannot extract {target.name} into the temporary folder {workdir} "
                              f"({describe_os_error(exc)}); nothing was imported: free space there, or point TMPDIR "
                              f"at a folder with room for one archive's CSV") from None
        try:
            yield target
        finally:
            target.unlink(missing_ok=True)


def import_zipped_csvs(
    catalog: Catalog | str | os.PathLike[str], zips: list[Path], *, venue: str, **options: Any
) -> ImportResult:
    """Import the CSVs of verified zips (one CSV each, see :func:`check_zip_csv`) as one dataset, in order.

    The CSV of one zip at a time is extracted into a temporary folder and read by
    :func:`tradebus.data.ingest.import_path` (``venue`` and ``options`` are its arguments); an error naming
    an extracted CSV names its zip instead.

    Raises
    ------
    DataError
        As :func:`~tradebus.data.ingest.import_path`; nothing is written.
    ConfigError
        An OS error creating the temporary folder, extracting a CSV (a full disk, a file size limit; naming
        the zip and the temporary folder) or writing the catalog; nothing is written.
    """
    try:
        scratch = tempfile.TemporaryDirectory(prefix=f"tradebus-{venue}-")
    except OSError as exc:
        raise ConfigError(f"cannot create a temporary folder in {tempfile.gettempdir()} to extract the {venue} archives "
                          f"({describe_os_error(exc)}); nothing was imported: point TMPDIR at a writable folder") from None
    with scratch as workdir:
        try:
            return import_path(catalog, _extracted(sorted(zips), Path(workdir), venue), venue=venue, **options)
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
