"""An instrument subscribed to two book channels of one venue is refused as the config loads (exit 2).

Before, a paper daemon on the shipped Bybit recording with ``orderbook.200`` and ``orderbook.50`` (the same
frames recorded under both) ran: 2 BookSnapshots and both books' deltas went to the strategies as one
instrument's (491 BookDelta in its first 600 messages), its quotes from the first book alone, ``cache.book``
the first one's. An instrument has one book: the config names both channels and stops before any I/O.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from tradebus.cli import app

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.mark.parametrize(
    ("shipped", "iid", "channels"),
    [("paper_okx.yaml", "BTC-USDT.OKX", ["trades", "books", "books5"]),
     ("paper_bybit.yaml", "BTCUSDT-LINEAR.BYBIT", ["publicTrade", "orderbook.1", "orderbook.50"]),
     ("paper_bybit.yaml", "BTCUSDT-LINEAR.BYBIT", ["publicTrade", "tickers", "orderbook.200", "orderbook.1"])],
)
@pytest.mark.parametrize("command", ["paper", "replay"])
def test_two_book_channels_of_one_instrument_are_refused_naming_both(
    tmp_path: Path, shipped: str, iid: str, channels: list[str], command: str
) -> None:
    data = yaml.safe_load((CONFIGS / shipped).read_text(encoding="utf-8"))
    data["feeds"][0] |= {"subscriptions": {iid: channels}, "ws_url": "ws://127.0.0.1:9"}
    if data["feeds"][0]["venue"] == "okx":
        data["feeds"][0]["rest_url"] = "http://127.0.0.1:9"
    data.update(journal=str(tmp_path / "state" / "journal.sqlite"), record=str(tmp_path / "state" / "frames.jsonl.gz"))
    config = tmp_path / "paper.yaml"
    config.write_text(yaml.safe_dump(data), encoding="utf-8")
    out = tmp_path / "out"
    # (nothing listens on 127.0.0.1:9: a daemon that started would stop at --max-seconds)
    args = (["paper", str(config), "--max-seconds", "5"] if command == "paper"
            else ["replay", str(tmp_path / "none.jsonl.gz"), "--config", str(config)])
    res = CliRunner().invoke(app, [*args, "--out", str(out)])
    text = " ".join(res.output.split())
    assert res.exit_code == 2, text
    first, second = channels[-2:]
    assert (f"feeds.0.subscriptions: {iid!r} subscribes two book channels, {first!r} and {second!r}: an instrument "
            "has one book") in text, text
    assert not out.exists() and not (tmp_path / "state").exists()
