"""scripts/live_demo.py: the local copy of a live config it writes names the original's files; it serves OKX spot too."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.reaped import reaped
from tradebus.adapters.common.recorder import read_frames
from tradebus.node.live import load_live_config

ROOT = Path(__file__).resolve().parents[2]
CAPTURE = ROOT / "tests" / "fixtures" / "binance" / "spot_btcusdt_20240808_head4000.gz"


def test_live_demo_write_config_elsewhere_keeps_every_relative_path_of_the_config(tmp_path: Path) -> None:
    """A copy written to another directory names the original's log file; its journal and recording lie beside the copy."""
    configs = tmp_path / "configs"
    configs.mkdir()
    data = yaml.safe_load((ROOT / "configs" / "live_binance_testnet.yaml").read_text(encoding="utf-8"))
    data["ops"] = {"log": {"file": "logs/x.log"}}
    config = configs / "live.yaml"
    config.write_text(yaml.safe_dump(data), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-u", str(ROOT / "scripts" / "live_demo.py"), str(CAPTURE),
               "--config", str(config), "--write-config", "elsewhere/live.yaml"]
    with subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) as proc, \
            reaped(proc):
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:  # the script prints where it wrote the config once both servers are up
            lines.append(line)
            if "config written to" in line:
                break
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
    assert any("config written to" in line for line in lines), lines
    copy = load_live_config(tmp_path / "elsewhere" / "live.yaml")
    assert copy.ops is not None and copy.ops.log.file == configs / "logs" / "x.log"
    assert copy.journal == tmp_path / "elsewhere" / "live-local" / "journal.sqlite"
    assert copy.record == tmp_path / "elsewhere" / "live-local" / "frames.jsonl.gz"
    assert copy.live.rest_url is not None and copy.live.rest_url.startswith("http://127.0.0.1:")
    assert all(feed.ws_url.startswith("ws://127.0.0.1:") for feed in copy.feeds)


OKX_RECORDING = ROOT / "tests" / "fixtures" / "okx" / "okx_v5_public_2022-05-13.jsonl.gz"


def _recorded_okx_prices() -> set[float]:
    """The prices of the BTC-USDT trades of the OKX recording, read from its raw frames."""
    prices = set()
    for _, _, raw in read_frames(OKX_RECORDING):
        msg = json.loads(raw)
        if (msg.get("arg") or {}).get("channel") == "trades" and msg["arg"].get("instId") == "BTC-USDT":
            prices.update(float(t["px"]) for t in msg.get("data") or [])
    return prices


def test_live_demo_serves_an_okx_spot_account_a_live_daemon_trades_on(tmp_path: Path) -> None:
    """``--venue okx``: the shipped OKX spot config, pointed at the local OKX account and the recorded stream,
    runs ``tradebus live`` with the keys the script prints: it logs in, reconciles and its market buy fills
    at a recorded trade's price, the fee the instrument's taker rate of it."""
    data = yaml.safe_load((ROOT / "configs" / "live_okx_spot_demo.yaml").read_text(encoding="utf-8"))
    data["strategy"]["params"].update(fast=2, slow=5)  # trades within the recording's 69 trades
    config = tmp_path / "live_okx.yaml"
    config.write_text(yaml.safe_dump(data), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-u", str(ROOT / "scripts" / "live_demo.py"), str(OKX_RECORDING), "--venue", "okx",
               "--config", str(config), "--write-config", "local/live.yaml", "--speed", "1"]
    with subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) as demo, \
            reaped(demo):
        assert demo.stdout is not None
        lines = [demo.stdout.readline(), demo.stdout.readline()]
        assert "config written to" in lines[0], lines
        keys = dict(part.split("=", 1) for part in lines[1].split()[1:])
        assert set(keys) == {"TRADEBUS_OKX_API_KEY", "TRADEBUS_OKX_API_SECRET", "TRADEBUS_OKX_API_PASSPHRASE"}, lines
        copy = load_live_config(tmp_path / "local" / "live.yaml")
        assert copy.live.venue == "okx" and copy.live.environment == "testnet"
        assert copy.live.ws_api_url is not None and copy.live.ws_api_url.endswith("/ws/v5/private")
        out = tmp_path / "out"
        daemon_env = {**env, **keys, "NUMBA_CACHE_DIR": str(ROOT / ".cache" / "numba")}
        with open(tmp_path / "live.log", "w") as log, subprocess.Popen(
            [sys.executable, "-m", "tradebus.cli", "live", str(tmp_path / "local" / "live.yaml"), "--out", str(out)],
            cwd=tmp_path, env=daemon_env, stdout=log, stderr=subprocess.STDOUT,
        ) as daemon, reaped(daemon):
            deadline = time.monotonic() + 300
            while not ((out / "fills.csv").exists() and len(pd.read_csv(out / "fills.csv")) > 0):
                assert daemon.poll() is None, (tmp_path / "live.log").read_text()
                assert time.monotonic() < deadline, (tmp_path / "live.log").read_text()
                time.sleep(0.2)
            daemon.send_signal(signal.SIGINT)
            assert daemon.wait(timeout=120) == 0
        demo.send_signal(signal.SIGINT)
        demo.communicate(timeout=60)
    log_text = (tmp_path / "live.log").read_text()
    assert "reconciled BTC-USDT.OKX: 0.0 BTC held, as at the venue" in log_text
    fill = pd.read_csv(out / "fills.csv").iloc[0]
    assert (fill["side"], fill["quantity"]) == ("BUY", 0.001)
    assert fill["price"] in _recorded_okx_prices()
    assert fill["fee"] == pytest.approx(0.001 * fill["price"] * 0.001, rel=1e-12)


