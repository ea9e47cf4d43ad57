"""Plain specs: dicts read without pydantic give what the FeatureSpec model gives; the rest goes to the model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tradebus.errors import FeatureError
from tradebus.features.bank import FeatureBank
from tradebus.features.spec import FeatureSpec, load_specs
from tradebus.features.spec_base import PlainSpec, plain_specs

ROOT = Path(__file__).resolve().parents[2]

SPECS: list[dict[str, Any]] = [
    {"name": "r", "kind": "log_ret", "input": "close"},
    {"name": "ema_fast", "kind": "ema", "params": {"span": 12}, "input": "close", "on": "bar"},
    {"name": "vol", "kind": "ewm_std", "params": {"span": 30}, "input": ["r"]},
    {"name": "atr", "kind": "atr", "params": {"window": 14}},
]


def test_plain_specs_hold_what_the_model_holds() -> None:
    plain = plain_specs(SPECS)
    assert plain is not None and all(isinstance(s, PlainSpec) for s in plain)
    models = load_specs(SPECS)
    assert [s.as_dict() for s in plain] == [m.model_dump() for m in models]
    assert [s.inputs for s in plain] == [m.inputs for m in models]
    mixed = plain_specs([models[0], SPECS[1]])
    assert mixed is not None and mixed[0] is models[0] and isinstance(mixed[1], PlainSpec)


@pytest.mark.parametrize(
    "data",
    [
        {"features": SPECS},  # the mapping form
        [{"name": "r", "kind": "log_ret", "input": ("close",)}],  # a tuple: the model turns it into a list
        [{"name": "r", "kind": "log_ret", "inputs": "close"}],  # unknown key
        [{"name": "close", "kind": "log_ret"}],  # reserved name
        [{"name": "2x", "kind": "log_ret"}],  # bad name
        [{"name": "r", "kind": "log_ret", "on": "tick"}],  # unknown event
        [{"name": "r", "kind": "log_ret", "params": [("span", 3)]}],  # params not a dict
        [{"name": "r", "kind": 7}],  # kind not a string
        ["r"],  # not a mapping
        iter(SPECS),  # not a list
    ],
)
def test_anything_else_is_left_to_the_model(data: Any) -> None:
    assert plain_specs(data) is None


def test_bank_errors_still_name_the_spec() -> None:
    with pytest.raises(FeatureError, match=r"feature 'close': invalid spec \(name: .*event type or event field name"):
        FeatureBank([{"name": "close", "kind": "ema"}])
    with pytest.raises(FeatureError, match=r"feature 'r': invalid spec \(inputs: unknown key \(not allowed here\), "
                                           r"did you mean 'input'\?\)$"):
        FeatureBank([{"name": "r", "kind": "log_ret", "inputs": "close"}])


@pytest.mark.parametrize(("key", "hint"), [("parms", ", did you mean 'params'?"), ("event", "")])
def test_a_misspelt_spec_key_reads_as_every_config_key_does(key: str, hint: str) -> None:
    """It read 'parms: Extra inputs are not permitted', pydantic's words, where a run config's key reads as below."""
    with pytest.raises(FeatureError) as info:
        load_specs([{"name": "r", "kind": "ema", "params": {"span": 3}, key: {"span": 3}}])
    assert str(info.value) == f"feature 'r': invalid spec ({key}: unknown key (not allowed here){hint})"


def test_bank_from_plain_dicts_equals_bank_from_models() -> None:
    a, b = FeatureBank(SPECS), FeatureBank(load_specs(SPECS))
    assert a.specs == b.specs and all(isinstance(s, FeatureSpec) for s in a.specs)
    assert a.columns == b.columns and a.snapshot().fingerprint == b.snapshot().fingerprint
    for i, close in enumerate([100.0, 101.5, 99.25, 102.0]):
        ts = 1_700_000_000_000_000_000 + i * 60_000_000_000
        a.update_bar(ts, close, close + 1.0, close - 1.0, close, 10.0)
        b.update_bar(ts, close, close + 1.0, close - 1.0, close, 10.0)
    np.testing.assert_array_equal(a.values, b.values)


CHILD = """
import json, sys
from tradebus.features.bank import FeatureBank
bank = FeatureBank(SPECS)
bank.update_bar(1_700_000_000_000_000_000, 1.0, 1.0, 1.0, 1.0, 1.0)
print(json.dumps({"pydantic": "pydantic" in sys.modules}))
"""


def test_building_a_bank_from_dicts_does_not_import_pydantic() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    code = CHILD.replace("SPECS", repr(SPECS))
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"pydantic": False}
