"""Bybit instruments from the REST response of ``GET /v5/market/instruments-info``.

Mapping (fees are not in this response; they stay 0 and come from the run config):

* ``tick_size`` = ``priceFilter.tickSize``; ``min_quantity`` = ``lotSizeFilter.minOrderQty``.
* spot: ``lot_size`` = ``basePrecision``; ``min_notional`` = ``minOrderAmt`` (quote currency).
* linear: ``lot_size`` = ``qtyStep``; ``min_notional`` = ``minNotionalValue``;
  only ``LinearPerpetual`` (kind PERPETUAL); dated ``LinearFutures`` are skipped
  with a logged reason (no expiring kind in :class:`InstrumentKind`).
* The symbol gets the category suffix of
  :func:`tradebus.adapters.bybit.parse.instrument_symbol` (``BTCUSDT-LINEAR``), so
  spot and linear instruments of the same Bybit symbol have distinct ids.
* Instruments whose ``status`` is not ``Trading`` are skipped.
* A perpetual's maintenance margin counts Bybit's fee to close (``config.MAINTENANCE_CLOSE_FEE``).

Margin tiers come from another response, ``GET /v5/market/risk-limit?category=linear``
(:func:`margin_tiers_from_risk_limits`): Bybit chooses a position's tier by its value
(``riskLimitValue``) and its maintenance margin is ``value * maintenanceMargin - mmDeduction``, the
deduction making it continuous, as Binance's brackets
(:class:`~tradebus.engine.instrument.MarginTier` ``max_notional``); ``maxLeverage`` is the tier's
``max_leverage``.
"""

from __future__ import annotations

import math
from pathlib import Path

import msgspec
from loguru import logger

from tradebus.adapters.bybit.parse import instrument_symbol
from tradebus.adapters.bybit.schemas import (
    BybitInstrument, BybitInstrumentsResponse, BybitRiskLimit, BybitRiskLimitResponse,
)
from tradebus.adapters.common.instruments import load_instruments_file, load_response_file
from tradebus.adapters.bybit.config import MAINTENANCE_CLOSE_FEE
from tradebus.engine.instrument import CloseFee, Instrument, InstrumentKind, MarginTier
from tradebus.errors import DataError, OrderError

__all__ = [
    "instrument_from_bybit", "load_instruments", "load_margin_tiers", "margin_tiers_from_risk_limits",
    "parse_instruments",
]

_decoder = msgspec.json.Decoder(BybitInstrumentsResponse)
_risk_decoder = msgspec.json.Decoder(BybitRiskLimitResponse)


def _num(value: str, name: str, symbol: str, default: float | None = None) -> float:
    if value == "" and default is not None:
        return default
    try:
        return float(value)
    except ValueError:
        raise DataError(f"Bybit instrument {symbol}: {name}={value!r} must be a decimal string") from None


def instrument_from_bybit(item: BybitInstrument, category: str, venue: str = "BYBIT") -> Instrument | None:
    """Build an :class:`Instrument` from one Bybit instrument, or ``None`` (logged) if unsupported.

    Raises
    ------
    DataError
        A numeric field is not a decimal string or an increment is not positive.
    """
    if item.status and item.status != "Trading":
        logger.debug("Bybit instrument {} skipped: status {!r}", item.symbol, item.status)
        return None
    lots = item.lotSizeFilter
    if category == "spot":
        kind = InstrumentKind.SPOT
        lot = _num(lots.basePrecision, "basePrecision", item.symbol)
        min_notional = _num(lots.minOrderAmt, "minOrderAmt", item.symbol, 0.0)
    elif category == "linear" and item.contractType == "LinearPerpetual":
        kind = InstrumentKind.PERPETUAL
        lot = _num(lots.qtyStep, "qtyStep", item.symbol)
        min_notional = _num(lots.minNotionalValue, "minNotionalValue", item.symbol, 0.0)
    else:
        logger.debug("Bybit instrument {} skipped: {} {!r} not supported", item.symbol, category, item.contractType)
        return None
    try:
        return Instrument(
            venue=venue,
            symbol=instrument_symbol(item.symbol, category),
            kind=kind,
            base=item.baseCoin,
            quote=item.quoteCoin,
            tick_size=_num(item.priceFilter.tickSize, "tickSize", item.symbol),
            lot_size=lot,
            min_notional=min_notional,
            min_quantity=_num(lots.minOrderQty, "minOrderQty", item.symbol, 0.0),
            maintenance_close_fee=MAINTENANCE_CLOSE_FEE if kind == InstrumentKind.PERPETUAL else CloseFee.NONE,
        )
    except OrderError as exc:
        raise DataError(f"Bybit instrument {item.symbol}: {exc}") from None


