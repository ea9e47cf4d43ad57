"""Recording raw WebSocket frames and reading them back.

Format: gzip-compressed JSON lines, one frame per line::

    {"t": <recv_ns>, "c": "<connection id>", "d": "<raw text frame>"}

(a binary frame is stored base64-encoded under ``"b"`` instead of ``"d"``). The writer
flushes with ``Z_SYNC_FLUSH`` every ``flush_every`` frames and at least every
``flush_interval`` seconds, so after a crash everything up to the last flush is readable
(as after a write that failed: a full disk, a file size limit; see :class:`FrameRecorder`);
:func:`read_frames` reads such a truncated file (and files of several gzip members,
e.g. appended runs) and stops cleanly at the last complete line; a run appended after a
crashed one (a daemon killed, then restarted on the same recording) is read after the
crashed run's last complete line.

Private frames
    A live daemon records its account's user stream in the same file: every *received*
    frame, through :class:`PrivateFrames`, under the connection id ``"private:<stream>:<n>"``
    (:func:`is_private`), with the account's key, secret and passphrase and any
    ``listenKey``/``apiKey``/``signature`` value replaced by ``"<redacted>"``. Frames the
    daemon sends (login, subscribe) and the stream's URL (a Binance listen key is in its
    path) are never recorded. :func:`read_frames` skips private frames unless asked for
    them, so every reader of market data (``tradebus replay``, ``tradebus serve``, imports)
    sees a live recording exactly as a paper one.

REST answers
    A venue whose books resync from a REST snapshot (Binance) records each answer as a line of
    its own, ``{"t": <its receive time>, "c": "rest:<SYMBOL>@<connection id>", "d": "<body>"}``:
    the stream connection the snapshot was fetched for (``"binance-spot:2"``; the fetch of a
    connection that ended is cancelled, so its answer is never recorded after it). The answer
    may come after that connection's last frame (which ended then) or before the next one's
    first: a replay loads it into the book of its own connection only. A recording made before
    the line named its connection (``"rest:<SYMBOL>@<feed>"``, or ``"rest:<SYMBOL>"``) is read
    as before: a snapshot found after a connection's last frame is taken for the next one's.
    Trade histories (``"rest-trades:<SYMBOL>@<feed>"``) name their feed alone.

Stale-feed episodes
    When a feed's watchdog declares it stale, the client records the ``FeedStale`` as a line
    of its own, ``{"t": <when>, "c": "stale:<feed>", "d": "<its last message's receive time>"}``
    (:data:`STALE_PREFIX`): the watchdog fires on a timer between frames, a moment the frames'
    receive times do not give, so a replay blocks the feed's instruments from the same
    moment as the daemon did. A feed of trade channels alone is live again as soon as its
    connection proves it (any frame, or the answer to a WebSocket ping: see
    :meth:`~tradebus.adapters.common.client.WsClient.live_ns`), which ends the episode in the
    market guard; a pong is no frame, so the client records the first proof after each
    ``FeedStale`` as ``{"t": <its receive time>, "c": "live:<feed>", "d": "pong"}`` (or
    ``"frame"``; :data:`LIVE_PREFIX`), and a replay lifts the block at the same moment.
    :func:`read_frames` yields these lines only if asked for them (``episodes``).

Ends of connections
    A client invalidates its books the moment its connection ends (orders on them are denied
    until the next connection's snapshot), a moment no frame gives: the recorder writes it as
    ``{"t": <when>, "c": "end:<connection id>", "d": "<reason>"}`` (:data:`END_PREFIX`;
    ``"end:binance-spot:1"``; not when the daemon stops it: a stop keeps the books), before anything of
    the next connection, and a replay invalidates that connection's books at that time, with
    that reason. A private stream's ends are not recorded (a replay reads no private stream). In
    a recording made before these lines, a replay invalidates the books at the next connection's
    first line, as before. :func:`read_frames` yields these lines only if asked for them (``ends``).

The daemon's run
    The daemon records the moment it starts its kernel (the strategies' ``on_start``), before its
    feeds connect, as ``{"t": <when>, "c": "run:start", "d": ""}``, before any market frame of its run: a replay
    starts its kernel at that time, so a timer set in ``on_start`` is due when it was in the daemon.
    A daemon with a journal writes ``"d": "{\"orders\": <restored>, \"recovered_ns\": <when>}"``: when it
    replayed the journal and how many orders it restored (a replay of a later session recovers
    there, and checks it restored as many; :func:`~tradebus.node.playback.play`), and, when a margin
    loan was owed through whole hours it was down, ``"missed_hours"``: the prices it charged them at
    (:func:`~tradebus.node.missed_hours.missed_record`), which the replay charges too.
    A daemon's timers and alerts fire on the wall clock, also while no frame arrives; a replay's
    clock fires them before the first line at or after their time. The daemon records the moment it
    stops, after firing what was due by then, as ``{"t": <when>, "c": "run:stop"}``
    (:data:`RUN_PREFIX`), so a replay fires what fell due after the last frame, as the daemon
    did. :func:`read_frames` yields these lines only if asked for them (``runs``).

:func:`convert_hftbacktest` turns the shared Binance captures (``"<recv_ts> <json>"``
lines, ns or µs) into this format.
"""

