"""A paper daemon restarts on an ``--out`` directory holding the files its config names.

The journal, the recording and the log file (``ops.log.file``, with the copies loguru's
rotation leaves beside it) are the config's, not foreign files: a restart on the same
``--out`` runs without ``--force`` and leaves them as they were. The feed is a closed port
on 127.0.0.1, so the daemon runs (reconnecting) until ``--max-seconds`` stops it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from tradebus.cli import app

from .node_testdata import binance_config

pytestmark = pytest.mark.usefixtures("_loguru_to_current_stderr")


def paper_config(tmp_path: Path, rotation: str) -> Path:
    """A paper config keeping its journal and its JSON log file in ``run/``, the directory given to ``--out``."""
    data = binance_config("ws://127.0.0.1:9", "http://127.0.0.1:9", ["trade"])
    data["journal"] = "run/journal.sqlite"
    data["warm_up"] = False
    data["ops"] = {"log": {"file": "run/daemon.jsonl", "serialize": True, "rotation": rotation}}
    path = tmp_path / "paper.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


@pytest.mark.parametrize("rotation", ["100 MB", "1 KB"])
def test_a_restart_keeps_the_log_file_and_its_rotated_copies_inside_out(tmp_path: Path, rotation: str) -> None:
    config, out = paper_config(tmp_path, rotation), tmp_path / "run"
    paper = ["paper", str(config), "--out", str(out), "--max-seconds", "1"]

    first = CliRunner().invoke(app, paper)
    assert first.exit_code == 0, first.output
    logs = sorted(p.name for p in out.glob("daemon*"))
    assert "daemon.jsonl" in logs
    if rotation == "1 KB":
        assert len(logs) > 1, logs  # rotated copies: daemon.<time>.jsonl
    rotated = {name: (out / name).read_bytes() for name in logs if name != "daemon.jsonl"}

    restart = CliRunner().invoke(app, paper)
    assert restart.exit_code == 0, restart.output
    assert "does not write" not in restart.output
    assert {name: (out / name).read_bytes() for name in rotated} == rotated  # untouched
    assert (out / "node.json").is_file()

    (out / "notes.jsonl").write_text("mine\n")
    refused = CliRunner().invoke(app, paper)
    assert refused.exit_code == 2
    assert f"output directory {out} holds files a paper run does not write: notes.jsonl." in refused.output
