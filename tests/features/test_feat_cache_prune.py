"""Cache directories of other feature-source versions are pruned once stale."""

from __future__ import annotations

import os
from pathlib import Path

from tradebus import features


def test_prune_removes_only_stale_directories_of_other_versions(tmp_path: Path) -> None:
    current = tmp_path / "features-current"
    stale = tmp_path / "features-old"
    recent = tmp_path / "features-recent"
    unrelated = tmp_path / "other-tool"
    for path in (current, stale, recent, unrelated):
        path.mkdir()
        (path / "index.nbi").write_bytes(b"x")
    now = 1_000_000.0
    os.utime(stale, (now - 7200, now - 7200))
    os.utime(current, (now - 7200, now - 7200))
    os.utime(unrelated, (now - 7200, now - 7200))
    os.utime(recent, (now - 60, now - 60))

    removed = features._prune_stale(current, now=now)

    assert removed == [stale]
    assert not stale.exists()
    assert current.exists() and recent.exists() and unrelated.exists()
