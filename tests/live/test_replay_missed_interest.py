"""A replay of a restarted paper daemon's session charges the hours it was down as the daemon did.

The first daemon session runs three hours back (its wall clock shifted: a daemon that ran then) and
sells 0.5 BTC short on a margin account, a loan of 0.5 BTC, journaled and recorded. The restarted
daemon owes the hourly interest of the whole hours it was down and prices each with the close of
the venue's 1-minute kline ending at it (the local Binance emulator serves ``klines``, each minute's
close distinct: :mod:`tradebus.node.missed_hours`). ``tradebus replay --session 2`` of the recording
must charge the same (``interest.csv``, ``equity.csv``) without asking the venue anything: the
restarted daemon records the prices in its ``run:start`` line. Before, the replay charged those
hours at the journal's last fill price (``hour_last_fill``), the daemon at the klines' closes.
A recording made before that replays as before, warned of.

The emulator serves the capture's frames unmodified (venue times of 2024-08-09): the restarted
daemon owes the hours it was down on its own clock, not every hour since the capture's date.
"""

from __future__ import annotations

import csv
import gzip
import json
import sys
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import yaml
from loguru import logger
from typer.testing import CliRunner

from tradebus.adapters.binance.emulator import BinanceProtocol
from tradebus.adapters.common.local_server import LocalVenueServer
from tradebus.cli import app
from tradebus.engine.interest import HOUR_NS
from tradebus.errors import DataError
from tradebus.node import daemon
from tradebus.node.config import dump_paper_config
from tradebus.node.daemon import PaperNode, kept_files
from tradebus.node.feeds import build_feeds
from tradebus.node.playback import play
from tradebus.reports.outputs import write_outputs
from tradebus.reports.writers import RunDirectory

from .node_testdata import IID, SPOT_FRAMES, binance_config, config_of, run_node
from .test_node_missed_interest import EXCHANGE_INFO, RATE, _close, _klines

TRADES = [frame for frame in SPOT_FRAMES if "@trade" in frame[1]][:16]
#: How far back the first session runs: its loan is owed through about three whole hours the daemon was down.
SHIFT_NS = 3 * HOUR_NS + 17 * 60_000_000_000
STRATEGY = {"name": "tests.live.short_strategy:ShortOnce", "instruments": [IID], "params": {"quantity": 0.5}}


@pytest.fixture(autouse=True)
def _loguru_to_current_stderr() -> Iterator[None]:
    """The CLI points loguru at the CliRunner's stderr, closed after the call: log to the live stderr again."""
    yield
    logger.remove()
    logger.add(lambda message: sys.stderr.write(message), level="DEBUG")


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


async def _session(tmp_path: Path, trades: list[tuple[int, str]], klines: list[list[Any]], out: Path | None,
                   before: int = 0) -> tuple[PaperNode, dict[str, Any]]:
    """One daemon session on ``trades`` journaling and recording into ``tmp_path`` (a restart recovers from it)."""
    protocol = BinanceProtocol(exchange_info=EXCHANGE_INFO, klines={"BTCUSDT": klines})
    async with LocalVenueServer(protocol, trades) as srv:
        data = {**binance_config(srv.ws_url, srv.http_url, ["trade"], tmp=tmp_path, journal=True, record=True,
                                 strategy=STRATEGY),
                "annual_borrow_rates": {"BTC": RATE}, "warm_up": False}  # fmt: skip
        config = config_of(data)
        run_dir = None if out is None else RunDirectory(out, "paper", keep=kept_files(config))
        node = PaperNode(config, handle_signals=False, run_dir=run_dir)
        await run_node(node, lambda: node.kernel.result.trades == before + len(trades))
    if run_dir is not None:
        write_outputs(run_dir, node.kernel.result, node.kernel.instruments, dump_paper_config(config),
                      {"node.json": "{}"}, node.outputs)  # fmt: skip
        run_dir.close()
    return node, data


