"""Client order ids: unique across restarts, deterministic in backtests, legal on every venue.

An id is four fields without separators (letters and digits only)::

    <tag: 8><run: 8><epoch: 3><n: 1..13>      e.g.  TickEsw1 k3f9a0zq 001 17

``tag``
    The strategy, readable and unique: up to the first five letters and digits of the
    strategy id (padded with ``x``) and three base-36 digits of its CRC-32. Two strategies
    of one run may not share a tag (:meth:`ClientOrderIds.tag` raises); the table
    ``tag -> strategy id`` is kept here and rebuilt from the journal's commands on recovery
    (:meth:`ClientOrderIds.observe`), so every id maps back to its strategy
    (:meth:`ClientOrderIds.strategy_of`).
``run``
    Eight base-36 digits naming the journal: drawn at random when a journal is created and
    stored in its ``meta`` table (:mod:`tradebus.execution.journal`). A backtest has no journal
    and uses :data:`BACKTEST_RUN_ID`, so the same config and data give the same ids.
``epoch``
    Three base-36 digits: the number of times the journal was opened for trading. Each start
    of a daemon on the same journal begins a new epoch before it sends an order.
``n``
    A decimal counter per strategy and epoch, from 1.

A fresh journal gives a new ``run``, a restart on the same journal a new ``epoch``: ids never
repeat across restarts (the ``n`` of a restarted epoch also stays ahead of every id already
journaled in it). Every id is at most 32 letters and digits, which is legal for OKX
``clOrdId`` (1-32 letters and digits), Binance ``newClientOrderId``
(``^[\\.A-Z\\:/a-z0-9_-]{1,36}$``) and Bybit ``orderLinkId`` (up to 36 letters, digits,
``-`` and ``_``).

An id a strategy gives itself (``SubmitOrder.client_order_id``) is used as given; each venue
package declares the form its venue takes (:class:`ClientIdRule`, ``CLIENT_ID_RULE`` in its
``config.py``), and the execution engine denies an order whose id breaks its venue's rule before
it is sent, in a backtest as live.
"""

from __future__ import annotations

import re
import secrets
import zlib
from typing import NamedTuple

from tradebus.errors import OrderError

__all__ = ["BACKTEST_RUN_ID", "MAX_EPOCH", "ClientIdRule", "ClientOrderIds", "is_legal", "new_run_id"]

_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"
_PREFIX_WIDTH = 5
_HASH_WIDTH = 3
TAG_WIDTH = _PREFIX_WIDTH + _HASH_WIDTH
RUN_WIDTH = 8
EPOCH_WIDTH = 3
_N_WIDTH = 32 - TAG_WIDTH - RUN_WIDTH - EPOCH_WIDTH
_HEAD = TAG_WIDTH + RUN_WIDTH + EPOCH_WIDTH
#: The last epoch of a journal (then a new journal is needed).
MAX_EPOCH = 36**EPOCH_WIDTH - 1
_MAX_N = 10**_N_WIDTH - 1

#: The run component of every backtest (no journal): ids depend on config and data only.
BACKTEST_RUN_ID = "0" * RUN_WIDTH

_LEGAL = re.compile(r"[A-Za-z0-9]{1,32}")
_RUN = re.compile(rf"[0-9a-z]{{{RUN_WIDTH}}}")
_SESSION = re.compile(rf"[0-9a-z]{{{RUN_WIDTH + EPOCH_WIDTH}}}")
_ALNUM = re.compile(r"[^A-Za-z0-9]")


def _base36(value: int, width: int) -> str:
    out = []
    for _ in range(width):
        value, digit = divmod(value, 36)
        out.append(_DIGITS[digit])
    return "".join(reversed(out))


def new_run_id() -> str:
    """A random run component (eight base-36 digits, about 41 bits)."""
    return _base36(secrets.randbelow(36**RUN_WIDTH), RUN_WIDTH)


def is_legal(client_order_id: str) -> bool:
    """Whether ``client_order_id`` is legal on every supported venue (1-32 letters and digits)."""
    return _LEGAL.fullmatch(client_order_id) is not None


class ClientIdRule(NamedTuple):
    """The form of a client order id a venue takes (declared by the venue package).

    Attributes
    ----------
    pattern
        What a legal id matches in full.
    text
        The rule as the venue's docs give it, named after the venue's field
        (``"OKX clOrdId: 1-32 letters and digits"``); it is quoted in the denial.
    """

    pattern: re.Pattern[str]
    text: str

    def refusal(self, client_order_id: str) -> str | None:
        """Why the venue would refuse ``client_order_id`` (naming the id and the rule), or ``None``."""
        if self.pattern.fullmatch(client_order_id) is not None:
            return None
        return f"client order id {client_order_id!r} breaks the venue's rule ({self.text})"


