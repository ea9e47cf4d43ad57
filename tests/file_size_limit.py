"""The tradebus CLI run in a child process under a file size limit (``RLIMIT_FSIZE``): a real EFBIG, as a full disk."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

#: ``python -c`` text: ``argv[1]`` the limit in bytes, the rest the CLI's arguments (SIGXFSZ ignored, so a write
#: past the limit fails with EFBIG instead of killing the process).
UNDER_FILE_SIZE_LIMIT = r"""
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[1]), resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
from tradebus.cli import main
main(sys.argv[2:])
"""


def cli_under_file_size_limit(
    limit: int, args: Sequence[str], cwd: Path | None = None, env: Mapping[str, str] | None = None
) -> tuple[int, str]:
    """Run ``tradebus ARGS`` with files limited to ``limit`` bytes; its exit code and its output, whitespace folded."""
    done = subprocess.run(
        [sys.executable, "-c", UNDER_FILE_SIZE_LIMIT, str(limit), *args], capture_output=True, text=True, timeout=300,
        check=False, cwd=cwd, env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
    )
    return done.returncode, " ".join((done.stdout + done.stderr).split())