from __future__ import annotations

import base64
import gzip
import os
import re
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Protocol

import msgspec
from loguru import logger

from tradebus.errors import ConfigError, DataError, describe_os_error
from tradebus.locks import cannot_lock, take_lock

__all__ = [
    "END_PREFIX",
    "LIVE_PREFIX",
    "PRIVATE_PREFIX",
    "RUN_PREFIX",
    "STALE_PREFIX",
    "FrameRecorder",
    "FrameWriter",
    "PrivateFrames",
    "convert_hftbacktest",
    "first_line",
    "hold_recording",
    "line_of",
    "is_private",
    "iter_hftbacktest",
    "read_frames",
]

#: Connection-id prefix of the frames of a private (account) stream.
PRIVATE_PREFIX = "private:"
#: Connection-id prefix of a recorded stale-feed episode (``"stale:<feed>"``; not a frame).
STALE_PREFIX = "stale:"
#: Connection-id prefix of a recorded proof of life of a stale feed's connection (``"live:<feed>"``; not a frame).
LIVE_PREFIX = "live:"
#: Connection-id prefix of a recorded end of a stream connection (``"end:<connection id>"``; not a frame).
END_PREFIX = "end:"
#: Connection-id prefix of a recorded moment of the daemon's run (``"run:start"``, ``"run:stop"``; not a frame).
RUN_PREFIX = "run:"
#: What replaces a credential in a recorded private frame.
REDACTED = "<redacted>"
#: JSON string fields whose values are credentials whatever the venue (a listen key reads the account).
_CREDENTIAL_FIELDS = re.compile(rb'("(?:listenKey|apiKey|signature|sign|passphrase)"\s*:\s*")[^"]*(")')

_encoder = msgspec.json.Encoder()


class _Line(msgspec.Struct, omit_defaults=True):
    t: int
    c: str
    d: str | None = None
    b: str | None = None


_decoder = msgspec.json.Decoder(_Line)


class _CaptureLine(msgspec.Struct):
    """What :func:`convert_hftbacktest` reads of a capture line: a combined-stream frame's ``stream``."""

    stream: str | None = None


_capture_line = msgspec.json.Decoder(_CaptureLine)


class FrameWriter(Protocol):
    """What a WebSocket client records its received frames into (:class:`FrameRecorder`, :class:`PrivateFrames`)."""

    def write(self, recv_ns: int, conn: str, raw: str | bytes) -> None:
        """Record one frame received at ``recv_ns`` on connection ``conn``."""

    def flush(self) -> None:
        """Make everything written so far readable even if the process dies now."""

    def connection_ended(self, recv_ns: int, conn: str, reason: str) -> None:
        """Record that connection ``conn`` ended at ``recv_ns`` for ``reason`` (its books went out of sync)."""


