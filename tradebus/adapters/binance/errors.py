"""What to do about a Binance refusal (spot and USD-M, REST and the user stream), by error code.

The codes and their texts are Binance's (https://developers.binance.com/docs/binance-spot-api-docs/errors):
``-2014`` "API-key format invalid.", ``-2015`` "Invalid API-key, IP, or permissions for action.", ``-1022``
"Signature for this request is not valid.", ``-1021`` "Timestamp for this request was 1000ms ahead of the server's
time." or "... outside of the recvWindow.", ``-1013`` "Filter failure: LOT_SIZE" (``PRICE_FILTER``, ``NOTIONAL``
...). USD-M (https://developers.binance.com/docs/derivatives/usds-margined-futures/error-code) shares the first four;
its ``-1013`` is "INVALID_MESSAGE", and an order off its symbol's filters is ``-4014`` (price not a multiple of the
tick size), ``-4023`` (quantity not a multiple of the step size), ``-1111`` (precision over the symbol's) or ``-4164``
(notional below the symbol's minimum). None says which setting of the daemon to look at: :data:`ERROR_ADVICE` (spot)
and :data:`FUTURES_ERROR_ADVICE` (USD-M) do.
"""

from __future__ import annotations

__all__ = ["ERROR_ADVICE", "FUTURES_ERROR_ADVICE", "advised"]

_INSTRUMENT = (
    "compare the instrument's tick_size, lot_size, min_quantity and min_notional in the config with the venue's "
    "exchangeInfo (tradebus instruments writes them from a saved answer)"
)
_KEY = (
    "check that the variables named by live.api_key_env and live.api_secret_env hold an API key of this environment "
    "and market (a mainnet key is refused on the testnet and the other way round, a spot testnet key "
    "(testnet.binance.vision) on the USD-M testnet (testnet.binancefuture.com)), that the key's IP restriction lets "
    "this machine in and that it may trade (spot: Enable Spot & Margin Trading; USD-M: Enable Futures)"
)

#: What to do about a refusal, by Binance error code (text, as :class:`~tradebus.adapters.common.venue_errors.VenueErrors`
#: reads codes).
ERROR_ADVICE: dict[str, str] = {
    "-2014": "the API key is malformed: " + _KEY + "; a stray quote, space or newline in the variable breaks it",
    "-2015": "the venue refused the API key: " + _KEY,
    "-1022": (
        "the signature does not match the key: check that the variable named by live.api_secret_env holds the secret "
        "of the key in live.api_key_env (a key regenerated on the venue has a new secret)"
    ),
    "-1021": (
        "this machine's clock is off from Binance's (a request may be at most 1 s ahead of the venue's time and "
        "5 s, its recvWindow, behind it): synchronise the clock (NTP, e.g. timedatectl set-ntp true) and start again"
    ),
    "-1013": (
        "the order breaks the symbol's filter named above: for LOT_SIZE, PRICE_FILTER, NOTIONAL or MIN_NOTIONAL "
        + _INSTRUMENT + "; for TRAILING_DELTA keep the trail's percent x 100 within the symbol's "
        "min/maxTrailingBelowDelta and AboveDelta there"
    ),
}

_FILTER = "the order is off the symbol's filters at the venue: " + _INSTRUMENT
#: What to do about a refusal of Binance USD-M, by error code.
FUTURES_ERROR_ADVICE: dict[str, str] = {
    **{code: ERROR_ADVICE[code] for code in ("-2014", "-2015", "-1022", "-1021")},
    "-4014": _FILTER,
    "-4023": _FILTER,
    "-1111": _FILTER,
    "-4164": _FILTER,
}


def advised(message: str, code: object) -> str:
    """``message`` followed by what to do about the Binance error ``code`` (any type), if :data:`ERROR_ADVICE` has it
    (the user streams' refusals: of the key, its signature or timestamp, the same on spot and USD-M)."""
    advice = ERROR_ADVICE.get(str(code))
    return f"{message}; {advice}" if advice else message
