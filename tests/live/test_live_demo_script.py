"""scripts/live_demo.py: the local copy of a live config it writes names the original's files."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import yaml

from tests.reaped import reaped
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