def hold_recording(path: str | Path) -> int | None:
    """A descriptor of the recording ``path`` (created empty if missing) holding an exclusive ``flock`` on it.

    A daemon holds its recording so for its run: two daemons appending to one file interleave their gzip
    streams, and neither's session reads back. The lock goes with the process (``kill -9`` included).

    Returns
    -------
    int or None
        The descriptor, to close once the recording is closed; ``None`` where the file system cannot lock
        (some network file systems; warned of).

    Raises
    ------
    ConfigError
        The file cannot be opened, or another running process holds it (named: pid, host and command line).
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    except OSError as exc:
        raise ConfigError(f"record: cannot write {path} ({exc.strerror})") from None
    try:
        holder = take_lock(fd)
    except OSError as exc:
        os.close(fd)
        logger.warning("{}; a second daemon recording into it is not refused", cannot_lock(f"record {path}", exc))
        return None
    if holder is not None:
        os.close(fd)
        raise ConfigError(
            f"record {path}: in use by another running daemon ({holder}); its frames and this run's would "
            "interleave in the file and neither session would read back: stop that daemon, or give this config "
            "a recording of its own"
        )
    return fd


def is_private(conn: str) -> bool:
    """Whether a recorded connection id is a private (account) stream's."""
    return conn.startswith(PRIVATE_PREFIX)


class FrameRecorder:
    """Append raw frames with their receive time and connection id to a gzip JSONL file.

    Parameters
    ----------
    path
        Output file (``.jsonl.gz``); parent folders are created. An existing file is
        appended to (a new gzip member).
    flush_every
        Sync-flush after this many frames.
    flush_interval
        Sync-flush when this many seconds passed since the last flush (checked on write).
    on_failure
        Called once with :attr:`failure` when a write or flush fails (it must not raise).

    Notes
    -----
    A write or flush that fails (a full disk, a file size limit) is the recorder's :attr:`failure`,
    a :class:`~tradebus.errors.ConfigError` naming the file and the errno: the file is closed (it is
    readable up to the last flush), ``on_failure`` is called, and that write and every later one raise
    it, so a feed client stops rather than trade on frames it cannot record.
    """

    def __init__(
        self,
        path: str | Path,
        flush_every: int = 256,
        flush_interval: float = 1.0,
        on_failure: Callable[[ConfigError], None] | None = None,
    ) -> None:
        self.path = Path(path)
        self.on_failure = on_failure
        #: The first write or flush that failed (names the file and the errno).
        self.failure: ConfigError | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = gzip.open(self.path, "ab", compresslevel=6)
        except OSError as exc:
            raise ConfigError(f"record: cannot write {self.path} ({exc.strerror})") from None
        self._flush_every = max(1, flush_every)
        self._flush_interval = flush_interval
        self._pending = 0
        self._last_flush = time.monotonic()
        self.frames = 0

    def write(self, recv_ns: int, conn: str, raw: str | bytes) -> None:
        """Record one frame received at ``recv_ns`` on connection ``conn``.

        Raises
        ------
        ConfigError
            The file cannot be written, now or before (:attr:`failure`).
        """
        if self.failure is not None:
            raise self.failure
        if isinstance(raw, bytes):
            line = _Line(recv_ns, conn, b=base64.b64encode(raw).decode("ascii"))
        else:
            line = _Line(recv_ns, conn, d=raw)
        try:
            self._file.write(_encoder.encode(line) + b"\n")
        except OSError as exc:
            raise self._failed(exc) from None
        self.frames += 1
        self._pending += 1
        if self._pending >= self._flush_every or time.monotonic() - self._last_flush >= self._flush_interval:
            self.flush()

    def connection_ended(self, recv_ns: int, conn: str, reason: str) -> None:
        """Record the end of connection ``conn`` at ``recv_ns`` (an ``"end:<conn>"`` line, :data:`END_PREFIX`).

        Nothing is written once the recorder is closed (or failed: that failure was reported).

        Raises
        ------
        ConfigError
            The file cannot be written now (:attr:`failure`).
        """
        if not self.closed:
            self.write(recv_ns, END_PREFIX + conn, reason)

    def flush(self) -> None:
        """Make everything written so far readable even if the process dies now.

        Raises
        ------
        ConfigError
            The file cannot be written (:attr:`failure`; nothing is raised once the recorder failed).
        """
        if self._file.closed:
            return
        try:
            self._file.flush(zlib.Z_SYNC_FLUSH)
            self._file.fileobj.flush()  # type: ignore[union-attr]
        except OSError as exc:
            raise self._failed(exc) from None
        self._pending = 0
        self._last_flush = time.monotonic()

    def flush_written(self) -> None:
        """:meth:`flush` if a line was written since the last flush; never raises.

        For a journal to call before each of its writes (``Journal.before_write``): the frames an order or a
        fill was decided on are then readable before the journal holds it, whenever the process is killed.
        A failure is :attr:`failure`, told to ``on_failure`` (the daemon stops on it), not raised into the
        journal's write.
        """
        if self._pending and self.failure is None:
            try:
                self.flush()
            except ConfigError:
                pass  # told to on_failure

    def _failed(self, exc: OSError) -> ConfigError:
        """Keep the first failed write as :attr:`failure`, close the file and tell ``on_failure``."""
        self.failure = error = ConfigError(f"record {self.path}: cannot write it ({describe_os_error(exc)})")
        logger.error("{}: no more frames are recorded (the file is readable up to its last flush)", error)
        try:
            self._file.close()
        except OSError:
            pass  # what the flush could not write; the descriptor is closed
        if self.on_failure is not None:
            self.on_failure(error)
        return error

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._file.closed

    def close(self) -> None:
        """Flush and close (writes the gzip trailer).

        Raises
        ------
        ConfigError
            The rest cannot be written (:attr:`failure`; the file is closed).
        """
        if not self._file.closed:
            try:
                self._file.close()
            except OSError as exc:
                raise self._failed(exc) from None

    def __enter__(self) -> FrameRecorder:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class PrivateFrames:
    """A private stream's view of a :class:`FrameRecorder`: frames tagged private, credentials redacted.

    Attach it as a user-stream client's ``recorder``: each received frame is written to
    ``recorder`` under ``"private:<conn>"`` (:func:`is_private`) with every occurrence of a
    ``secrets`` value, and the value of every ``listenKey``, ``apiKey``, ``signature``,
    ``sign`` and ``passphrase`` JSON field, replaced by ``"<redacted>"``. The owner closes
    ``recorder``; frames arriving after that are dropped (counted in ``dropped``).

    Parameters
    ----------
    recorder
        The run's recorder (shared with the public feeds).
    secrets
        Values never to record (the account's key, secret, passphrase); empty ones are ignored.
    """

    __slots__ = ("_secrets", "dropped", "frames", "recorder", "redacted")

    def __init__(self, recorder: FrameRecorder, secrets: Sequence[str]) -> None:
        self.recorder = recorder
        self._secrets = tuple(s.encode() for s in secrets if s)
        self.frames = 0
        self.redacted = 0
        self.dropped = 0

    def __repr__(self) -> str:
        return f"PrivateFrames({self.recorder.path}, {len(self._secrets)} secret(s))"

    def write(self, recv_ns: int, conn: str, raw: str | bytes) -> None:
        """Record one received private frame (tagged, redacted)."""
        if self.recorder.closed:
            self.dropped += 1
            return
        data = raw.encode() if isinstance(raw, str) else raw
        clean = _CREDENTIAL_FIELDS.sub(rb"\1" + REDACTED.encode() + rb"\2", data)
        for secret in self._secrets:
            clean = clean.replace(secret, REDACTED.encode())
        if clean != data:
            self.redacted += 1
        self.recorder.write(recv_ns, PRIVATE_PREFIX + conn, clean.decode() if isinstance(raw, str) else clean)
        self.frames += 1

    def flush(self) -> None:
        """Flush the shared recorder."""
        self.recorder.flush()

    def connection_ended(self, recv_ns: int, conn: str, reason: str) -> None:
        """Not recorded: a private stream has no book, and a replay reads no private stream."""


