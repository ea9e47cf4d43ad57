"""``/metrics`` and ``/health`` of a paper daemon trading the USD-M capture served on 127.0.0.1.

The scrape is checked against the run's outputs and against references computed apart
from the daemon: fills and position from ``fills.csv``, equity from those fills and the
capture's last trade price (parsed here with ``json``), message counts from the run summary,
frames from the clients, and every metric the shipped Grafana dashboard queries.
"""

from __future__ import annotations

import asyncio
import csv
import json
import re
from pathlib import Path
from typing import Any

import socket

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tradebus.errors import ConfigError
from tradebus.node.daemon import PaperNode
from tradebus.ops.config import OpsConfig
from tradebus.ops.hooks import OpsHooks
from tradebus.engine.instrument import Instrument, InstrumentKind
from tradebus.engine.kernel import Kernel
from tradebus.engine.messages import Liquidity, OrderFilled, OrderSide
from tradebus.ops.metrics import DaemonMetrics, StateCollector, reason_label
from tradebus.ops.server import OpsServer

from live.node_testdata import USDM_IID, config_of

from .conftest import USDM_FRAMES, handled_all, served_usdm, usdm_paper, write_run

DASHBOARD = Path(__file__).resolve().parents[2] / "docs" / "grafana" / "tradebus-daemon.json"
#: How long an answer of the ops server, or a daemon's stop, may take: the server shares the daemon's loop, which on a
#: loaded machine is busy for seconds with the capture (a scrape stalled 6 s past a 5 s client timeout failed).
WAIT = 60.0


def samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """``sample name -> [(labels, value)]`` of a Prometheus exposition."""
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def total(scrape: dict[str, Any], name: str, **labels: str) -> float:
    return sum(v for lab, v in scrape.get(name, []) if all(lab.get(k) == x for k, x in labels.items()))


def last_mark() -> float:
    """The capture's last price: a trade's price or a bookTicker's mid, whichever came last."""
    price = None
    for _, raw in USDM_FRAMES:
        if "@trade" in raw:
            price = float(json.loads(raw)["data"]["p"])
        elif "@bookTicker" in raw:
            data = json.loads(raw)["data"]
            price = 0.5 * (float(data["b"]) + float(data["a"]))
    assert price is not None
    return price


async def run_and_scrape(tmp_path: Path) -> tuple[PaperNode, str, str, tuple[int, dict[str, Any]]]:
    async with served_usdm(speed=20.0) as srv:
        node = PaperNode(config_of(usdm_paper(srv, {"port": 0})), handle_signals=False)
        task = asyncio.create_task(node.run())
        try:
            while not node.running.is_set():
                await asyncio.sleep(0.02)
            assert node.ops is not None and node.ops.server is not None
            url = f"http://127.0.0.1:{node.ops.server.port}"
            async with httpx.AsyncClient(base_url=url, timeout=WAIT) as http:
                mid = (await http.get("/metrics")).text
                await handled_all(srv, node)  # the last frames reach the kernel
                resp = await http.get("/metrics")
                assert resp.status_code == 200
                assert resp.headers["content-type"].startswith("text/plain")
                health = await http.get("/health")
                missing = await http.get("/nope")
        finally:
            node.stop("test done")
            await asyncio.wait_for(task, WAIT)
    write_run(node, tmp_path / "out")
    assert missing.status_code == 404
    return node, mid, resp.text, (health.status_code, health.json())


