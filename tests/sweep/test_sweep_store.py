"""The ``trials/`` store: a trial's file is complete or absent, also when its write fails."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sweep_helpers import REPO

from tradebus.sweep.space import load_space
from tradebus.sweep.store import TrialStore

#: Stores trial 0, then trial 1 under a file-size limit of half trial 0's file (a real EFBIG, as a full disk
#: fails); prints the error of trial 1's write.
_FAILED_TRIAL_WRITE = r"""
import resource, signal, sys
from pathlib import Path
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
from tradebus.errors import ConfigError
from tradebus.sweep.space import load_space
from tradebus.sweep.store import TrialStore
store = TrialStore(sys.argv[1], load_space(sys.argv[2]).params)
store.write({"trial": 0, "status": "ok", "error": None, "tier": "event", "sharpe": 1.5}, {"strategy.params.fast": 5})
size = store.path(0).stat().st_size
resource.setrlimit(resource.RLIMIT_FSIZE, (size // 2, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
try:
    store.write({"trial": 1, "status": "ok", "error": None, "tier": "event", "sharpe": 0.5},
                {"strategy.params.fast": 7})
except ConfigError as exc:
    print(exc)
"""


def test_a_sweep_resumed_after_a_failed_trial_write_runs_that_trial_again(tmp_path: Path) -> None:
    """A full disk writing trial 1's file (EFBIG here) ended the sweep with a raw 'OSError: [Errno 27] Error writing
    bytes to file' traceback; it is now a ConfigError naming the file, no file of trial 1 is left, and the resumed
    sweep skips trial 0 only, storing trial 1 when it runs again."""
    space = tmp_path / "space.yaml"
    space.write_text("params:\n  strategy.params.fast: [5, 7]\n", encoding="utf-8")
    trials = tmp_path / "trials"
    done = subprocess.run([sys.executable, "-c", _FAILED_TRIAL_WRITE, str(trials), str(space)], capture_output=True,
                          text=True, timeout=300, check=False, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"output {trials / 'trial-000001.parquet'}: cannot write it (EFBIG: Error writing " \
                                  "bytes to file. Detail: [errno 27] File too large)", done.stdout
    assert sorted(os.listdir(trials)) == ["trial-000000.parquet"]
    store = TrialStore(trials, load_space(space).params)
    assert store.done() == {0}  # what the resume skips
    row = {"trial": 1, "status": "ok", "error": None, "tier": "event", "sharpe": 0.5}
    store.write(row, {"strategy.params.fast": 7})
    rows = store.table().select(["trial", "param.strategy.params.fast", "sharpe"]).to_pylist()
    assert rows == [{"trial": 0, "param.strategy.params.fast": 5, "sharpe": 1.5},
                    {"trial": 1, "param.strategy.params.fast": 7, "sharpe": 0.5}]
    assert sorted(os.listdir(trials)) == ["trial-000000.parquet", "trial-000001.parquet"]
