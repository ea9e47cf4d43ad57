"""Configuration of the OKX v5 public market-data adapter (pydantic, ``extra="forbid"``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["OkxConfig"]


class OkxConfig(BaseModel):
    """OKX endpoints and stream behaviour.

    Attributes
    ----------
    public_url
        WebSocket URL of the public channels (trades, tickers, books, bbo-tbt,
        funding-rate, mark-price).
    business_url
        WebSocket URL of the business channels (``candle*`` moved there in 2023).
    rest_url
        REST base URL (instruments).
    venue
        Venue name used in instrument ids (``"BTC-USDT.OKX"``).
    ping_after_s
        Send the text ``"ping"`` when nothing was received for this long; OKX
        closes a connection silent for 30 s and answers ``"pong"``.
    pong_timeout_s
        Consider the connection dead if no ``"pong"`` (or any frame) arrives this long after a ping.
    verify_checksum
        Verify the books CRC32 (OKX deprecates it in 2026: it will be sent as 0 and skipped).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    public_url: str = "wss://ws.okx.com:8443/ws/v5/public"
    business_url: str = "wss://ws.okx.com:8443/ws/v5/business"
    rest_url: str = "https://www.okx.com"
    venue: str = Field(default="OKX", min_length=1)
    ping_after_s: float = Field(default=25.0, gt=0.0, lt=30.0)
    pong_timeout_s: float = Field(default=5.0, gt=0.0)
    verify_checksum: bool = True