async def test_metrics_and_health_during_a_paper_run_match_its_outputs(tmp_path: Path) -> None:
    node, mid, text, (status, report) = await run_and_scrape(tmp_path)
    scrape = samples(text)
    with (tmp_path / "out" / "fills.csv").open() as fh:
        fills = list(csv.DictReader(fh))
    assert len(fills) >= 2, "the capture must make the strategy trade"
    # fills and position from fills.csv
    assert total(scrape, "tradebus_fills_total") == len(fills)
    assert total(scrape, "tradebus_fills_total", instrument=USDM_IID) == len(fills)
    signed = [(1.0 if f["side"] == "BUY" else -1.0) * float(f["quantity"]) for f in fills]
    assert total(scrape, "tradebus_position", instrument=USDM_IID) == pytest.approx(sum(signed), abs=1e-12)
    # equity: initial cash, the fills' cash flows and fees, the position at the capture's last price
    cash = node.config.initial_cash - sum(s * float(f["price"]) + float(f["fee"]) for s, f in zip(signed, fills))
    equity = cash + sum(signed) * last_mark()
    assert total(scrape, "tradebus_equity") == pytest.approx(equity, rel=1e-9)
    assert total(scrape, "tradebus_exposure", instrument=USDM_IID) == pytest.approx(sum(signed) * last_mark())
    # market data: per type against the run summary, frames against the client
    counts = node.summary.counts
    assert total(scrape, "tradebus_feed_messages_total", type="trade") == counts["trades"] > 0
    assert total(scrape, "tradebus_feed_messages_total", type="book_delta") == counts["BookDelta"] > 1000
    assert total(scrape, "tradebus_feed_messages_total", venue="BINANCE_USDM") == node.router.messages
    feed = node.feeds[0].name
    assert total(scrape, "tradebus_feed_frames_total", feed=feed) == node.summary.feeds[feed]["frames"]
    assert total(scrape, "tradebus_feed_reconnects_total", feed=feed) == 0
    assert total(scrape, "tradebus_feed_connected", feed=feed) == 1
    assert total(scrape, "tradebus_book_synced", instrument=USDM_IID) == 1
    # lag: one observation per message with a venue time before its receive time; capture is years old
    lag_count = total(scrape, "tradebus_feed_lag_seconds_count", venue="BINANCE_USDM")
    assert counts["trades"] <= lag_count <= node.router.messages
    assert total(scrape, "tradebus_order_ack_latency_seconds_count") == total(scrape, "tradebus_orders_submitted_total")
    assert total(scrape, "tradebus_orders_in_flight") == 0
    assert total(scrape, "tradebus_trading_state", state="ACTIVE") == 1
    assert total(scrape, "tradebus_trading_state", state="HALTED") == 0
    assert total(scrape, "process_resident_memory_bytes") > 10e6
    assert total(scrape, "tradebus_asyncio_tasks") >= 2
    # the mid-run scrape saw fewer messages than the final one: counters move during the run
    assert total(samples(mid), "tradebus_feed_messages_total") < total(scrape, "tradebus_feed_messages_total")
    # health
    assert status == 200, report
    assert report["feeds"][feed]["connected"] is True and report["books_synced"] == {USDM_IID: True}
    assert report["trading_state"] == "ACTIVE" and report["problems"] == []
    # every metric the Grafana dashboard queries is in the scrape
    names = {family.name for family in text_string_to_metric_families(text)} | set(scrape)
    exprs = [t["expr"] for panel in json.loads(DASHBOARD.read_text())["panels"] for t in panel.get("targets", [])]
    assert len(exprs) >= 15
    queried = {m for e in exprs for m in re.findall(r"\b((?:tradebus|process)_[a-z_]+)", e)}
    absent = {m for m in queried if m not in names and re.sub(r"_(bucket|count|sum|total)$", "", m) not in names}
    assert not absent, absent


async def test_health_is_503_until_the_daemon_runs_and_when_its_feed_is_down(tmp_path: Path) -> None:
    # a feed pointing at a port nobody listens on: the daemon runs, the feed never connects
    data = usdm_paper(type("S", (), {"ws_url": "ws://127.0.0.1:9", "http_url": "http://127.0.0.1:9"})(), {"port": 0})
    node = PaperNode(config_of(data), handle_signals=False)
    assert node.ops is not None
    task = asyncio.create_task(node.run())
    try:
        while not node.running.is_set():
            await asyncio.sleep(0.02)
        async with httpx.AsyncClient(timeout=WAIT) as http:
            resp = await http.get(f"http://127.0.0.1:{node.ops.server.port}/health")  # type: ignore[union-attr]
    finally:
        node.stop("test done")
        await asyncio.wait_for(task, WAIT)
    assert resp.status_code == 503
    problems = resp.json()["problems"]
    assert any("not connected" in p for p in problems) and any("received no frame" in p for p in problems)


