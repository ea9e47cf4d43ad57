"""Damage to a catalog file that keeps its size: what only sha256 and the readers' own checks can see."""

from __future__ import annotations

import json
from pathlib import Path


def keep_sizes(dataset_dir: Path) -> None:
    """Record in ``dataset_dir``'s manifest the size each of its files has now.

    A test that damages a file to reach a reader's check (rows out of order, times outside the row
    group's statistics, a truncated row group) calls it after the damage, so that the catalog's size
    check on every read (:meth:`tradebus.data.catalog.Catalog.files`) lets the file through to that check.
    """
    path = dataset_dir / "manifest.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    for entry in manifest["files"]:
        entry["size"] = (dataset_dir / entry["path"]).stat().st_size
    path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