#: The first bytes of a gzip member (magic and the deflate method).
_GZIP_MAGIC = b"\x1f\x8b\x08"


def _decompressed_chunks(path: Path, chunk_size: int = 1 << 16) -> Iterator[bytes | None]:
    """Decompressed bytes of every gzip member of ``path``; stops quietly at a truncated end.

    A member cut short (a recorder killed before it closed) and followed by another (the run
    restarted on the file appends a member) is read up to the cut, then ``None`` is yielded
    and reading goes on at the next member. Damage with no member after it raises.
    """
    with open(path, "rb") as fh:
        inflater = zlib.decompressobj(wbits=31)
        member = offset = 0  # file offsets of the current member and of ``data``
        while True:
            data = fh.read(chunk_size)
            if not data:
                if not inflater.eof:
                    tail = inflater.flush()
                    if tail:
                        yield tail
                return
            while data:
                before = inflater.copy()
                try:
                    out = inflater.decompress(data)
                except zlib.error as exc:
                    following = _next_member(fh, member + 1)
                    if following is None:
                        raise DataError(f"{path}: corrupt gzip data ({exc})") from None
                    logger.warning(
                        "{}: the gzip member at byte {} is cut short before byte {} (a recorder killed before "
                        "it closed, then appended to?); reading on from the next member",
                        path, member, following,
                    )
                    try:  # what the cut member holds before the next one begins
                        out = before.decompress(data[: max(0, following - offset)]) + before.flush()
                    except zlib.error:
                        out = b""
                    if out:
                        yield out
                    yield None
                    fh.seek(following)
                    member = offset = following
                    inflater = zlib.decompressobj(wbits=31)
                    break
                if out:
                    yield out
                if inflater.eof:
                    unused = inflater.unused_data
                    offset += len(data) - len(unused)
                    member = offset
                    data = unused
                    inflater = zlib.decompressobj(wbits=31)
                else:
                    offset += len(data)
                    data = b""


