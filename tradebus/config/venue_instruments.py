"""The ``instruments:`` block of a run config, from a venue's saved REST responses (``tradebus instruments``).

A venue's instruments response (:attr:`~tradebus.adapters.common.venue.VenueAdapter.load_instruments`)
gives each instrument's tick, lot, minimum quantity and notional, and contract size; its margin
tiers response (:attr:`~tradebus.adapters.common.venue.VenueAdapter.load_margin_tiers`) a
perpetual's maintenance tiers. Neither holds the account's fees: the block leaves ``maker_fee`` and
``taker_fee`` at their defaults (0) and says so in a comment. The block loads back through
:class:`~tradebus.config.instruments.InstrumentConfig` to the very instruments the loaders built
(checked before it is returned).
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from tradebus.adapters.registry import venue_adapter
from tradebus.config.instruments import InstrumentConfig
from tradebus.engine.instrument import Instrument, InstrumentKind, MarginTier
from tradebus.errors import ConfigError, DataError, OrderError, TradebusError

__all__ = ["instrument_entry", "instruments_block"]

#: The fields a loaded instrument's entry states (the rest stay at the config's defaults).
_FIELDS = ("venue", "symbol", "kind", "base", "quote", "tick_size", "lot_size", "min_notional", "min_quantity",
           "contract_size")


def _tier_entry(tier: MarginTier) -> dict[str, float]:
    cap = {"max_size": tier.max_size} if math.isfinite(tier.max_size) else {"max_notional": tier.max_notional}
    return cap | {"maintenance_rate": tier.maintenance_rate, "max_leverage": tier.max_leverage}


def instrument_entry(inst: Instrument) -> dict[str, Any]:
    """One ``instruments:`` entry of ``inst``: its venue's terms and margin tiers, fees left out.

    Raises
    ------
    TradebusError
        The entry would load back as another instrument (a field the entry does not state was
        set by the venue's loader).
    """
    entry: dict[str, Any] = {name: getattr(inst, name) for name in _FIELDS}
    entry["kind"] = str(inst.kind)
    if inst.margin_tiers:
        entry["margin_tiers"] = [_tier_entry(tier) for tier in inst.margin_tiers]
    loaded = InstrumentConfig.model_validate(entry).to_instrument()
    if loaded != inst:
        differ = [f for f in inst.__struct_fields__ if getattr(loaded, f) != getattr(inst, f)]
        raise TradebusError(f"{inst.instrument_id}: its config entry would load with other {differ}")
    return entry


def _check_market(instruments: dict[str, Instrument], venue: str, market: str, markets: Sequence[str]) -> None:
    """Refuse a response of another market than ``market`` (``spot``: spot instruments; the others: perpetuals).

    OKX's and Bybit's loaders read every market's response (it names its own), so a swap file
    given as ``spot`` would be written as the perpetuals it holds under a header naming spot.
    """
    spot = market == "spot"
    other = [inst.instrument_id for inst in instruments.values() if (inst.kind == InstrumentKind.SPOT) != spot]
    if not other:
        return
    what = other[0] if len(other) == 1 else f"{other[0]} and {len(other) - 1} more"
    if spot:
        held = "is a perpetual, not" if len(other) == 1 else "are perpetuals, not"
        wanted = f"an {venue} spot instrument" if len(other) == 1 else f"{venue} spot instruments"
    else:
        held = "is a spot instrument, not" if len(other) == 1 else "are spot instruments, not"
        wanted = f"{venue} {market} " + ("one" if len(other) == 1 else "ones")
    choices = ", ".join(m for m in markets if (m == "spot") != spot)
    raise ConfigError(f"INSTRUMENTS_FILE: {what} {held} {wanted}: give the file's MARKET ({choices})")


def _select(instruments: dict[str, Instrument], symbols: Sequence[str], path: Path) -> list[Instrument]:
    """The instruments named by ``symbols`` (a symbol or an instrument id), in that order; all without any."""
    if not symbols:
        return list(instruments.values())
    by_name = {inst.symbol: inst for inst in instruments.values()} | instruments
    chosen: dict[str, Instrument] = {}
    for name in symbols:
        inst = by_name.get(name)
        if inst is None:
            close = difflib.get_close_matches(name, [i.symbol for i in instruments.values()], n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else f" ({len(instruments)} instruments)"
            raise ConfigError(
                f"--symbol {name}: no such instrument in {path} of those tradebus loads (spot pairs and linear "
                f"perpetuals trading now; inverse and dated contracts, options and instruments not trading are "
                f"left out){hint}"
            )
        chosen[inst.instrument_id] = inst
    return list(chosen.values())


def _with_tiers(
    chosen: list[Instrument], tiers: dict[str, tuple[MarginTier, ...]], path: Path
) -> list[Instrument]:
    spot = [inst.instrument_id for inst in chosen if inst.kind != InstrumentKind.PERPETUAL]
    if spot:
        raise ConfigError(
            f"--tiers {path}: {', '.join(spot)} {'is a spot instrument' if len(spot) == 1 else 'are spot instruments'}"
            ": margin tiers are a perpetual's; leave out --tiers, or choose perpetuals with --symbol"
        )
    missing = [inst.instrument_id for inst in chosen if inst.symbol not in tiers]
    if missing:
        held = sorted(tiers)
        listed = ", ".join(held[:5]) + (f" and {len(held) - 5} more" if len(held) > 5 else "")
        raise ConfigError(
            f"--tiers {path}: no margin tiers of {', '.join(missing)} (the file has tiers of {listed or 'none'}); "
            "choose the perpetuals it covers with --symbol, or give the tiers of these"
        )
    return [_replace_tiers(inst, tiers[inst.symbol]) for inst in chosen]


def _replace_tiers(inst: Instrument, tiers: tuple[MarginTier, ...]) -> Instrument:
    fields = {name: getattr(inst, name) for name in inst.__struct_fields__}
    try:
        return Instrument(**fields | {"margin_tiers": tiers})
    except OrderError as exc:
        raise ConfigError(f"{inst.instrument_id}: its margin tiers are refused: {exc}") from None


def instruments_block(
    venue: str,
    market: str,
    instruments_file: str | Path,
    tiers_file: str | Path | None = None,
    symbols: Sequence[str] = (),
) -> str:
    """The YAML ``instruments:`` block of ``venue``'s saved responses, with a comment on what it leaves out.

    Parameters
    ----------
    venue, market
        A registered venue name (``okx``) and one of its markets (``swap``).
    instruments_file
        A saved instruments REST response of that venue and market.
    tiers_file
        A saved margin tiers response of the venue: every chosen instrument must be a perpetual
        with tiers in it.
    symbols
        Keep these instruments (the venue's symbol or the instrument id), in this order; none: all.

    Raises
    ------
    ConfigError
        An unknown venue or market, a file that is missing or not that venue's response (or a
        response of another market: perpetuals given as ``spot``, spot given as a perpetuals' market), an
        unknown symbol, a spot instrument given tiers, or a perpetual the tiers file has no tiers of.
    """
    try:
        adapter = venue_adapter(venue)
    except KeyError as exc:
        raise ConfigError(f"VENUE: {exc.args[0]}") from None
    if market not in adapter.markets:
        raise ConfigError(f"MARKET: {market!r} is not a market of {venue}; use one of {', '.join(adapter.markets)}")
    instruments_path = Path(instruments_file)
    if not instruments_path.is_file():
        raise ConfigError(f"INSTRUMENTS_FILE: no such file {instruments_path}")
    try:
        instruments = adapter.load_instruments(instruments_path, market)
    except DataError as exc:
        raise ConfigError(f"INSTRUMENTS_FILE: not {venue}'s {market} instruments response: {exc}") from None
    if not instruments:
        raise ConfigError(f"INSTRUMENTS_FILE: {instruments_path} holds no tradable {venue} {market} instrument")
    _check_market(instruments, venue, market, adapter.markets)
    chosen = _select(instruments, symbols, instruments_path)
    notes = [
        f"instruments of {venue} {market} from {instruments_path.name}"
        + (f", margin tiers from {Path(tiers_file).name}" if tiers_file is not None else ""),
        "fees are not in these responses: maker_fee and taker_fee stay at their default 0; set your account's",
    ]
    if tiers_file is not None:
        tiers_path = Path(tiers_file)
        if adapter.load_margin_tiers is None:
            raise ConfigError(f"--tiers: {venue} has no margin tiers loader")
        if not tiers_path.is_file():
            raise ConfigError(f"--tiers: no such file {tiers_path}")
        try:
            tiers = adapter.load_margin_tiers(tiers_path)
        except DataError as exc:
            raise ConfigError(f"--tiers: not {venue}'s margin tiers response: {exc}") from None
        chosen = _with_tiers(chosen, tiers, tiers_path)
    elif any(inst.kind == InstrumentKind.PERPETUAL for inst in chosen):
        notes.append("no margin tiers (--tiers): a perpetual's maintenance margin is the flat maintenance_rate")
    entries = [instrument_entry(inst) for inst in chosen]
    comments = "".join(f"# {note}\n" for note in notes)
    return comments + yaml.safe_dump({"instruments": entries}, sort_keys=False, default_flow_style=False)
