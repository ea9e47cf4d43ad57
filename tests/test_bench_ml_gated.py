"""bench/ml_gated.py trains the walk-forward segments only as often as a figure needs them.

Training is the expensive step (about 40 s of CPU for the shipped config); the figures other than
``training`` measure runs of the trained models, so this test counts trainings with a stand-in for
``train_segments`` and for the figure measured (the bench's own steps, nothing of tradebus replaced).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _bench() -> Any:
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        spec = importlib.util.spec_from_file_location("bench_ml_gated", ROOT / "bench" / "ml_gated.py")
        module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        spec.loader.exec_module(module)  # type: ignore[union-attr]
    finally:
        sys.path.remove(str(ROOT / "bench"))
    return module


@pytest.mark.parametrize(("only", "trainings"), [(["row_predict"], 1), (["training"], 6),
                                                 (["training", "row_predict"], 6)])
def test_the_segments_are_trained_once_unless_training_is_measured(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], only: list[str], trainings: int) -> None:
    """--only row_predict --runs 3 trained the segments 3 times, for one set of models."""
    bench = _bench()
    calls: list[dict[str, Any]] = []
    models = []

    def train(*args: Any, **kwargs: Any) -> object:
        calls.append(kwargs)
        models.append(object())
        return models[-1]

    used = []
    monkeypatch.setattr(bench, "train_segments", train)
    monkeypatch.setattr(bench, "row_predict", lambda trained, bars, cfg: used.append(trained) or (1.0, 2.0))
    assert bench.main([*(f"--only={name}" for name in only), "--runs", "3", "--json"]) == 0
    assert '"runs": 3' in capsys.readouterr().out
    assert len(calls) == trainings
    if "row_predict" in only:
        assert len(used) == 3 and all(model is models[0] for model in used)