class ClientOrderIds:
    """Issues the client order ids of one run (see the module docstring for the layout).

    Parameters
    ----------
    run_id
        The run component (eight base-36 digits); :data:`BACKTEST_RUN_ID` by default.
    epoch
        The epoch component (0 to :data:`MAX_EPOCH`).

    Raises
    ------
    OrderError
        A malformed run id or an epoch out of range.
    """

    __slots__ = ("_counters", "_prefixes", "_session", "_strategy_tags", "_tags", "epoch", "run_id")

    def __init__(self, run_id: str = BACKTEST_RUN_ID, epoch: int = 0) -> None:
        self._tags: dict[str, str] = {}
        self._strategy_tags: dict[str, str] = {}
        self._counters: dict[str, int] = {}
        # strategy id -> its tag and the session: what every id of the session starts with
        self._prefixes: dict[str, str] = {}
        self.run_id = ""
        self.epoch = 0
        self._session = ""
        self.start(run_id, epoch)

    def start(self, run_id: str, epoch: int) -> None:
        """Begin a session (``run``, ``epoch``): the counters restart at 1, the tags are kept."""
        if _RUN.fullmatch(run_id) is None:
            raise OrderError(f"client order ids: run id {run_id!r} is not {RUN_WIDTH} base-36 digits")
        if not 0 <= epoch <= MAX_EPOCH:
            raise OrderError(
                f"client order ids: epoch {epoch} is outside 0..{MAX_EPOCH}; start a new journal"
            )
        self.run_id = run_id
        self.epoch = epoch
        self._session = run_id + _base36(epoch, EPOCH_WIDTH)
        self._counters.clear()
        self._prefixes.clear()

    def tag(self, strategy_id: str) -> str:
        """The eight-character tag of ``strategy_id`` (registered on first use).

        Raises
        ------
        OrderError
            Another strategy of this run already has the same tag (rename one of them).
        """
        tag = self._strategy_tags.get(strategy_id)
        if tag is not None:
            return tag
        prefix = _ALNUM.sub("", strategy_id)[:_PREFIX_WIDTH].ljust(_PREFIX_WIDTH, "x")
        tag = prefix + _base36(zlib.crc32(strategy_id.encode()) % 36**_HASH_WIDTH, _HASH_WIDTH)
        other = self._tags.get(tag)
        if other is not None and other != strategy_id:
            raise OrderError(
                f"client order ids: strategies {other!r} and {strategy_id!r} share the id tag {tag!r}; "
                "rename one of them"
            )
        self._tags[tag] = strategy_id
        self._strategy_tags[strategy_id] = tag
        return tag

    def next(self, strategy_id: str) -> str:
        """The next id of ``strategy_id`` in this session.

        Raises
        ------
        OrderError
            The strategy's tag collides with another's, or its counter is exhausted.
        """
        n = self._counters.get(strategy_id, 0) + 1
        if n > _MAX_N:
            raise OrderError(f"client order ids: strategy {strategy_id!r} used up {_MAX_N} ids in one epoch")
        prefix = self._prefixes.get(strategy_id) or self._prefix(strategy_id)
        self._counters[strategy_id] = n
        return f"{prefix}{n}"

    def _prefix(self, strategy_id: str) -> str:
        """What every id of ``strategy_id`` in this session starts with (its tag registered on first use)."""
        prefix = self._prefixes[strategy_id] = self.tag(strategy_id) + self._session
        return prefix

    def take(self, strategy_id: str, count: int) -> list[str]:
        """The next ``count`` ids of ``strategy_id``, as ``count`` calls of :meth:`next` would give them.

        Raises
        ------
        OrderError
            As :meth:`next`; then no id is taken.
        """
        if count <= 0:
            return []
        first = self._counters.get(strategy_id, 0) + 1
        if first + count - 1 > _MAX_N:
            raise OrderError(f"client order ids: strategy {strategy_id!r} used up {_MAX_N} ids in one epoch")
        prefix = self._prefixes.get(strategy_id) or self._prefix(strategy_id)
        self._counters[strategy_id] = first + count - 1
        return [f"{prefix}{n}" for n in range(first, first + count)]

    def observe(self, client_order_id: str, strategy_id: str) -> None:
        """Take note of an id issued before (journal recovery).

        Its tag maps back to ``strategy_id`` from now on, and an id of the current session
        keeps the strategy's counter ahead of it. Ids of another layout (older journals) are
        ignored: they cannot collide with this layout.
        """
        parsed = self._parse(client_order_id)
        if parsed is None:
            return
        tag, session, n = parsed
        if self._tags.setdefault(tag, strategy_id) == strategy_id:
            self._strategy_tags.setdefault(strategy_id, tag)
        if session == self._session and n > self._counters.get(strategy_id, 0):
            self._counters[strategy_id] = n

    def strategy_of(self, client_order_id: str) -> str | None:
        """The strategy an id was issued for, or ``None`` if its tag is not known to this run."""
        parsed = self._parse(client_order_id)
        return None if parsed is None else self._tags.get(parsed[0])

    @staticmethod
    def _parse(client_order_id: str) -> tuple[str, str, int] | None:
        """``(tag, run + epoch, n)`` of an id of this layout, else ``None``."""
        if len(client_order_id) <= _HEAD or not is_legal(client_order_id):
            return None
        counter = client_order_id[_HEAD:]
        session = client_order_id[TAG_WIDTH:_HEAD]
        if not counter.isdigit() or counter[0] == "0" or _SESSION.fullmatch(session) is None:
            return None
        return client_order_id[:TAG_WIDTH], session, int(counter)