async def test_a_taken_ops_port_is_a_config_error_naming_it(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        data = usdm_paper(type("S", (), {"ws_url": "ws://127.0.0.1:9", "http_url": "http://127.0.0.1:9"})(), {"port": port})
        node = PaperNode(config_of(data), handle_signals=False)
        with pytest.raises(ConfigError, match=rf"ops\.port.*127\.0\.0\.1:{port}.*in use"):
            await asyncio.wait_for(node.run(), WAIT)


def test_the_live_daemon_hooks_count_reconciliation_mismatches_and_rate_limit_headroom() -> None:
    hooks = OpsHooks(OpsConfig())
    hooks.on_reconciliation_mismatch("BINANCE", "position 0.01 here, 0.02 at the venue")
    hooks.on_reconciliation_mismatch("BINANCE", "order x unknown at the venue")
    hooks.set_rate_limit_headroom("BINANCE", 0.75)
    scrape = samples(hooks.metrics.exposition().decode())
    assert total(scrape, "tradebus_reconciliation_mismatches_total", venue="BINANCE") == 2
    assert total(scrape, "tradebus_rate_limit_headroom_ratio", venue="BINANCE") == 0.75


def test_reason_labels_are_bounded() -> None:
    assert reason_label("feed stale: binance-spot delivered nothing for 31.0 s") == "feed stale"
    assert reason_label("trading_state: HALTED denies every order") == "trading_state"
    assert reason_label("") == "unspecified"
    assert len(reason_label("x" * 500)) == 48


class _Target:
    """The little of a daemon :class:`StateCollector` reads."""

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.feeds: list[Any] = []
        self.running = asyncio.Event()
        self.warming_up = False

    def stop(self, reason: str = "") -> None:
        """Nothing to stop."""


def test_exposure_values_swap_contracts_at_their_contract_size() -> None:
    """10 BTC-USDT-SWAP contracts of 0.01 BTC at 60,000 are 6,000 USDT of exposure, not 600,000."""
    swap = Instrument("OKX", "BTC-USDT-SWAP", kind=InstrumentKind.PERPETUAL, base="BTC", quote="USDT",
                      tick_size=0.1, lot_size=1.0, contract_size=0.01, leverage=5.0)  # fmt: skip
    kernel = Kernel([swap], initial_cash=10_000.0)
    iid = swap.instrument_id
    kernel.portfolio.apply_fill(
        OrderFilled("s", iid, "c1", "v1", "t1", OrderSide.BUY, 10.0, 60_000.0, 0.0, Liquidity.TAKER, 0, 0)
    )
    kernel.portfolio.mark(iid, 60_000.0)
    families = {f.name: f for f in StateCollector(_Target(kernel), DaemonMetrics(process=False)).collect()}
    (position,) = families["tradebus_position"].samples
    (exposure,) = families["tradebus_exposure"].samples
    assert (position.value, exposure.value) == (10.0, pytest.approx(6_000.0))


@pytest.mark.parametrize(("path", "status"), [("/health", 503), ("/metrics", 200), ("/nowhere", 404)])
async def test_a_head_request_is_answered_as_get_without_the_body(path: str, status: int) -> None:
    """``curl -I`` or an uptime monitor's HEAD probe of ``/health`` got 405 "only GET", so the monitor read a running
    daemon as down; HTTP servers must answer HEAD as GET, without the body (RFC 9110, 9.3.2)."""
    report = {"status": "unhealthy", "problems": ["feed binance-usdm not connected"]}
    server = OpsServer("127.0.0.1", 0, lambda: b"tradebus_up 1.0\n", lambda: (False, report))
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}", timeout=WAIT) as http:
            got, head = await http.get(path), await http.head(path)
            posted = await http.post(path)
    finally:
        await server.stop()
    assert (got.status_code, head.status_code, posted.status_code) == (status, status, 405)
    assert head.content == b"" and got.content != b""
    assert head.headers["content-length"] == str(len(got.content))
    assert head.headers["content-type"] == got.headers["content-type"]


@pytest.mark.parametrize("path", ["/health", "/metrics", "/nowhere"])
async def test_a_method_other_than_get_or_head_is_answered_405_naming_the_allowed_ones(path: str) -> None:
    """A POST got 405 with no ``Allow`` header, which RFC 9110 (15.5.6) requires of a 405: a client could not tell
    what the server takes."""
    server = OpsServer("127.0.0.1", 0, lambda: b"tradebus_up 1.0\n", lambda: (True, {"status": "ok"}))
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}", timeout=WAIT) as http:
            answers = [await http.request(method, path) for method in ("POST", "PUT", "DELETE", "OPTIONS")]
    finally:
        await server.stop()
    assert [(a.status_code, a.headers.get("allow")) for a in answers] == [(405, "GET, HEAD")] * 4


@pytest.mark.parametrize(("healthy", "status"), [(True, 200), (False, 503)])
async def test_a_trailing_slash_gets_the_same_answer_as_without(healthy: bool, status: int) -> None:
    """An uptime monitor probing ``/health/`` (a trailing slash, as many write it) got 404 and read the daemon as
    down, healthy or not; ``/health/`` and ``/metrics/`` answer as ``/health`` and ``/metrics`` (GET and HEAD),
    while a path that only starts so is still unknown."""
    report = {"status": "ok" if healthy else "unhealthy", "problems": [] if healthy else ["feed x not connected"]}
    server = OpsServer("127.0.0.1", 0, lambda: b"tradebus_up 1.0\n", lambda: (healthy, report))
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}", timeout=WAIT) as http:
            got = {p: await http.get(p) for p in ("/health", "/health/", "/metrics", "/metrics/", "/health/x")}
            head = await http.head("/health/?verbose=1")
    finally:
        await server.stop()
    assert [got[p].status_code for p in got] == [status, status, 200, 200, 404]
    assert json.loads(got["/health/"].content) == json.loads(got["/health"].content) == report
    assert got["/metrics/"].content == got["/metrics"].content == b"tradebus_up 1.0\n"
    assert (head.status_code, head.content, head.headers["content-length"]) == (
        status, b"", str(len(got["/health"].content))
    )
