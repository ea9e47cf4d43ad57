"""The ``trials/`` store: a trial's file is complete or absent, also when its write fails."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from sweep_helpers import REPO, catalog_config, write_yaml

from tradebus.locks import take_lock
from tradebus.sweep.space import load_space
from tradebus.sweep.store import TrialStore

#: Stores trial 0, then trial 1 under a file-size limit of half trial 0's file (a real EFBIG, as a full disk
#: fails); prints the error of trial 1's write.
_FAILED_TRIAL_WRITE = r"""
import resource, signal, sys
from pathlib import Path
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
from tradebus.errors import ConfigError
from tradebus.locks import take_lock
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


#: Runs ``tradebus`` with the given arguments (argv[3:]) under a file-size limit (argv[1], bytes): a write of an output
#: past it fails EFBIG. The limit takes effect as the function of tradebus.sweep.runner named by argv[2] is called, or
#: (argv[2] empty) once the sweep's Ray runtime has started (its own logs are not the sweep's outputs).
_SWEEP_UNDER_FILE_SIZE_LIMIT = r"""
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
from tradebus.cli import main
from tradebus.sweep import runner
from tradebus.sweep.executor import RayExecutor
def limit():
    resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[1]), resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
if sys.argv[2]:
    called = getattr(runner, sys.argv[2])
    def call(*args, **kwargs):
        limit()
        return called(*args, **kwargs)
    setattr(runner, sys.argv[2], call)
else:
    started = RayExecutor.__enter__
    def enter(self):
        executor = started(self)
        limit()
        return executor
    RayExecutor.__enter__ = enter
main(sys.argv[3:])
"""


def _sweep(tmp_path: Path, limit: int | None = None, when: str = "", *extra: str) -> subprocess.CompletedProcess[str]:
    """``tradebus sweep`` of the grid into ``tmp_path/out`` (under a file-size limit of ``limit`` bytes from ``when``)
    with the options ``extra``."""
    args = ["sweep", str(tmp_path / "run.yaml"), "--space", str(tmp_path / "space.yaml"), "--out",
            str(tmp_path / "out"), "--workers", "1", *extra]
    command = [sys.executable, "-c", _SWEEP_UNDER_FILE_SIZE_LIMIT, str(limit or 2**40), when, *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, check=False, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(REPO)})


def _files(out: Path) -> dict[str, bytes]:
    """Every file under ``out`` (its path relative to ``out``: its bytes)."""
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def _resumed_under_limit(tmp_path: Path, name: str, limit: int, when: str = "", *extra: str) -> None:
    """The finished sweep resumed under a file-size limit of ``limit`` (from ``when``, see :func:`_sweep`): writing
    ``name`` fails, exit 2, naming it; every file of the sweep is as before and nothing is beside them."""
    out = tmp_path / "out"
    before = _files(out)
    done = _sweep(tmp_path, limit, when, *extra)
    text = " ".join((done.stdout + done.stderr).split())
    assert done.returncode == 2, text
    assert "Traceback" not in text, text
    assert f"output {out / name}: cannot write it (EFBIG: " in text, text
    assert _files(out) == before


