"""Configuration of the Bybit v5 public market-data adapter (pydantic, ``extra="forbid"``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["BybitConfig"]


class BybitConfig(BaseModel):
    """Bybit endpoints and stream behaviour.

    Attributes
    ----------
    category
        ``"spot"`` or ``"linear"``: one connection per category.
    spot_url, linear_url
        WebSocket URLs of the public streams.
    rest_url
        REST base URL (instruments).
    venue
        Venue name used in instrument ids (``"BTCUSDT-LINEAR.BYBIT"``).
    ping_interval_s
        Send ``{"op": "ping"}`` this often (Bybit recommends every 20 s).
    pong_timeout_s
        Consider the connection dead if nothing arrives this long after a ping.
    book_depth
        Depth of the ``orderbook.{depth}.{symbol}`` topics subscribed.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    category: Literal["spot", "linear"] = "linear"
    spot_url: str = "wss://stream.bybit.com/v5/public/spot"
    linear_url: str = "wss://stream.bybit.com/v5/public/linear"
    rest_url: str = "https://api.bybit.com"
    venue: str = Field(default="BYBIT", min_length=1)
    ping_interval_s: float = Field(default=20.0, gt=0.0)
    pong_timeout_s: float = Field(default=10.0, gt=0.0)
    book_depth: Literal[1, 50, 200, 500, 1000] = 200

    @property
    def ws_url(self) -> str:
        """The WebSocket URL of this config's category."""
        return self.spot_url if self.category == "spot" else self.linear_url
