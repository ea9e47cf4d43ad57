"""The first-hour items the other tests did not cover: ``--set`` on ``paper`` and ``replay`` recorded in
the run's ``config.yaml``, money to the cent in a coin-quoted run, ``make backtest`` without the dev
extras, the README's compile note, and every built-in strategy documented with a config that runs it."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from tests.live.node_testdata import SPOT_CAPTURE, ServedCapture, kernels_compiled
from tradebus.cli import app
from tradebus.config import load_config
from tradebus.strategies.base import BUILTIN_STRATEGIES

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
runner = CliRunner()
#: The summary rows that are amounts of the quote currency.
MONEY_ROWS = ("initial_cash", "final_equity", "average_loss", "fees_paid", "funding_paid")


def _summary_values(output: str) -> dict[str, str]:
    rows = [[c.strip() for c in line.strip("│ ").split("│")] for line in output.splitlines() if line.startswith("│")]
    return {r[0]: r[1] for r in rows if len(r) == 2}


def test_replay_applies_set_and_records_it_and_shows_usdt_to_the_cent(tmp_path: Path) -> None:
    out = tmp_path / "replay"
    result = runner.invoke(
        app,
        ["replay", str(SPOT_CAPTURE), "--config", str(ROOT / "configs" / "paper_local.yaml"), "--out", str(out),
         "--set", "strategy.params.fast=3", "--set", "strategy.params.slow=9"],
    )
    assert result.exit_code == 0, result.output
    recorded = yaml.safe_load((out / "config.yaml").read_text())
    assert (recorded["strategy"]["params"]["fast"], recorded["strategy"]["params"]["slow"]) == (3, 9)
    # the run is quoted in USDT (a coin): amounts to the cent, however many digits the raw figures have
    values = _summary_values(result.output)
    for key in MONEY_ROWS:
        assert re.fullmatch(r"-?[\d,]+\.\d\d", values[key]), (key, values[key])
    instrument = next(line for line in result.output.splitlines() if line.startswith("│ BTCUSDT.BINANCE"))
    net_pnl, fees = [c.strip() for c in instrument.strip("│ ").split("│")][3:5]
    assert re.fullmatch(r"-?[\d,]+\.\d\d", net_pnl) and re.fullmatch(r"[\d,]+\.\d\d", fees), instrument
    bad = runner.invoke(app, ["replay", str(SPOT_CAPTURE), "-c", str(ROOT / "configs" / "paper_local.yaml"),
                              "--set", "strategy.params.fats=3"])
    assert bad.exit_code == 2 and "strategy.params.fats: unknown key" in bad.output


def test_paper_applies_set_and_records_it(tmp_path: Path) -> None:
    kernels_compiled()  # compiled on the daemon's loop otherwise (warm_up=false): minutes on a cold cache, past the server's life
    server = ServedCapture()
    server.start()
    try:
        assert server.ready.wait(10)
        config: dict[str, Any] = yaml.safe_load((ROOT / "configs" / "paper_local.yaml").read_text())
        config["feeds"][0] |= {"ws_url": server.urls[0], "rest_url": server.urls[1]}
        config |= {"journal": None, "record": None}
        path = tmp_path / "paper.yaml"
        path.write_text(yaml.safe_dump(config))
        out = tmp_path / "paper"
        result = runner.invoke(
            app,
            ["paper", str(path), "--out", str(out), "--max-messages", "300", "--log-level", "WARNING",
             "--set", "strategy.params.fast=3", "--set", "warm_up=false"],
        )
    finally:
        server.close()
    assert result.exit_code == 0, result.output
    recorded = yaml.safe_load((out / "config.yaml").read_text())
    assert recorded["strategy"]["params"]["fast"] == 3 and recorded["warm_up"] is False
    node = json.loads((out / "node.json").read_text())
    assert node["messages"] >= 300, node  # it ran on the served stream until --max-messages


def test_make_backtest_installs_the_runtime_dependencies_only(tmp_path: Path) -> None:
    """``make -n`` prints what each target would run (nothing runs): the dev extras are ``make test``'s."""
    def recipe(target: str) -> str:
        proc = subprocess.run(["make", "-n", "-C", str(ROOT), f"VENV={tmp_path / 'venv'}", target],
                              capture_output=True, text=True, timeout=60, check=True)
        return proc.stdout

    backtest = recipe("backtest")
    assert re.search(r"pip install .* -e \. ", backtest) and "configs/quickstart.yaml" in backtest
    assert ".[dev]" not in backtest
    assert '-e ".[dev]"' in recipe("test")
    # pip's and setuptools' own banners go to the install log, shown only when an install fails
    assert all("install.log" in line for line in backtest.splitlines() if "pip install" in line)


