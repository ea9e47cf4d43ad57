"""Shared test data helpers for the Binance/common adapter tests (not a test module).

Everything reads tests/fixtures/binance/ (cuts of real captures; see tests/fixtures/SOURCES.md).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np

from tradebus.adapters.common.recorder import iter_hftbacktest
from tradebus.engine.messages import BookDelta, BookSnapshot

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "binance"
SPOT_CAPTURE = FIXTURES / "spot_btcusdt_20240808_head4000.gz"
USDM_CAPTURE = FIXTURES / "usdm_btcusdt_20230404_head4000.gz"
CF_USDM = FIXTURES / "cryptofeed_usdm_2021-07-22.ws.txt.gz"
CF_SPOT = FIXTURES / "cryptofeed_spot_2021-10-12.ws.txt.gz"
IID = "BTCUSDT.BINANCE"


def capture(path: Path = SPOT_CAPTURE) -> list[tuple[int, str]]:
    """(recv_ns, raw) lines of a hftbacktest capture cut."""
    return list(iter_hftbacktest(path))


def cryptofeed_frames(path: Path) -> list[tuple[int, str]]:
    """(recv_ns, raw) of the received frames of a cryptofeed raw recording ('<ts>: <json>' lines)."""
    out = []
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            head, sep, raw = line.rstrip("\n").partition(": ")
            if sep and head.replace(".", "", 1).isdigit() and raw.startswith("{"):
                out.append((int(float(head) * 1e9), raw))
    return out


def levels(rows: list[list[str]]) -> np.ndarray:
    """Level strings -> float64 (n, 2)."""
    return np.array([[float(p), float(q)] for p, q in rows], dtype=np.float64).reshape(-1, 2)


def delta_from(raw: str, recv_ns: int = 0, iid: str = IID) -> BookDelta:
    """BookDelta built with the json module (independent of the adapter's parser)."""
    d = json.loads(raw)["data"]
    return BookDelta(iid, d["E"] * 1_000_000, recv_ns, levels(d["b"]), levels(d["a"]), d["U"], d["u"], d.get("pu", -1))


def snapshot_from(raw: str, recv_ns: int = 0, iid: str = IID) -> BookSnapshot:
    """BookSnapshot built with the json module."""
    s = json.loads(raw)
    return BookSnapshot(iid, 0, recv_ns, levels(s["bids"]), levels(s["asks"]), s["lastUpdateId"])


def offline_rebuild(lines: list[tuple[int, str]], futures: bool) -> tuple[dict[float, float], dict[float, float], int, int]:
    """Rebuild the book with plain dicts from the capture's snapshot and diffs (reference model).

    Returns (bids, asks, last_update_id, applied_diff_count). Raises AssertionError on a gap.
    """
    bids: dict[float, float] = {}
    asks: dict[float, float] = {}
    pending: list[dict] = []
    last = None
    applied = 0
    first = True
    for _, raw in lines:
        msg = json.loads(raw)
        if "lastUpdateId" in msg:
            bids = {float(p): float(q) for p, q in msg["bids"] if float(q) > 0}
            asks = {float(p): float(q) for p, q in msg["asks"] if float(q) > 0}
            last = msg["lastUpdateId"]
            continue
        if msg["data"].get("e") != "depthUpdate":
            continue
        pending.append(msg["data"])
        if last is None:
            continue
        for d in pending:
            if first:
                if (d["u"] < last) if futures else (d["u"] <= last):
                    continue
                ok = d["U"] <= last <= d["u"] if futures else d["U"] <= last + 1 <= d["u"]
            else:
                ok = d["pu"] == last if futures else d["U"] == last + 1
            assert ok, f"gap at U={d['U']} u={d['u']} last={last}"
            for side, key in ((bids, "b"), (asks, "a")):
                for p, q in d[key]:
                    if float(q) == 0.0:
                        side.pop(float(p), None)
                    else:
                        side[float(p)] = float(q)
            last = d["u"]
            first = False
            applied += 1
        pending = []
    assert last is not None
    return bids, asks, last, applied


def book_arrays(bids: dict[float, float], asks: dict[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Reference dict book -> sorted (n, 2) arrays, best first."""
    b = np.array(sorted(bids.items(), key=lambda kv: -kv[0]), dtype=np.float64).reshape(-1, 2)
    a = np.array(sorted(asks.items()), dtype=np.float64).reshape(-1, 2)
    return b, a