def parse_instruments(body: bytes | str, venue: str = "BYBIT") -> dict[str, Instrument]:
    """Instruments of a REST response body (category taken from ``result.category``), keyed by id.

    Raises
    ------
    DataError
        Not a Bybit instruments response, ``retCode != 0``, unknown category, or invalid increments.
    """
    try:
        resp = _decoder.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise DataError(f"Bybit instruments response: {exc}") from None
    if resp.retCode != 0:
        raise DataError(f"Bybit instruments response: retCode {resp.retCode} ({resp.retMsg!r}), expected 0")
    category = resp.result.category
    if category not in ("spot", "linear"):
        raise DataError(f"Bybit instruments response: category {category!r}, expected 'spot' or 'linear'")
    if resp.result.nextPageCursor:
        logger.warning("Bybit instruments response ({}) has more pages; only this page is parsed", category)
    out: dict[str, Instrument] = {}
    for item in resp.result.items:
        inst = instrument_from_bybit(item, category, venue)
        if inst is not None:
            out[inst.instrument_id] = inst
    return out


def load_instruments(path: str | Path, venue: str = "BYBIT") -> dict[str, Instrument]:
    """:func:`parse_instruments` of a saved response file (errors name the file)."""
    return load_instruments_file(path, parse_instruments, venue)


def margin_tiers_from_risk_limits(body: bytes | str) -> dict[str, tuple[MarginTier, ...]]:
    """``symbol -> margin tiers`` (``"BTCUSDT-LINEAR"``, as the instruments name it) of a linear ``risk-limit`` response.

    Each tier gives ``riskLimitValue`` (its ``max_notional``), ``maintenanceMargin`` and
    ``maxLeverage``; ``mmDeduction`` is only checked: the tiers derive it
    (:meth:`~tradebus.engine.instrument.Instrument.maintenance_bracket`), and it must agree
    (Bybit leaves it empty on the first tier).

    Raises
    ------
    DataError
        Not a risk-limit response, ``retCode != 0``, a category other than ``linear``, a page that
        has more after it (``nextPageCursor``), a number
        that is not a decimal string, or a published ``mmDeduction`` that disagrees with the
        derived amount.
    """
    try:
        resp = _risk_decoder.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise DataError(f"Bybit risk-limit response: {exc}") from None
    if resp.retCode != 0:
        raise DataError(f"Bybit risk-limit response: retCode {resp.retCode} ({resp.retMsg!r}), expected 0")
    if resp.result.category != "linear":
        raise DataError(f"Bybit risk-limit response: category {resp.result.category!r}, expected 'linear'")
    if resp.result.nextPageCursor:
        # A symbol's tiers may run on to the next page: one page alone would give it a cut table.
        raise DataError(
            f"Bybit risk-limit response is one page of several (nextPageCursor {resp.result.nextPageCursor!r}): "
            "a symbol's tiers may go on in the pages not saved; save the response of the symbols you trade "
            "(GET /v5/market/risk-limit?category=linear&symbol=BTCUSDT), which fits one page"
        )
    rows: dict[str, list[BybitRiskLimit]] = {}
    for row in resp.result.items:
        rows.setdefault(row.symbol, []).append(row)
    out: dict[str, tuple[MarginTier, ...]] = {}
    for symbol, items in rows.items():
        where = f"Bybit risk limits {symbol}"
        tiers = [
            (
                MarginTier(
                    _num(row.riskLimitValue, "riskLimitValue", symbol),
                    _num(str(row.maintenanceMargin), "maintenanceMargin", symbol),
                    _num(row.maxLeverage, "maxLeverage", symbol),
                ),
                _num(row.mmDeduction, "mmDeduction", symbol, math.nan),
            )
            for row in items
        ]
        tiers.sort(key=lambda pair: pair[0].max_notional)
        try:
            probe = Instrument("BYBIT", symbol, margin_tiers=tuple(t for t, _ in tiers))
        except OrderError as exc:
            raise DataError(f"{where}: {exc}") from None
        for tier, deduction in tiers:
            _, amount = probe.maintenance_bracket(tier.max_notional)
            if deduction == deduction and abs(amount - deduction) > 1e-6 * max(1.0, amount):
                raise DataError(
                    f"{where}: mmDeduction {deduction:g} of the tier up to {tier.max_notional:g} disagrees with "
                    f"the derived {amount:g}"
                )
        out[instrument_symbol(symbol, "linear")] = probe.margin_tiers
    return out


def load_margin_tiers(path: str | Path) -> dict[str, tuple[MarginTier, ...]]:
    """:func:`margin_tiers_from_risk_limits` of a saved response file (errors name the file)."""
    return load_response_file(path, margin_tiers_from_risk_limits)
