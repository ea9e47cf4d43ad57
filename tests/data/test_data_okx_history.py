"""OKX L2 order-book archives: a real ``books`` stream imported, replayed and checked against OKX's own checksums."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tradebus.adapters.okx.sync import okx_checksum
from tradebus.data.catalog import Catalog
from tradebus.data.cli import data_app
from tradebus.data.okx_history import import_okx_book
from tradebus.data.replay import Replay, ReplaySource
from tradebus.engine.messages import BookSnapshot
from tradebus.errors import DataError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "okx"
ARCHIVE = FIXTURES / "BTC-USDT-L2orderbook-400lv-2022-05-13_cut.tar.gz"
MEMBER = "BTC-USDT-L2orderbook-400lv-2022-05-13.data"
CAPTURE = FIXTURES / "okx_v5_public_2022-05-13.jsonl.gz"


def archive_lines() -> list[dict]:
    with tarfile.open(ARCHIVE) as tf:
        return [json.loads(line) for line in tf.extractfile(MEMBER).read().decode().splitlines()]  # type: ignore[union-attr]


def ws_frames() -> list[dict]:
    """The BTC-USDT ``books`` frames of the real capture the archive was cut from (with OKX's checksums)."""
    out = []
    with gzip.open(CAPTURE, "rt") as fh:
        for line in fh:
            frame = json.loads(json.loads(line)["d"])
            if frame.get("arg", {}).get("channel") == "books" and "action" in frame and frame["arg"]["instId"] == "BTC-USDT":
                out.append(frame["data"][0])
    return out


def write_archive(path: Path, lines: list[dict | str]) -> Path:
    data = "".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines).encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        info = tarfile.TarInfo(MEMBER)
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    path.write_bytes(gzip.compress(buf.getvalue()))
    return path


def test_imported_book_replays_to_every_okx_checksum(tmp_path: Path) -> None:
    lines, frames = archive_lines(), ws_frames()
    manifest = import_okx_book(ARCHIVE, tmp_path / "cat", "BTC-USDT")
    assert manifest.rows == sum(len(x["asks"]) + len(x["bids"]) for x in lines)
    msgs = list(Replay([ReplaySource.from_catalog(tmp_path / "cat", "BTC-USDT.OKX", "okx", "spot", "BTC-USDT", "book")]))
    assert len(msgs) == len(frames) == 98 and isinstance(msgs[0], BookSnapshot)
    assert [m.ts_event for m in msgs] == [int(f["ts"]) * 1_000_000 for f in frames]
    assert [m.last_seq for m in msgs] == list(range(1, 99))
    # OKX's checksum covers the exchange's strings: map each stored float back to the string it came from
    text = {float(s): s for f in frames for side in ("bids", "asks") for level in f[side] for s in level[:2]}
    bids: dict[float, float] = {}
    asks: dict[float, float] = {}
    for msg, frame in zip(msgs, frames, strict=True):
        if isinstance(msg, BookSnapshot):
            bids.clear()
            asks.clear()
        for book, levels in ((bids, msg.bids), (asks, msg.asks)):
            for price, size in levels:
                if size == 0:
                    book.pop(float(price), None)
                else:
                    book[float(price)] = float(size)
        best_bids = [(text[p], text[bids[p]]) for p in sorted(bids, reverse=True)[:25]]
        best_asks = [(text[p], text[asks[p]]) for p in sorted(asks)[:25]]
        assert okx_checksum(best_bids, best_asks) == frame["checksum"]


