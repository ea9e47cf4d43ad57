"""OKX instruments from the REST response of ``GET /api/v5/public/instruments``.

Mapping (all from the response; OKX publishes no fees there, so fees stay 0 and
are set by the run config):

* ``tick_size`` = ``tickSz``; ``lot_size`` = ``lotSz``; ``min_quantity`` = ``minSz``.
* SPOT: ``base``/``quote`` = ``baseCcy``/``quoteCcy``; sizes in base currency.
* SWAP (linear, ``ctType == "linear"``): kind PERPETUAL, ``base``/``quote`` from
  ``uly`` (``"BTC-USDT"``); sizes are in **contracts** of ``ctVal`` ``ctValCcy``
  each (BTC-USDT-SWAP: 1 contract = 0.01 BTC), as OKX orders are: ``contract_size`` =
  ``ctVal * ctMult``, the contract's face value (``ctMult``, the contract multiplier, is 1 on
  every swap listed; OKX has changed a multiplier before, its BTC options' 0.1 to 0.01 in 2022),
  so notional and PnL are ``contracts * contract_size * price``.
* Inverse swaps (coin-margined, PnL in the base coin) and other types are skipped
  with a logged reason: :class:`~tradebus.engine.instrument.Instrument` models
  quote-currency PnL only.
* ``min_notional`` = 0: OKX states no minimum notional in this response.
* Instruments whose ``state`` is not ``live`` are skipped.
* A swap's maintenance margin counts OKX's liquidation fee (``config.MAINTENANCE_CLOSE_FEE``).

Margin tiers come from another response, ``GET /api/v5/public/position-tiers?instType=SWAP``
(:func:`margin_tiers_from_position_tiers`): OKX chooses a swap position's tier by its size in
contracts (``minSz``/``maxSz``) and applies the tier's ``mmr`` to the whole position, no deduction
(:class:`~tradebus.engine.instrument.MarginTier` ``max_size``); ``maxLever`` is the tier's
``max_leverage``.
"""

from __future__ import annotations

import math
from pathlib import Path

import msgspec
from loguru import logger

from tradebus.adapters.okx.schemas import OkxInstrument, OkxInstrumentsResponse, OkxPositionTiersResponse
from tradebus.adapters.common.instruments import load_instruments_file, load_response_file
from tradebus.adapters.okx.config import MAINTENANCE_CLOSE_FEE
from tradebus.engine.instrument import CloseFee, Instrument, InstrumentKind, MarginTier
from tradebus.errors import DataError, OrderError

__all__ = [
    "instrument_from_okx", "load_instruments", "load_margin_tiers", "margin_tiers_from_position_tiers",
    "parse_instruments",
]

_decoder = msgspec.json.Decoder(OkxInstrumentsResponse)
_tiers_decoder = msgspec.json.Decoder(OkxPositionTiersResponse)


def instrument_from_okx(item: OkxInstrument, venue: str = "OKX") -> Instrument | None:
    """Build an :class:`Instrument` from one OKX instrument, or ``None`` (logged) if unsupported.

    Raises
    ------
    DataError
        A numeric field is missing or not a positive number.
    """
    if item.state and item.state != "live":
        logger.debug("OKX instrument {} skipped: state {!r}", item.instId, item.state)
        return None
    if item.instType == "SPOT":
        kind, base, quote = InstrumentKind.SPOT, item.baseCcy, item.quoteCcy
    elif item.instType == "SWAP" and item.ctType == "linear":
        kind = InstrumentKind.PERPETUAL
        base, _, quote = (item.uly or item.instFamily).partition("-")
    else:
        logger.debug("OKX instrument {} skipped: {} {} not supported", item.instId, item.instType, item.ctType)
        return None
    contract_size = 1.0
    if kind == InstrumentKind.PERPETUAL:
        try:
            contract_size = float(item.ctVal) * float(item.ctMult or "1")
        except ValueError:
            raise DataError(
                f"OKX instrument {item.instId}: ctVal={item.ctVal!r} ctMult={item.ctMult!r} must be decimal strings"
            ) from None
        if item.ctValCcy and item.ctValCcy != base:
            raise DataError(
                f"OKX instrument {item.instId}: ctValCcy {item.ctValCcy!r} is not the base {base!r} of a linear swap"
            )
    try:
        tick, lot, min_sz = float(item.tickSz), float(item.lotSz), float(item.minSz)
    except ValueError:
        raise DataError(
            f"OKX instrument {item.instId}: tickSz={item.tickSz!r} lotSz={item.lotSz!r} minSz={item.minSz!r} "
            "must be decimal strings"
        ) from None
    try:
        return Instrument(
            venue=venue,
            symbol=item.instId,
            kind=kind,
            base=base,
            quote=quote,
            tick_size=tick,
            lot_size=lot,
            min_quantity=min_sz,
            contract_size=contract_size,
            maintenance_close_fee=MAINTENANCE_CLOSE_FEE if kind == InstrumentKind.PERPETUAL else CloseFee.NONE,
        )
    except OrderError as exc:
        raise DataError(f"OKX instrument {item.instId}: {exc}") from None