def test_readme_says_the_first_paper_start_compiles_the_kernels_once_and_where_they_are_cached() -> None:
    from tradebus.features import _default_base

    assert re.search(r"first paper start on\s+a machine compiles the feature kernels \(about 40 s\) once", README)
    assert _default_base() == ROOT / ".cache" / "numba"
    assert "load them from `.cache/numba/`" in README


@pytest.mark.parametrize("name", sorted(BUILTIN_STRATEGIES))
def test_every_built_in_strategy_is_documented_with_a_config_that_names_it(name: str) -> None:
    row = re.search(rf"^\| `{name}` \| (?:[^|\\]|\\\|)+ \| `([^`]+)` \|$", README, re.MULTILINE)
    assert row is not None, f"README has no row for the built-in {name!r}"
    pattern = row.group(1)
    configs = sorted((ROOT / "configs").glob(pattern))
    assert configs, f"README names configs/{pattern} for {name!r}, which does not exist"
    target = BUILTIN_STRATEGIES[name]
    named = []
    for path in configs:
        data = yaml.safe_load(path.read_text())
        entries = [data["strategy"]] if "strategy" in data else data.get("strategies", [])
        named += [e["name"] for e in entries if e["name"] in (name, target)]
    assert named, f"no config of {[p.name for p in configs]} runs {name!r}"
    if "data" in yaml.safe_load(configs[0].read_text()):
        load_config(configs[0])  # a backtest config of the README loads


def test_packaging_avoids_the_setuptools_deprecation_banners() -> None:
    """What makes setuptools >= 77 print deprecation banners on ``pip install -e .``: a license table
    or License classifiers instead of an SPDX ``license`` string, or no PEP 517 build system."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert isinstance(project["project"]["license"], str)
    assert not any(c.startswith("License ::") for c in project["project"].get("classifiers", []))
    assert project["build-system"]["build-backend"] == "setuptools.build_meta"
    assert any(re.fullmatch(r"setuptools>=(\d+)", r) and int(r.split(">=")[1]) >= 77 for r in project["build-system"]["requires"])


def test_the_readme_names_every_file_a_run_writes_into_out() -> None:
    """The README's "Run outputs and ``--out``" says a run writes those files "and nothing else": OWN_FILES."""
    from tradebus.reports.writers import OWN_FILES

    section = README[README.index("### Run outputs and `--out`"):]
    paragraph = section[: section.index("\n\n", section.index("`backtest`"))]
    named = set(re.findall(r"`([a-z_]+\.(?:csv|json|yaml|html))`", paragraph))
    assert named == {name for kind in ("backtest", "paper", "replay") for name in OWN_FILES[kind]}


def test_the_config_sections_the_readme_points_to_are_in_those_configs() -> None:
    """The README's "See configs/quickstart.yaml (sections ...)": a newcomer opens it and finds each one."""
    sentence = re.search(r"See\s+`configs/quickstart\.yaml` \(sections (.*?)\)(?: and `configs/(\S+?)` \(adds (.*?)\))?",
                         README, re.S)
    assert sentence is not None
    quickstart = yaml.safe_load((ROOT / "configs" / "quickstart.yaml").read_text())
    assert re.findall(r"`(\w+)`", sentence.group(1)) == list(quickstart)
    if sentence.group(2) is not None:
        other = yaml.safe_load((ROOT / "configs" / sentence.group(2)).read_text())
        assert set(re.findall(r"`(\w+)`", sentence.group(3))) == set(other) - set(quickstart)