def _next_member(fh: BinaryIO, start: int, chunk_size: int = 1 << 16) -> int | None:
    """The file offset of the first gzip member header at or after ``start``, or ``None``."""
    fh.seek(start)
    position = start
    carry = b""
    while True:
        data = fh.read(chunk_size)
        if not data:
            return None
        window = carry + data
        found = window.find(_GZIP_MAGIC)
        if found >= 0:
            return position - len(carry) + found
        position += len(data)
        carry = window[-(len(_GZIP_MAGIC) - 1) :]


def _complete_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """Yield ``(lineno, line)`` for every complete (newline-ended) line of a gzip file, without the newline.

    An incomplete line (a writer killed mid-line, before a later run appended a member, or at
    the end of the file) is skipped with a warning naming its size and the line before it.
    """
    rest = b""
    lineno = 0
    for chunk in _decompressed_chunks(path):
        if chunk is None:  # the member before was cut short: its incomplete last line is not a frame
            if rest:
                logger.warning("{}: skipped an incomplete line ({} bytes) after line {}", path, len(rest), lineno)
            rest = b""
            continue
        lines = (rest + chunk).split(b"\n")
        rest = lines.pop()
        for line in lines:
            lineno += 1
            yield lineno, line
    if rest:
        logger.warning("{}: skipped an incomplete last line ({} bytes) after line {}", path, len(rest), lineno)


def first_line(path: str | Path) -> bytes | None:
    """The first complete line of a gzip recording or capture, with its newline, as the readers find it.

    A member cut short before its first line ends and followed by another is read on as
    :func:`read_frames` and :func:`iter_hftbacktest` read it; ``None`` when no line is complete.

    Raises
    ------
    DataError
        Gzip data damaged with no member after the damage.
    """
    lines = _complete_lines(Path(path))
    try:
        return next(lines)[1] + b"\n"
    except StopIteration:
        return None
    finally:
        lines.close()


def read_frames(
    path: str | Path, *, private: bool = False, episodes: bool = False, runs: bool = False, ends: bool = False
) -> Iterator[tuple[int, str, str | bytes]]:
    """Yield ``(recv_ns, conn, raw)`` for every complete frame line of a recording.

    Frames of private streams (:func:`is_private`) are skipped unless ``private``, the lines
    of stale-feed episodes (:data:`STALE_PREFIX`, :data:`LIVE_PREFIX`) unless ``episodes``,
    those of the daemon's run (:data:`RUN_PREFIX`) unless ``runs``, the ends of connections
    (:data:`END_PREFIX`) unless ``ends``.

    Raises :class:`DataError` naming the file and line for a line that is not a frame
    record; a final incomplete line (crash before flush) is skipped with a warning.
    """
    path = Path(path)
    for lineno, raw_line in _complete_lines(path):
        if not raw_line:
            continue
        try:
            rec = _decoder.decode(raw_line)
        except msgspec.DecodeError as exc:
            raise DataError(f"{path}: line {lineno} is not a frame record ({exc})") from None
        if not private and rec.c.startswith(PRIVATE_PREFIX):
            continue
        if not episodes and rec.c.startswith((STALE_PREFIX, LIVE_PREFIX)):
            continue
        if not runs and rec.c.startswith(RUN_PREFIX):
            continue
        if not ends and rec.c.startswith(END_PREFIX):
            continue
        if rec.d is not None:
            yield rec.t, rec.c, rec.d
        elif rec.b is not None:
            yield rec.t, rec.c, base64.b64decode(rec.b)
        else:
            raise DataError(f"{path}: line {lineno} has neither 'd' (text) nor 'b' (binary)")