def parse_instruments(body: bytes | str, venue: str = "OKX") -> dict[str, Instrument]:
    """Instruments of a REST response body, keyed by instrument id (``"BTC-USDT.OKX"``).

    Raises
    ------
    DataError
        The body is not an OKX instruments response, OKX returned an error code,
        or an instrument has invalid increments.
    """
    try:
        resp = _decoder.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise DataError(f"OKX instruments response: {exc}") from None
    if resp.code != "0":
        raise DataError(f"OKX instruments response: error code {resp.code!r} ({resp.msg!r}), expected '0'")
    out: dict[str, Instrument] = {}
    for item in resp.data:
        inst = instrument_from_okx(item, venue)
        if inst is not None:
            out[inst.instrument_id] = inst
    return out


def load_instruments(path: str | Path, venue: str = "OKX") -> dict[str, Instrument]:
    """:func:`parse_instruments` of a saved response file (errors name the file)."""
    return load_instruments_file(path, parse_instruments, venue)


def margin_tiers_from_position_tiers(body: bytes | str) -> dict[str, tuple[MarginTier, ...]]:
    """``instId -> margin tiers`` (``"BTC-USDT-SWAP"``) of a ``GET /api/v5/public/position-tiers`` SWAP response.

    Each row is a tier of the swap of its ``instFamily`` (or ``uly``): ``maxSz`` contracts its
    ``max_size``, ``mmr`` its ``maintenance_rate``, ``maxLever`` its ``max_leverage``. A family's
    tiers must follow on: the first from 0 (``minSz`` at most 1 contract), each ``minSz`` the
    previous ``maxSz`` or one contract above it.

    Raises
    ------
    DataError
        Not a position-tiers response, OKX returned an error code, a row is not a swap's (a
        margin pair's borrowing tiers), a number is not a positive decimal string, or a
        family's tiers leave a gap or overlap.
    """
    try:
        resp = _tiers_decoder.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise DataError(f"OKX position tiers response: {exc}") from None
    if resp.code != "0":
        raise DataError(f"OKX position tiers response: error code {resp.code!r} ({resp.msg!r}), expected '0'")
    rows: dict[str, list[tuple[float, float, MarginTier]]] = {}
    for row in resp.data:
        family = row.instFamily or row.uly
        if row.instId.endswith("-SWAP"):
            inst_id = row.instId
        elif family and not row.instId:
            inst_id = f"{family}-SWAP"
        else:
            raise DataError(
                f"OKX position tiers: tier {row.tier} of {row.instId or '?'} is not a swap's (instFamily "
                f"{family!r}; a margin pair's borrowing tiers?): ask instType=SWAP"
            )
        try:
            low, high, mmr, lever = float(row.minSz), float(row.maxSz), float(row.mmr), float(row.maxLever)
        except ValueError:
            raise DataError(
                f"OKX position tiers {inst_id} tier {row.tier}: minSz={row.minSz!r} maxSz={row.maxSz!r} "
                f"mmr={row.mmr!r} maxLever={row.maxLever!r} must be decimal strings"
            ) from None
        if not (0.0 <= low < high and 0.0 <= mmr < 1.0 and lever >= 1.0):
            raise DataError(
                f"OKX position tiers {inst_id} tier {row.tier}: minSz {row.minSz} < maxSz {row.maxSz}, mmr {row.mmr} "
                f"in [0, 1) and maxLever {row.maxLever} >= 1 expected"
            )
        tier = MarginTier(max_notional=math.inf, maintenance_rate=mmr, max_leverage=lever, max_size=high)
        rows.setdefault(inst_id, []).append((high, low, tier))
    out: dict[str, tuple[MarginTier, ...]] = {}
    for inst_id, tiers in rows.items():
        tiers.sort(key=lambda t: t[0])
        previous = 0.0
        for high, low, _ in tiers:
            if not previous <= low <= previous + 1.0:
                raise DataError(
                    f"OKX position tiers {inst_id}: the tier up to {high:g} contracts starts at {low:g}, "
                    f"not at the previous tier's end {previous:g} (or one contract above)"
                )
            previous = high
        out[inst_id] = tuple(t for _, _, t in tiers)
    return out


def load_margin_tiers(path: str | Path) -> dict[str, tuple[MarginTier, ...]]:
    """:func:`margin_tiers_from_position_tiers` of a saved response file (errors name the file)."""
    return load_response_file(path, margin_tiers_from_position_tiers)
