"""Every command that writes refuses an output path under a file with a clear error (exit 2), not a traceback.

Each of these died with ``NotADirectoryError`` and a Python traceback (exit 1); ``research run``
and ``data import`` only after their whole run or read.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from tradebus.cli import app

REPO = Path(__file__).resolve().parents[1]
BARS = REPO / "tests" / "fixtures" / "kernel" / "coinbase_btc_usd_4h_2022_1200.csv"


@pytest.fixture
def blocked(tmp_path: Path) -> Path:
    """A file where a directory would have to be."""
    path = tmp_path / "afile"
    path.write_text("not a directory")
    return path


def _run_dir(tmp_path: Path) -> Path:
    shutil.copy(BARS, tmp_path / "bars.csv")
    config = {
        "data": {"sources": [{"instrument": "BTC-USD.COINBASE", "file": "bars.csv"}]},
        "instruments": [{"venue": "COINBASE", "symbol": "BTC-USD", "tick_size": 0.01, "lot_size": 1.0e-8}],
        "strategy": {"name": "ema_cross", "instruments": ["BTC-USD.COINBASE"], "params": {"fast": 10, "slow": 30, "quantity": 0.1}},
    }
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))
    assert CliRunner().invoke(app, ["backtest", str(tmp_path / "run.yaml"), "--out", str(tmp_path / "run")]).exit_code == 0
    return tmp_path / "run"


@pytest.mark.parametrize("command", ["report", "compare", "research dataset", "research run", "sweep", "data import",
                                     "paper journal", "paper record"])
def test_an_output_path_under_a_file_is_a_clear_error(command: str, tmp_path: Path, blocked: Path) -> None:
    target = blocked / "sub"
    if command in ("report", "compare"):
        run = _run_dir(tmp_path)
        args = ["report", str(run)] if command == "report" else ["report", "compare", str(run), str(run)]
        args += ["--out", str(target / "page.html")]
    elif command == "research dataset":
        args = ["research", "dataset", str(REPO / "configs" / "research_btc.yaml"), "--out", str(target)]
    elif command == "research run":
        args = ["research", "run", str(REPO / "configs" / "systems" / "ml_gated.yaml"), "--out", str(target)]
    elif command == "sweep":
        space = tmp_path / "space.yaml"
        space.write_text(yaml.safe_dump({"params": {"strategy.params.fast": [10]}}))
        args = ["sweep", str(REPO / "configs" / "quickstart.yaml"), "--space", str(space), "--out", str(target)]
    elif command == "data import":
        args = ["data", "import", str(BARS), "--venue", "coinbase", "--market", "spot", "--symbol", "BTC-USD",
                "--catalog", str(target)]
    else:  # the paper daemon stops before connecting and before writing any output
        config = yaml.safe_load((REPO / "configs" / "paper_local.yaml").read_text())
        config["journal"] = str(target / "journal.sqlite" if command == "paper journal" else tmp_path / "j.sqlite")
        config["record"] = str(target / "frames.jsonl.gz" if command == "paper record" else tmp_path / "f.jsonl.gz")
        (tmp_path / "paper.yaml").write_text(yaml.safe_dump(config))
        args = ["paper", str(tmp_path / "paper.yaml"), "--out", str(tmp_path / "paper-out")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert "Not a directory" in result.output or "not a directory" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert blocked.read_text() == "not a directory"
    assert not (tmp_path / "paper-out").exists()


def _without_root_override() -> list[str]:
    """A command prefix under which file modes hold (root ignores them: a mode-555 directory is writable)."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("root without setpriv: file modes cannot be made to hold")
    caps = "-dac_override,-dac_read_search"
    return [setpriv, f"--inh-caps={caps}", f"--bounding-set={caps}"]


def test_an_existing_output_directory_that_is_not_writable_is_refused_before_the_run(tmp_path: Path) -> None:
    """The whole backtest ran, then died with a PermissionError traceback (exit 1)."""
    shutil.copy(BARS, tmp_path / "bars.csv")
    config = {
        "data": {"sources": [{"instrument": "BTC-USD.COINBASE", "file": "bars.csv"}]},
        "instruments": [{"venue": "COINBASE", "symbol": "BTC-USD", "tick_size": 0.01, "lot_size": 1.0e-8}],
        "strategy": {"name": "ema_cross", "instruments": ["BTC-USD.COINBASE"], "params": {"fast": 10, "slow": 30, "quantity": 0.1}},
    }
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))
    out = tmp_path / "locked"
    out.mkdir()
    out.chmod(0o555)
    try:
        result = subprocess.run(
            [*_without_root_override(), sys.executable, "-m", "tradebus.cli", "backtest", str(tmp_path / "run.yaml"),
             "--out", str(out)],
            capture_output=True, text=True, check=False, env={**os.environ, "PYTHONPATH": str(REPO)},
        )
    finally:
        out.chmod(0o755)
    assert result.returncode == 2, result.stderr
    assert f"output directory {out} is not writable" in " ".join(result.stderr.split())
    assert "Traceback" not in result.stderr and "fills" not in result.stdout
    assert list(out.iterdir()) == []


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
def test_an_output_directory_that_cannot_be_made_though_its_parent_looks_writable_is_refused_before_the_run(
    tmp_path: Path,
) -> None:
    """``backtest --out /proc/x`` ran the whole backtest, then died making the directory with a FileNotFoundError
    traceback (exit 1): /proc passes an ``access`` check for writing (root passes every one), yet makes no folder.
    The directory is now made and removed again before the run, and refused naming it (exit 2). The data holds a
    bad row: read before the refusal, it would be exit 3."""
    lines = BARS.read_text().splitlines()
    lines[3] = lines[3].replace(lines[3].split(",")[2], "1", 1)  # a high of 1, below the bar's low: bad data
    (tmp_path / "bars.csv").write_text("\n".join(lines) + "\n")
    config = {
        "data": {"sources": [{"instrument": "BTC-USD.COINBASE", "file": "bars.csv"}]},
        "instruments": [{"venue": "COINBASE", "symbol": "BTC-USD", "tick_size": 0.01, "lot_size": 1.0e-8}],
        "strategy": {"name": "ema_cross", "instruments": ["BTC-USD.COINBASE"], "params": {"fast": 10, "slow": 30, "quantity": 0.1}},
    }
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))
    bad = CliRunner().invoke(app, ["backtest", str(tmp_path / "run.yaml"), "--out", str(tmp_path / "run")])
    assert bad.exit_code == 3 and "row 3" in bad.output, bad.output  # the data's own error, with a good --out
    target = Path("/proc") / f"tradebus-test-{os.getpid()}"
    result = subprocess.run(
        [sys.executable, "-m", "tradebus.cli", "backtest", str(tmp_path / "run.yaml"), "--out", str(target)],
        capture_output=True, text=True, check=False, env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    said = " ".join(result.stderr.split())
    assert result.returncode == 2, result.stderr
    assert f"output directory {target} cannot be created: {target} (ENOENT" in said, said
    assert "Traceback" not in result.stderr and not target.exists()