def test_a_sweep_whose_results_csv_or_best_json_cannot_be_written_leaves_the_previous_one(tmp_path: Path) -> None:
    """A full disk writing results.csv (EFBIG here, at half its size) left a truncated results.csv and ended the sweep
    with a raw 'OSError: [Errno 27] File too large' traceback; it is now exit 2 naming the file, the previous
    results.csv left whole and nothing beside it. The same for best.json (a limit between the two files' sizes)."""
    write_yaml(tmp_path / "run.yaml", catalog_config())
    # one trial: results.csv (its header and row) is smaller than best.json (the row's metrics, indented)
    write_yaml(tmp_path / "space.yaml", {"params": {"strategy.params.fast": [5]}})
    done = _sweep(tmp_path)
    assert done.returncode == 0, done.stderr
    out = tmp_path / "out"
    sizes = (out / "results.csv").stat().st_size, (out / "best.json").stat().st_size
    _resumed_under_limit(tmp_path, "results.csv", sizes[0] // 2)
    assert sizes[0] < sizes[1] - 1, sizes
    _resumed_under_limit(tmp_path, "best.json", sizes[0] + 1)


def test_a_walk_forward_sweep_whose_fold_files_or_stress_json_cannot_be_written_leaves_the_previous_ones(
    tmp_path: Path,
) -> None:
    """A full disk writing a walk-forward sweep's folds.csv, metrics.json or equity.csv, or its stress.json (EFBIG
    here) left the file truncated and ended the sweep with a raw 'OSError: [Errno 27] File too large' traceback; it is
    now exit 2 naming the file, every previous file left whole and nothing beside them."""
    write_yaml(tmp_path / "run.yaml", catalog_config())
    write_yaml(tmp_path / "space.yaml", {"params": {"strategy.params.fast": [5]},
                                         "walk_forward": {"train": "120d", "test": "30d"},
                                         "stress": [{"name": "baseline"}]})
    done = _sweep(tmp_path)
    assert done.returncode == 0, done.stderr
    wf = tmp_path / "out" / "walk_forward"
    # written in this order, each larger than the one before: a limit between two sizes fails the larger
    sizes = [(wf / name).stat().st_size for name in ("metrics.json", "folds.csv", "equity.csv")]
    assert sizes == sorted(sizes), sizes
    _resumed_under_limit(tmp_path, "walk_forward/metrics.json", sizes[0] // 2, "stitch")
    _resumed_under_limit(tmp_path, "walk_forward/folds.csv", sizes[0], "stitch")
    _resumed_under_limit(tmp_path, "walk_forward/equity.csv", sizes[1], "stitch")
    _resumed_under_limit(tmp_path, "stress.json", (tmp_path / "out" / "stress.json").stat().st_size // 2, "_stress")


def test_a_sweep_whose_sweep_json_cannot_be_written_leaves_no_truncated_one(tmp_path: Path) -> None:
    """A full disk writing sweep.json (EFBIG here, under a 100-byte limit) left a truncated sweep.json, which the next
    run could not read, and ended with a raw 'OSError: [Errno 27] File too large' traceback; it is now exit 2 naming
    the file with nothing left in the directory. The same for the sweep.json a resume with another --tier rewrites
    (the previous one left whole)."""
    write_yaml(tmp_path / "run.yaml", catalog_config())
    write_yaml(tmp_path / "space.yaml", {"params": {"strategy.params.fast": [5]}})
    out = tmp_path / "out"
    done = _sweep(tmp_path, 100, "_prepare")
    text = " ".join((done.stdout + done.stderr).split())
    assert done.returncode == 2, text
    assert "Traceback" not in text, text
    assert f"output {out / 'sweep.json'}: cannot write it (EFBIG: " in text, text
    assert _files(out) == {}
    done = _sweep(tmp_path)
    assert done.returncode == 0, done.stderr
    _resumed_under_limit(tmp_path, "sweep.json", (out / "sweep.json").stat().st_size // 2, "_prepare", "--tier", "event")


def test_a_sweep_resumed_after_one_killed_mid_write_removes_its_stale_temporaries(tmp_path: Path) -> None:
    """A sweep killed (``kill -9``) while writing a file leaves its temporary, ``.<name>.tmp-<pid>``: one of
    sweep.json made the next run refuse the directory as 'not empty (.sweep.json.tmp-...) and not a sweep directory';
    one of results.csv or of a trial's file was left beside the sweep's files forever. A run that holds the directory
    now removes them (only the temporaries of files the sweep writes); while another process holds it, nothing."""
    write_yaml(tmp_path / "run.yaml", catalog_config())
    write_yaml(tmp_path / "space.yaml", {"params": {"strategy.params.fast": [5]}})
    out = tmp_path / "out"
    out.mkdir()
    (out / ".sweep.json.tmp-99999").write_text('{"config": ', encoding="utf-8")
    done = _sweep(tmp_path)
    assert done.returncode == 0, done.stderr
    assert sorted(os.listdir(out)) == ["best.json", "results.csv", "space.yaml", "sweep.json", "trials"]
    stale = [".results.csv.tmp-99999", ".best.json.tmp-12", "trials/.trial-000000.parquet.tmp-99999"]
    kept = [".results.csv.tmp-mine", ".notes.txt.tmp-99999", "trials/.other.parquet.tmp-99999"]  # not the sweep's
    for name in stale + kept:
        (out / name).write_bytes(b"partial")
    fd = os.open(out, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert take_lock(fd) is None
        done = _sweep(tmp_path)
        assert done.returncode == 2 and "in use by another running sweep" in done.stderr, done.stderr
        assert all((out / name).exists() for name in stale + kept)
    finally:
        os.close(fd)
    done = _sweep(tmp_path)
    assert done.returncode == 0, done.stderr
    assert [name for name in stale + kept if (out / name).exists()] == kept


def test_a_sweep_resumed_through_a_symlinked_out_removes_its_stale_temporaries(tmp_path: Path) -> None:
    """``--out sweeps/latest`` (a symlink to the sweep directory) after a sweep killed mid-write: the resumed sweep
    kept ``.results.csv.tmp-<pid>`` and a trial's temporary there forever (only a real --out was swept)."""
    write_yaml(tmp_path / "run.yaml", catalog_config())
    write_yaml(tmp_path / "space.yaml", {"params": {"strategy.params.fast": [5]}})
    real = tmp_path / "sweep-2026-12-06"
    real.mkdir()
    (tmp_path / "out").symlink_to(real, target_is_directory=True)
    done = _sweep(tmp_path)
    assert done.returncode == 0, done.stderr
    stale = [".results.csv.tmp-99999", "trials/.trial-000000.parquet.tmp-99999"]
    kept = [".notes.txt.tmp-99999", "trials/.other.parquet.tmp-99999"]  # not the sweep's
    for name in stale + kept:
        (real / name).write_bytes(b"partial")
    done = _sweep(tmp_path)
    assert done.returncode == 0, done.stderr
    assert [name for name in stale + kept if (real / name).exists()] == kept
    assert (tmp_path / "out").is_symlink()


#: Runs ``tradebus`` with the given arguments (argv[1:]) on a file system that cannot lock a directory: ``flock`` on
#: one fails ENOLCK, as on some network file systems (files, such as Ray's, lock as usual).
_SWEEP_WITHOUT_DIRECTORY_LOCKS = r"""
import errno, fcntl, os, stat, sys
flock = fcntl.flock
def no_directory_locks(fd, operation):
    if stat.S_ISDIR(os.fstat(fd if isinstance(fd, int) else fd.fileno()).st_mode):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))
    return flock(fd, operation)
fcntl.flock = no_directory_locks
from tradebus.cli import main
main(sys.argv[1:])
"""


def test_a_sweep_that_cannot_lock_its_directory_leaves_the_temporaries_there_and_names_them(tmp_path: Path) -> None:
    """On a file system without ``flock`` a resumed sweep removed ``.results.csv.tmp-<pid>`` and the trials'
    temporaries as a killed sweep's, though another sweep (on this host or another) may be writing them."""
    write_yaml(tmp_path / "run.yaml", catalog_config())
    write_yaml(tmp_path / "space.yaml", {"params": {"strategy.params.fast": [5]}})
    out = tmp_path / "out"
    assert _sweep(tmp_path).returncode == 0
    writing = [".results.csv.tmp-99999", "trials/.trial-000000.parquet.tmp-99999"]
    for name in writing:
        (out / name).write_bytes(b"partial")
    args = ["sweep", str(tmp_path / "run.yaml"), "--space", str(tmp_path / "space.yaml"), "--out", str(out),
            "--workers", "1"]
    done = subprocess.run([sys.executable, "-c", _SWEEP_WITHOUT_DIRECTORY_LOCKS, *args], capture_output=True,
                          text=True, timeout=300, check=False, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr
    assert [name for name in writing if (out / name).read_bytes() == b"partial"] == writing
    log = " ".join(done.stderr.split())
    assert f"sweep directory {out}: cannot lock it (ENOLCK" in log, log
    assert f"{out}: left .results.csv.tmp-99999: the directory cannot be locked" in log, log
    assert f"{out / 'trials'}: left .trial-000000.parquet.tmp-99999" in log, log


def test_results_and_best_json_do_not_depend_on_the_order_the_workers_finished_the_trials(tmp_path: Path) -> None:
    """Ray hands trials back in completion order: stored in the order 3, 1, 2, 0 (trials 1 and 2 tied on the
    objective), results.csv and best.json are byte for byte those of the order 0, 1, 2, 3, listing the trials by
    number and naming trial 1, the lower of the tie, as best."""
    from tradebus.sweep.runner import _write_outputs

    space_path = tmp_path / "space.yaml"
    space_path.write_text("objectives: {sharpe: maximize, max_drawdown: minimize}\n"
                          "params:\n  strategy.params.fast: [3, 5, 8, 13]\n", encoding="utf-8")
    space = load_space(space_path)
    rows = {0: (0.5, 0.2), 1: (2.0, 0.3), 2: (2.0, 0.1), 3: (-1.0, 0.4)}
    outputs = []
    for order in ((3, 1, 2, 0), (0, 1, 2, 3)):
        out = tmp_path / "-".join(map(str, order))
        store = TrialStore(out / "trials", space.params)
        for trial in order:
            sharpe, drawdown = rows[trial]
            store.write({"trial": trial, "status": "ok", "error": None, "tier": "event", "sharpe": sharpe,
                         "max_drawdown": drawdown}, {"strategy.params.fast": [3, 5, 8, 13][trial]})
        _write_outputs(space, store, out)
        outputs.append({name: (out / name).read_bytes() for name in ("results.csv", "best.json")})
    assert outputs[0] == outputs[1]
    lines = outputs[0]["results.csv"].decode().splitlines()
    assert [line.split(",")[0] for line in lines[1:]] == ["0", "1", "2", "3"]
    best = json.loads(outputs[0]["best.json"])
    assert best["trial"] == 1 and best["pareto_trials"] == [2]
