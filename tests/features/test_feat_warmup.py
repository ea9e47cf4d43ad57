"""warm_up and the keyed Numba cache directory, checked in fresh interpreters."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

COUNT_MISSES = """
import json, sys, numba
from numba.core.registry import CPUDispatcher
import tradebus.features.kernels as K
from tradebus.features import bank, drivers, kernels, warmup
from tradebus.features.kernels import core, ta, stats, regime, flow, book
{body}
misses = {{}}
generated = [m for n, m in sys.modules.items() if n.startswith(("_tradebus_bank_", "_tradebus_kind_"))]
for mod in (K, bank, drivers, core, ta, stats, regime, flow, book, *generated):
    for name, obj in vars(mod).items():
        if isinstance(obj, CPUDispatcher) and obj.stats.cache_misses:
            misses[mod.__name__ + "." + name] = sum(obj.stats.cache_misses.values())
print(json.dumps(misses))
"""

FIRST_UPDATE = """
from tradebus.features.bank import FeatureBank
b = FeatureBank([{"name": "e", "kind": "ema", "params": {"span": 2}, "input": "close"},
                 {"name": "r", "kind": "rsi", "params": {"window": 2}, "input": "close"}])
for i, c in enumerate((1.0, 2.0, 3.0)):
    b.update_bar(i, c, c, c, c, 1.0)
assert b.value("e") == 2.5, b.value("e")
assert b.ready("r")
"""


def python(code: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env or dict(os.environ), capture_output=True, text=True,
        timeout=600, check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_second_start_after_warm_up_has_no_cache_miss_and_updates() -> None:
    # The first start compiles the kernels and this bank's structure; the second compiles nothing.
    python("from tradebus.features.warmup import warm_up; warm_up()\n" + FIRST_UPDATE)
    body = "warmup.warm_up()\n" + FIRST_UPDATE
    misses = json.loads(python(COUNT_MISSES.format(body=body)).strip().splitlines()[-1])
    assert misses == {}


def test_generated_bank_driver_and_kind_runner_load_from_the_cache_in_a_new_process() -> None:
    body = """
import numpy as np
from tradebus.features.stepper import Stepper
b = bank.FeatureBank([{"name": "z", "kind": "rolling_zscore", "params": {"window": 3}, "input": "close"},
                      {"name": "m", "kind": "macd", "input": "z"}])
b.update_bar(0, 1.0, 1.0, 1.0, 1.0, 1.0)
b.run_bars(np.arange(3), np.ones(3), np.ones(3), np.ones(3), np.arange(3.0), np.ones(3))
Stepper("wma", window=3).run(np.arange(5.0))
runners = {"runner": K.runner(core.KINDS[-1].kind_id)}
for name, obj in runners.items():
    if obj.stats.cache_misses:
        print("MISS", name)
"""
    python(COUNT_MISSES.format(body=body))  # compiles and fills the cache
    out = python(COUNT_MISSES.format(body=body)).strip().splitlines()
    assert "MISS runner" not in out
    assert json.loads(out[-1]) == {}


def test_cache_dir_is_keyed_by_the_sources_under_the_user_dir(tmp_path: Path) -> None:
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    code = "import os; import tradebus.features as f; print(f.cache_dir()); print(os.environ['NUMBA_CACHE_DIR'])"
    first, env_value = python(code, env).split()
    assert Path(first).parent == tmp_path and Path(first).name.startswith("features-")
    assert env_value == first
    # a child process inheriting the keyed directory does not nest it again
    nested = python(code, dict(os.environ, NUMBA_CACHE_DIR=first)).split()[0]
    assert nested == first


def test_cache_key_changes_when_any_feature_source_changes(tmp_path: Path) -> None:
    import shutil

    import tradebus.features as f

    assert f.cache_dir().name == "features-" + f._sources_hash()  # noqa: SLF001
    copy = tmp_path / "features"
    shutil.copytree(Path(f.__file__).parent, copy, ignore=shutil.ignore_patterns("__pycache__"))
    before = f._sources_hash(copy)  # noqa: SLF001
    assert before == f._sources_hash()  # noqa: SLF001
    kernel = copy / "kernels" / "ta.py"
    kernel.write_text(kernel.read_text() + "\n# edited\n")
    assert f._sources_hash(copy) != before  # noqa: SLF001
