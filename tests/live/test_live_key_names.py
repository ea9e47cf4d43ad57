"""``live.api_key_env`` and its siblings hold variable NAMES: a key pasted there is refused without being shown.

The keys are shaped as the venues issue them (OKX: a lower-case UUID; Binance: 64 mixed-case
alphanumerics; Bybit: 18), none a real one. ``live-kill`` reads the config and the keys before
any request, so its output and the exception are all there is to search for the value.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from tradebus.cli import app
from tradebus.errors import ConfigError
from tradebus.node.live import ApiKeys, load_live_config

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = {"okx": "live_okx_swap_demo.yaml", "binance": "live_binance_testnet.yaml", "bybit": "live_bybit_linear_testnet.yaml"}
PASTED = {
    "okx": "5b9e1c2a-7f3d-4e8a-9c1b-2d4f6a8e0b3c",
    "binance": "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A",
    "bybit": "XbQ7rT2kLm9Np4Ws1Z",
}


def _config(tmp: Path, venue: str, **live: str) -> Path:
    data = yaml.safe_load((ROOT / "configs" / CONFIGS[venue]).read_text(encoding="utf-8"))
    data["journal"] = str(tmp / "journal.sqlite")
    data["record"] = str(tmp / "frames.jsonl.gz")
    data["live"] = {**data.get("live", {}), **live}
    path = tmp / "live.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


@pytest.mark.parametrize("field", ["api_key_env", "api_secret_env", "api_passphrase_env"])
@pytest.mark.parametrize("venue", list(PASTED))
def test_a_key_pasted_as_a_variable_name_is_refused_and_never_shown(tmp_path: Path, venue: str, field: str) -> None:
    secret = PASTED[venue]
    path = _config(tmp_path, venue, **{field: secret})
    with pytest.raises(ConfigError) as info:
        load_live_config(path)
    assert f"live.{field}: not an environment variable name" in str(info.value)
    assert secret not in str(info.value)

    result = CliRunner().invoke(app, ["live-kill", str(path)], catch_exceptions=False)
    assert result.exit_code == 2
    assert f"live.{field}: not an environment variable name" in result.output
    assert secret not in result.output
    assert not (tmp_path / "journal.sqlite").exists()


def test_an_unset_variable_is_named_unless_its_name_is_long_enough_to_be_a_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("TRADEBUS_TEST_UNSET_KEY", "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789ABCDEF"):  # 23 and 42 characters
        monkeypatch.delenv(name, raising=False)
    config = load_live_config(_config(tmp_path, "binance", api_key_env="TRADEBUS_TEST_UNSET_KEY"))
    with pytest.raises(ConfigError, match="set the environment variable TRADEBUS_TEST_UNSET_KEY to the binance API key"):
        ApiKeys.from_env(config.live, {})

    long = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789ABCDEF"
    path = _config(tmp_path, "binance", api_key_env=long)
    with pytest.raises(ConfigError, match=r"live.api_key_env") as info:
        ApiKeys.from_env(load_live_config(path).live, {})
    assert long not in str(info.value)
    result = CliRunner().invoke(app, ["live-kill", str(path)], catch_exceptions=False)
    assert result.exit_code == 2 and "live.api_key_env" in result.output and long not in result.output


@pytest.mark.parametrize("value", ["", "  "])
@pytest.mark.parametrize("field", ["api_key_env", "api_secret_env", "api_passphrase_env"])
def test_an_empty_variable_name_is_refused_at_load_as_empty(tmp_path: Path, field: str, value: str) -> None:
    # it was refused as "not shown in case it is a key", and from_env, given no name, asked for "the variable  "
    path = _config(tmp_path, "okx", **{field: value})
    with pytest.raises(ConfigError) as info:
        load_live_config(path)
    assert str(path) in str(info.value)
    assert f"live.{field}: empty: give the name of the environment variable holding it" in str(info.value)

    if field == "api_passphrase_env":
        return  # without a passphrase variable, from_env reads no passphrase
    settings = load_live_config(_config(tmp_path, "okx")).live.model_copy(update={field: None})
    with pytest.raises(ConfigError, match=rf"live.{field}: no environment variable named for the okx API"):
        ApiKeys.from_env(settings, {"TRADEBUS_OKX_API_KEY": "k", "TRADEBUS_OKX_API_SECRET": "s"})