def _bad(lines: list[dict], index: int, **changes: object) -> list[dict]:
    out = [dict(x) for x in lines]
    out[index].update(changes)
    return out


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda ls: ls[1:], f"{MEMBER} line 1: field action: an update before the first snapshot"),
        (lambda ls: _bad(ls, 4, ts=ls[2]["ts"]), f"{MEMBER} line 5: field ts: {int(archive_lines()[2]['ts'])} goes back"),
        (lambda ls: _bad(ls, 3, ts=str(int(ls[3]["ts"]) // 1000)), f"{MEMBER} line 4: field ts:"),
        (lambda ls: _bad(ls, 6, instId="ETH-USDT"), f"{MEMBER} line 7: field instId: 'ETH-USDT'"),
        (lambda ls: _bad(ls, 2, action="partial"), f"{MEMBER} line 3: field action: 'partial'"),
        (lambda ls: _bad(ls, 9, bids=[["-1", "2", "1"]]), f"{MEMBER} line 10: field bids[0].price: '-1'"),
        (lambda ls: _bad(ls, 9, asks=[["30000", "nan", "1"]]), f"{MEMBER} line 10: field asks[0].size: 'nan'"),
        (lambda ls: _bad(ls, 0, asks=[["1", "2", "1"], *ls[0]["asks"]]), f"{MEMBER} line 1: field bids[0].price:"),
        (lambda ls: _bad(ls, 0, bids=ls[0]["bids"][1:2] + ls[0]["bids"][:1]), f"{MEMBER} line 1: field bids[1].price:"),
        (lambda ls: _bad(ls, 0, bids=[[ls[0]["bids"][0][0], "0", "0"]]), f"{MEMBER} line 1: field bids[0].size: '0'"),
        (lambda ls: [*ls[:3], "{not json", *ls[3:]], f"{MEMBER} line 4: malformed line"),
    ],
)
def test_bad_lines_are_refused_naming_line_and_field_and_nothing_is_written(tmp_path: Path, mutate, expected: str) -> None:
    path = write_archive(tmp_path / "BTC-USDT-L2orderbook-400lv-2022-05-13.tar.gz", mutate(archive_lines()))
    with pytest.raises(DataError) as err:
        import_okx_book(path, tmp_path / "cat", "BTC-USDT")
    assert expected in str(err.value)
    assert Catalog(tmp_path / "cat").datasets() == []
    assert not any(p.is_file() for p in (tmp_path / "cat").rglob("*"))


def test_sequence_ids_when_present_must_chain(tmp_path: Path) -> None:
    lines = archive_lines()[:5]
    for i, line in enumerate(lines):
        line["seqId"], line["prevSeqId"] = 100 + i, (-1 if i == 0 else 99 + i)
    ok = import_okx_book(write_archive(tmp_path / "ok.tar.gz", lines), tmp_path / "cat", "BTC-USDT", suffix="_ok")
    stored = Catalog(tmp_path / "cat").read("okx", "spot", "BTC-USDT", "book_ok").column("sequence").to_pylist()
    assert ok.rows == len(stored) and sorted(set(stored)) == [100, 101, 102, 103, 104]
    lines[3]["prevSeqId"] = 101  # message 102 lost
    with pytest.raises(DataError, match=f"{MEMBER} line 4: field prevSeqId: 101 is not the previous seqId 102"):
        import_okx_book(write_archive(tmp_path / "gap.tar.gz", lines), tmp_path / "cat", "BTC-USDT", suffix="_gap")
    assert [d.dataset for d in Catalog(tmp_path / "cat").datasets()] == ["book_ok"]


def test_an_update_without_the_sequence_ids_of_its_snapshot_is_refused(tmp_path: Path) -> None:
    """A sequenced chain whose last update lost its ids would hide the update lost before it."""
    lines = archive_lines()[:5]
    for i, line in enumerate(lines):
        line["seqId"], line["prevSeqId"] = 100 + i, (-1 if i == 0 else 99 + i)
    del lines[3]  # message 103 lost
    del lines[3]["seqId"], lines[3]["prevSeqId"]
    with pytest.raises(DataError, match=f"{MEMBER} line 4: field seqId: missing in an update after a snapshot that carried one"):
        import_okx_book(write_archive(tmp_path / "a.tar.gz", lines), tmp_path / "cat", "BTC-USDT")
    lines = archive_lines()[:3]
    lines[2]["seqId"], lines[2]["prevSeqId"] = 7, 6
    with pytest.raises(DataError, match=f"{MEMBER} line 3: field seqId: 7 in an update after a snapshot without one"):
        import_okx_book(write_archive(tmp_path / "b.tar.gz", lines), tmp_path / "cat", "BTC-USDT")
    assert Catalog(tmp_path / "cat").datasets() == []


def test_a_truncated_archive_is_refused_and_the_cli_exits_3(tmp_path: Path) -> None:
    broken = tmp_path / "BTC-USDT-L2orderbook-400lv-2022-05-13.tar.gz"
    broken.write_bytes(ARCHIVE.read_bytes()[:-4000])
    result = CliRunner().invoke(data_app, ["import-okx-book", str(broken), "--symbol", "BTC-USDT",
                                           "--catalog", str(tmp_path / "cat")])
    assert result.exit_code == 3, result.output
    assert "not a readable OKX archive" in result.output
    assert not any(p.is_file() for p in (tmp_path / "cat").rglob("*"))
    result = CliRunner().invoke(data_app, ["import-okx-book", str(ARCHIVE), "--symbol", "BTC-USDT",
                                           "--catalog", str(tmp_path / "cat")])
    assert result.exit_code == 0, result.output
    assert Catalog(tmp_path / "cat").read("okx", "spot", "BTC-USDT", "book").num_rows > 0
