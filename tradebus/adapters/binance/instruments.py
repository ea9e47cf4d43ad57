"""Binance instruments from the REST ``exchangeInfo`` response.

Tick size comes from ``PRICE_FILTER.tickSize``, lot size from ``LOT_SIZE.stepSize``
(minimum quantity from ``LOT_SIZE.minQty``), the minimum notional from ``NOTIONAL`` /
``MIN_NOTIONAL`` (``minNotional`` on spot, ``notional`` on futures). Fees are not in
``exchangeInfo``; they are given by the caller (account-specific; :func:`load_instruments`, the
registry's loader, leaves them 0 as the other venues' loaders do).

Margin tiers come from another response, USD-M ``GET /fapi/v1/leverageBracket``
(:func:`margin_tiers_from_brackets`, :func:`load_margin_tiers`): a position's tier is chosen by its
notional (``notionalCap``) and its maintenance margin is ``notional * maintMarginRatio - cum``
(:class:`~tradebus.engine.instrument.MarginTier` ``max_notional``).
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import msgspec
from loguru import logger

from tradebus.adapters.binance.config import BinanceMarket
from tradebus.adapters.common.instruments import load_response_file
from tradebus.engine.instrument import Instrument, InstrumentKind, MarginTier
from tradebus.errors import DataError, OrderError

__all__ = [
    "instruments_from_exchange_info", "load_exchange_info", "load_instruments", "load_margin_tiers",
    "margin_tiers_from_brackets",
]


def load_exchange_info(path: str | Path) -> dict[str, Any]:
    """Read an ``exchangeInfo`` JSON file (``.json`` or ``.json.gz``)."""
    path = Path(path)
    try:
        data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        info = msgspec.json.decode(data)
    except (OSError, msgspec.DecodeError, gzip.BadGzipFile) as exc:
        raise DataError(f"{path}: cannot read Binance exchangeInfo ({exc})") from None
    if not isinstance(info, dict) or not isinstance(info.get("symbols"), list):
        raise DataError(f"{path}: not a Binance exchangeInfo response (no 'symbols' list)")
    return info


def _filter(sym: dict[str, Any], *names: str) -> dict[str, Any] | None:
    for f in sym.get("filters", ()):
        if f.get("filterType") in names:
            return f
    return None


def instruments_from_exchange_info(
    info: dict[str, Any],
    market: BinanceMarket,
    *,
    venue: str | None = None,
    symbols: list[str] | None = None,
    maker_fee: float = 0.001,
    taker_fee: float = 0.001,
    trading_only: bool = True,
) -> list[Instrument]:
    """Build :class:`Instrument` objects from a decoded ``exchangeInfo`` response.

    Parameters
    ----------
    info
        The decoded JSON.
    market
        Spot (every pair) or USD-M (perpetual contracts only; delivery contracts are skipped).
    venue
        Venue name for instrument ids (default ``BINANCE`` / ``BINANCE_USDM``).
    symbols
        Keep only these symbols (``None``: all); an unknown one raises :class:`DataError`.
    maker_fee, taker_fee
        Fee rates put on every instrument.
    trading_only
        Skip symbols whose ``status`` is not ``TRADING``.

    Raises
    ------
    DataError
        A kept symbol lacks PRICE_FILTER/LOT_SIZE or has unusable values, a requested
        symbol is absent, or ``market`` is spot and the response is a futures one.
    """
    venue = venue or ("BINANCE" if market is BinanceMarket.SPOT else "BINANCE_USDM")
    wanted = set(symbols) if symbols is not None else None
    out: list[Instrument] = []
    for sym in info.get("symbols", ()):
        name = sym.get("symbol", "")
        if wanted is not None and name not in wanted:
            continue
        if trading_only and sym.get("status") != "TRADING":
            continue
        if market is BinanceMarket.USDM and sym.get("contractType") != "PERPETUAL":
            continue
        if market is BinanceMarket.SPOT and "contractType" in sym:
            raise DataError(f"exchangeInfo symbol {name}: has a contractType: a futures exchangeInfo, not spot's")
        price_f = _filter(sym, "PRICE_FILTER")
        lot_f = _filter(sym, "LOT_SIZE")
        if price_f is None or lot_f is None:
            raise DataError(f"exchangeInfo symbol {name}: missing PRICE_FILTER or LOT_SIZE filter")
        notional_f = _filter(sym, "NOTIONAL", "MIN_NOTIONAL")
        min_notional = 0.0
        if notional_f is not None:
            min_notional = float(notional_f.get("minNotional", notional_f.get("notional", 0.0)))
        try:
            inst = Instrument(
                venue=venue,
                symbol=name,
                kind=InstrumentKind.SPOT if market is BinanceMarket.SPOT else InstrumentKind.PERPETUAL,
                base=sym.get("baseAsset", ""),
                quote=sym.get("quoteAsset", ""),
                tick_size=float(price_f["tickSize"]),
                lot_size=float(lot_f["stepSize"]),
                min_notional=min_notional,
                maker_fee=maker_fee,
                taker_fee=taker_fee,
                min_quantity=float(lot_f.get("minQty", 0.0)),
            )
        except (KeyError, ValueError, OrderError) as exc:
            if wanted is not None:
                raise DataError(f"exchangeInfo symbol {name}: unusable filters ({exc})") from None
            logger.warning("exchangeInfo symbol {}: skipped, unusable filters ({})", name, exc)
            continue
        out.append(inst)
    if wanted is not None:
        missing = wanted - {i.symbol for i in out}
        if missing:
            raise DataError(f"exchangeInfo: symbols not found or not tradable: {sorted(missing)}")
    return out


def margin_tiers_from_brackets(body: str | bytes) -> dict[str, tuple[MarginTier, ...]]:
    """``symbol -> margin tiers`` of a USD-M ``GET /fapi/v1/leverageBracket`` response.

    The response is a list of ``{symbol, brackets}``, or one such object when the request named a
    ``symbol`` (as Binance documents it). Each bracket gives ``notionalCap`` (the tier's ``max_notional``), ``maintMarginRatio``
    and ``initialLeverage`` (its ``max_leverage``); ``cum`` is only checked: the tiers derive it
    (:meth:`Instrument.maintenance_bracket`), and it must agree.

    Raises
    ------
    DataError
        The body is not a list of ``{symbol, brackets}`` nor one, a number is missing or not positive,
        or a published ``cum`` disagrees with the derived amount.
    """
    try:
        items = msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        raise DataError(f"binance leverageBracket response is not JSON: {exc}") from None
    if isinstance(items, dict) and "brackets" in items:  # the answer for one symbol
        items = [items]
    if not isinstance(items, list) or not all(isinstance(i, dict) and "brackets" in i for i in items):
        got = f"an object with keys {sorted(items)[:6]}" if isinstance(items, dict) else type(items).__name__
        raise DataError(
            f"not a binance leverageBracket response (a list of {{symbol, brackets}} or one), got {got}: "
            "another venue's tiers, or another endpoint's response?"
        )
    try:
        out: dict[str, tuple[MarginTier, ...]] = {}
        for item in items:
            rows = sorted(item["brackets"], key=lambda b: float(b["notionalCap"]))
            tiers = tuple(
                MarginTier(float(b["notionalCap"]), float(b["maintMarginRatio"]), float(b["initialLeverage"]))
                for b in rows
            )
            probe = Instrument("BINANCE", str(item["symbol"]), margin_tiers=tiers, leverage=1.0)
            for b, tier in zip(rows, tiers, strict=True):
                rate, amount = probe.maintenance_bracket(tier.max_notional)
                if "cum" in b and abs(amount - float(b["cum"])) > 1e-6 * max(1.0, amount):
                    raise DataError(
                        f"binance leverageBracket {item['symbol']}: cum {b['cum']} of the tier up to "
                        f"{tier.max_notional} disagrees with the derived {amount}"
                    )
            out[str(item["symbol"])] = tiers
    except (KeyError, TypeError, ValueError, OrderError) as exc:
        raise DataError(f"binance leverageBracket response is malformed: {exc}") from None
    return out


def load_margin_tiers(path: str | Path) -> dict[str, tuple[MarginTier, ...]]:
    """:func:`margin_tiers_from_brackets` of a saved response file (errors name the file)."""
    return load_response_file(path, margin_tiers_from_brackets)


def load_instruments(path: str | Path, market: str) -> dict[str, Instrument]:
    """The instruments of a saved ``exchangeInfo`` response of ``market`` (``spot`` or ``usdm``), by instrument id.

    Fees are 0: ``exchangeInfo`` has none (a run config sets them).
    """
    info = load_exchange_info(path)
    instruments = instruments_from_exchange_info(info, BinanceMarket(market), maker_fee=0.0, taker_fee=0.0)
    return {i.instrument_id: i for i in instruments}