async def _restarted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, out: Path | None
) -> tuple[PaperNode, PaperNode, dict[str, Any]]:
    """A first session :data:`SHIFT_NS` back (a short of 0.5 BTC), then a restart now on the same journal."""
    now = time.time_ns()
    klines = _klines((now - SHIFT_NS - HOUR_NS) // 1_000_000 // 60_000 * 60_000, (now + HOUR_NS) // 1_000_000, set())
    real_time_ns = time.time_ns

    def shifted_ns() -> int:
        return real_time_ns() - SHIFT_NS

    with monkeypatch.context() as shifted:  # the daemon's clock and its feeds' receive stamps
        shifted.setattr(time, "time_ns", shifted_ns)
        shifted.setattr(daemon, "build_feeds", partial(build_feeds, clock_ns=shifted_ns))
        first, _ = await _session(tmp_path, TRADES[:8], klines, None)
    assert first.kernel.portfolio.position(IID) == -0.5
    second, data = await _session(tmp_path, TRADES[8:], klines, out, before=8)
    return first, second, data


async def test_a_daemon_restarted_on_an_old_capture_charges_the_hours_it_was_down_not_since_the_capture(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second, _ = await _restarted(tmp_path, monkeypatch, None)
    [borrow] = first.kernel.result.interest or []
    assert borrow.kind == "borrow"
    assert borrow.ts_event < 1_723_248_000_000_000_000 < borrow.ts_init  # the fill's venue time: before 2024-08-10
    assert second._recovered_at is not None
    down = list(range((borrow.ts_init // HOUR_NS + 1) * HOUR_NS, second._recovered_at // HOUR_NS * HOUR_NS + 1, HOUR_NS))
    assert len(down) in (3, 4)
    charged = [c for c in second.kernel.result.interest or [] if c.kind != "borrow" and c.ts_event <= second._recovered_at]
    assert [c.ts_event for c in charged] == down
    assert {c.kind for c in charged} == {"hour_kline"}


async def test_a_replay_of_a_restarted_session_charges_the_hours_the_daemon_was_down_at_the_daemons_prices(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, second, data = await _restarted(tmp_path, monkeypatch, tmp_path / "paper")
    daemon = second.kernel.result.interest or []
    missed = [c for c in daemon if c.kind.startswith("hour")]
    assert len(missed) >= 3 and {c.kind for c in missed} == {"hour_kline"}
    assert all(c.price == _close(c.ts_event // 1_000_000 - 60_000) for c in missed)

    config = tmp_path / "replay.yaml"
    config.write_text(yaml.safe_dump(data), encoding="utf-8")
    replay = tmp_path / "replay"
    res = CliRunner().invoke(app, ["replay", str(tmp_path / "frames.jsonl.gz"), "--config", str(config),
                                   "--out", str(replay), "--session", "2"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert (replay / "interest.csv").read_text() == (tmp_path / "paper" / "interest.csv").read_text()
    assert (replay / "equity.csv").read_text() == (tmp_path / "paper" / "equity.csv").read_text()
    paper_fills, replay_fills = _rows(tmp_path / "paper" / "fills.csv"), _rows(replay / "fills.csv")
    assert len(paper_fills) == len(replay_fills) == 2
    for p, r in zip(paper_fills, replay_fills, strict=True):
        assert {k: v for k, v in p.items() if k != "client_order_id"} == {k: v for k, v in r.items() if k != "client_order_id"}

    # A recording made before the daemon recorded those prices replays as before, warned of: the journal's last fill.
    recording = tmp_path / "frames.jsonl.gz"
    lines = [json.loads(line) for line in gzip.open(recording, "rt", encoding="utf-8")]
    starts = [rec for rec in lines if rec["c"] == "run:start"]
    assert "missed_hours" not in json.loads(starts[0]["d"]) and "missed_hours" in json.loads(starts[1]["d"])

    def rewritten(name: str, missed_hours: object) -> Path:
        path = tmp_path / name
        with gzip.open(path, "wt", encoding="utf-8") as fh:
            for rec in lines:
                if rec is starts[1]:
                    started = json.loads(rec["d"])
                    if missed_hours is None:
                        del started["missed_hours"]
                    else:
                        started["missed_hours"] = missed_hours
                    rec = {**rec, "d": json.dumps(started)}
                fh.write(json.dumps(rec) + "\n")
        return path

    warned: list[str] = []
    sink = logger.add(lambda m: warned.append(m.record["message"]), level="WARNING")
    try:
        old = play(rewritten("old.jsonl.gz", None), second.config, session=2).kernel.result.interest or []
    finally:
        logger.remove(sink)
    assert [c.kind for c in old if c.kind.startswith("hour")][:len(missed)] == ["hour_last_fill"] * len(missed)
    assert [w for w in warned if f"old.jsonl.gz: the run:start at {starts[1]['t']}: the daemon was down through "
            f"{len(missed)} whole hour(s)" in w and "does not say them" in w]
    with pytest.raises(DataError, match=r"bad.jsonl.gz: a run:start line: missed_hours prices: an entry is"):
        play(rewritten("bad.jsonl.gz", {"prices": [[IID, "noon", 1.0]], "failures": []}), second.config, session=2)