def line_of(path: str | Path, conn: str, recv_ns: int) -> int | None:
    """The number of the first line of a recording recorded at ``recv_ns`` on ``conn`` (``None``: none is).

    A second read of the file, for an error message that names the line.
    """
    needle = _encoder.encode(conn)
    for lineno, raw_line in _complete_lines(Path(path)):
        if needle in raw_line:
            try:
                rec = _decoder.decode(raw_line)
            except msgspec.DecodeError:
                continue
            if rec.c == conn and rec.t == recv_ns:
                return lineno
    return None


def iter_hftbacktest(path: str | Path) -> Iterator[tuple[int, str]]:
    """Yield ``(recv_ns, raw_json)`` from a hftbacktest capture (``"<recv_ts> <json>"`` gzip lines).

    Receive times below 1e17 are taken as microseconds (the 2023 captures) and scaled to ns.
    A capture cut short (its collector killed) is read up to its last complete line, as
    :func:`read_frames` reads a recording.

    Raises
    ------
    DataError
        A line that is not ``"<recv_ts> <json>"`` or not UTF-8 (names the file and line),
        or gzip data damaged before its end.
    """
    path = Path(path)
    for lineno, data in _complete_lines(path):
        try:
            line = data.rstrip(b"\r").decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DataError(f"{path}: line {lineno}: not UTF-8 text ({exc})") from None
        if not line:
            continue
        ts_text, sep, raw = line.partition(" ")
        if not sep or not ts_text.isdigit():
            raise DataError(f"{path}: line {lineno}: expected '<recv_ts> <json>', got {line[:60]!r}")
        ts = int(ts_text)
        yield (ts * 1000 if ts < 10**17 else ts), raw


def convert_hftbacktest(src: str | Path, dst: str | Path, conn: str = "hftbacktest", limit: int | None = None) -> int:
    """Convert a hftbacktest capture into the recorder format; return the number of frames written.

    Stream frames are written under ``conn``. The capture's REST depth snapshot (its lines
    that are not combined-stream frames) is written under ``"rest:<SYMBOL>"``, the
    connection id a live recorder gives the snapshots it fetches, so a replay of the
    converted file loads the book from it; ``SYMBOL`` is the capture's symbol, read from
    its stream names. ``limit`` keeps only the first ``limit`` frames (to cut fixtures).

    Raises
    ------
    DataError
        A snapshot line in a capture whose streams name no symbol or several.
    """
    symbols: set[str] = set()
    snapshot_lines = 0
    for lineno, (_, raw) in enumerate(iter_hftbacktest(src), 1):
        stream = _capture_stream(src, lineno, raw)
        if stream is None:
            snapshot_lines += 1
        else:
            symbols.add(stream.partition("@")[0].upper())
    if snapshot_lines and len(symbols) != 1:
        raise DataError(
            f"{src}: a depth snapshot line, but the capture's streams name {len(symbols)} symbols "
            f"({', '.join(sorted(symbols)) or 'none'}): cannot tell whose book it seeds"
        )
    snapshot_conn = f"rest:{min(symbols)}" if symbols else conn
    n = 0
    with FrameRecorder(dst, flush_every=4096, flush_interval=3600.0) as rec:
        for lineno, (recv_ns, raw) in enumerate(iter_hftbacktest(src), 1):
            if limit is not None and n >= limit:
                break
            rec.write(recv_ns, conn if _capture_stream(src, lineno, raw) is not None else snapshot_conn, raw)
            n += 1
    return n


def _capture_stream(src: str | Path, lineno: int, raw: str) -> str | None:
    """The stream name of a capture line's combined-stream frame, ``None`` for the REST snapshot line."""
    try:
        return _capture_line.decode(raw).stream
    except msgspec.DecodeError as exc:
        raise DataError(f"{src}: line {lineno}: not a JSON object with a string 'stream' or none ({exc})") from None