def test_the_binance_and_okx_demos_copies_beside_each_other_have_journals_of_their_own(tmp_path: Path) -> None:
    """The README's two demos write runs/live_local.yaml and runs/live_okx_local.yaml: both copies named
    runs/live-local/journal.sqlite, so `tradebus live runs/live_local.yaml` after the OKX demo's run was refused,
    exit 3 ('written by a live (okx spot, testnet) run, opened by a live (binance spot, testnet) run'), and the OKX
    daemon recorded into the Binance demo's recording. Each venue's copy now has its own run directory (Binance's
    unchanged)."""
    spec = importlib.util.spec_from_file_location("live_demo", ROOT / "scripts" / "live_demo.py")
    assert spec is not None and spec.loader is not None
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    public, account = ("ws://127.0.0.1:1", "http://127.0.0.1:1"), ("http://127.0.0.1:2", "ws://127.0.0.1:2/ws")
    runs = tmp_path / "runs"
    for venue, config, out in (("binance", "live_binance_testnet.yaml", "live_local.yaml"),
                               ("okx", "live_okx_spot_demo.yaml", "live_okx_local.yaml")):
        demo.write_demo_config(ROOT / "configs" / config, runs / out, public, account, venue)
    binance, okx = (load_live_config(runs / name) for name in ("live_local.yaml", "live_okx_local.yaml"))
    assert binance.journal == runs / "live-local" / "journal.sqlite"
    assert binance.record == runs / "live-local" / "frames.jsonl.gz"
    assert okx.journal is not None and okx.record is not None
    assert okx.journal.parent == okx.record.parent != binance.journal.parent
    assert okx.journal.parent.parent == runs


def test_live_demo_refuses_to_write_its_copy_over_the_config(tmp_path: Path) -> None:
    """``--write-config`` naming ``--config`` replaced the live config with the copy pointed at the demo's servers
    (its feed wss://wspap.okx.com:8443 -> ws://127.0.0.1:<port>); it is refused (one ``error:`` line, exit 1), the
    file untouched."""
    config = tmp_path / "live_okx.yaml"
    config.write_bytes((ROOT / "configs" / "live_okx_spot_demo.yaml").read_bytes())
    before = config.read_bytes()
    res = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "live_demo.py"), str(OKX_RECORDING), "--venue", "okx", "--config",
         str(config), "--write-config", str(config)],
        capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert res.returncode == 1, res.stderr
    assert f"error: --write-config {config}: it is --config" in res.stderr, res.stderr
    assert "config written to" not in res.stdout
    assert config.read_bytes() == before
