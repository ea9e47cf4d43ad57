"""Every command that reads a YAML file refuses one it cannot read: exit 2, the file named, no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from tradebus.cli import app

REPO = Path(__file__).resolve().parent.parent
QUICKSTART = REPO / "configs" / "quickstart.yaml"


def _commands(bad: Path, tmp: Path) -> dict[str, list[str]]:
    out = str(tmp / "out")
    return {
        "backtest": ["backtest", str(bad), "--out", out],
        "paper": ["paper", str(bad), "--max-seconds", "1"],
        "replay": ["replay", str(bad), "--config", str(bad), "--out", out],
        "sweep --space": ["sweep", str(QUICKSTART), "--space", str(bad), "--out", out],
        "research dataset": ["research", "dataset", str(bad), "--out", out],
        "research run": ["research", "run", str(bad), "--out", out],
        "live": ["live", str(bad)],
        "live-kill": ["live-kill", str(bad)],
        "live-resume": ["live-resume", str(bad)],
        "serve --config": ["serve", str(bad), "--config", str(bad), "--write-config", str(tmp / "copy.yaml")],
    }


COMMANDS = list(_commands(Path("x"), Path("y")))


@pytest.mark.parametrize("command", COMMANDS)
def test_a_binary_yaml_file_is_refused_naming_it(tmp_path: Path, command: str) -> None:
    bad = tmp_path / "run.yaml"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n\x00\xf6\xff" * 8)
    result = CliRunner().invoke(app, _commands(bad, tmp_path)[command])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == 2, result.output
    flat = "".join(result.output.split())
    assert f"{bad}:cannotread" in flat and "notUTF-8text" in flat
    assert not (tmp_path / "copy.yaml").exists()


def test_a_space_file_that_is_a_directory_is_refused_naming_it(tmp_path: Path) -> None:
    space = tmp_path / "space.yaml"
    space.mkdir()
    result = CliRunner().invoke(app, _commands(space, tmp_path)["sweep --space"])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == 2, result.output
    assert f"{space}: cannot read space file" in result.output


@pytest.mark.parametrize("command", COMMANDS)
def test_an_impossible_date_in_a_yaml_file_is_refused_naming_its_line(tmp_path: Path, command: str) -> None:
    bad = tmp_path / "run.yaml"
    bad.write_text("data:\n  start: 2021-13-01\n", encoding="utf-8")
    result = CliRunner().invoke(app, _commands(bad, tmp_path)[command])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == 2, result.output
    flat = "".join(result.output.split())
    assert f"{bad}:notvalidYAML:'2021-13-01'isnotavalidtimestamp(monthmustbein1..12)" in flat
    assert "line2,column10" in flat


@pytest.mark.parametrize("value", ["2021-13-01", "2021-02-30"])
def test_set_with_an_impossible_date_is_refused_naming_it(tmp_path: Path, value: str) -> None:
    result = CliRunner().invoke(
        app, ["backtest", str(QUICKSTART), "--out", str(tmp_path / "out"), "--set", f"data.start={value}"]
    )
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == 2, result.output
    assert f"--set 'data.start={value}': the value is not valid YAML: '{value}' is not a valid timestamp" in result.output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", ["replay", "paper", "backtest"])
def test_a_live_config_given_to_replay_paper_or_backtest_is_refused_saying_to_drop_its_live_section(
    tmp_path: Path, command: str
) -> None:
    """The README says a live recording replays as the same file without its private lines; a user
    who replayed it with the live config it was recorded with read only ``live: unknown key (not
    allowed here)`` (backtest: among ``warm_up``, ``ops``...), not what config the command takes."""
    config = Path(__file__).parent.parent / "configs" / "live_binance_usdm_testnet.yaml"
    recording = Path(__file__).parent / "fixtures" / "binance" / "usdm_btcusdt_20230404_head4000.gz"
    args = {
        "replay": ["replay", str(recording), "--config", str(config), "--out", str(tmp_path / "out")],
        "paper": ["paper", str(config), "--out", str(tmp_path / "out")],
        "backtest": ["backtest", str(config), "--out", str(tmp_path / "out")],
    }[command]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert (f"{config}: a live config (it has a live: section) is run by 'tradebus live'; this command takes the "
            "config without it: give it a copy without the live: section (a live recording replays with that copy)") in text
    assert "Traceback" not in result.output
    assert not (tmp_path / "out").exists()
