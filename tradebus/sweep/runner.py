"""The sweep driver: grid or TPE optimisation, walk-forward folds and stress variants, resumable.

Outputs in the sweep directory (``--out``)::

    sweep.json          the config (path and fingerprint), the space's fingerprint, method and seed,
                        and the fingerprint of each data input and strategy source (tradebus.sweep.inputs);
                        checked on resume: an edited config, space or strategy, or changed data, is refused;
                        tiers: the tier each run of the sweep asked (--tier or the space's), in order: a
                        resume asking another is warned of (each trial's tier is in results.csv)
    space.yaml          the space file as given
    trials/             one Parquet file per finished trial (tradebus.sweep.store)
    optuna.log          Optuna's journal storage (tpe), study "sweep" (or "fold-NN"); a sweep
                        directory from before the journal keeps its SQLite optuna.db
    results.csv         every trial, sorted by trial number (written at the end), one line each: an error of
                        several lines (an invalid config's problems) on one (the trial's file keeps it as it was)
    best.json           the best trial by the first objective (and the Pareto front's trials); unranked_trials:
                        the trials that ran but have no value of every objective (warned of)
    stress.json         [{variant, total_return, sharpe, max_drawdown, fills[, note]}]: the best parameters
                        (with walk_forward, of the latest fold that has a best trial: the last fold
                        unless it has none, then warned of) over the config's whole span, per
                        stress variant; sharpe is null for a run shorter than 30 days; a default variant
                        the config cannot take (costs x5 on a taker fee of 0.025) has null metrics and
                        the note "left out: <why>"
    walk_forward/       fold-NN/trials/, folds.csv, equity.csv, metrics.json (tradebus.sweep.walkforward);
                        folds.csv's unranked_trials: a fold's trials without a value of every objective
                        (a JSON list, warned of)

Nothing of a trial is kept in the driver after its file is written. Running the same
command again resumes: trials with a file are skipped; Optuna trials asked but not
finished are run again with the parameters they were given (and a round interrupted
while being asked is completed first, as is a trial interrupted inside its own ask: its
missing parameters are drawn again from its seeded sampler), so a resumed sweep produces
the same trials and results as an uninterrupted one. A sweep directory made from another config or space, or
on data or strategy code that has changed since, is refused, as is a non-empty directory that is not a sweep
directory (one without ``sweep.json``; with ``force`` it is used unless it holds a file or
directory named as one the sweep writes). While a sweep runs it holds its directory with a
``flock`` (:mod:`tradebus.locks`, released when its process ends, ``kill -9`` included): a
second sweep on the same directory is refused, naming the process that holds it. Every file is written
to a hidden temporary (``.results.csv.tmp-<pid>``) and renamed (:func:`~tradebus.reports.writers.write_file`);
the temporaries of the sweep's own files that a sweep killed mid-write left are removed by the next run
that holds the directory.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from loguru import logger
from pydantic import BaseModel

from tradebus.config import RunConfig, load_config
from tradebus.errors import ConfigError, TradebusError
from tradebus.reports.metrics import MIN_ANNUALISED_DAYS, format_ns
from tradebus.reports.writers import (
    hold_directory,
    remove_temporaries,
    temporary_of,
    write_csv_header,
    write_csv_rows,
    write_file,
)
from tradebus.sweep.executor import RayExecutor
from tradebus.sweep.fields import float_field
from tradebus.sweep.inputs import changes, code_inputs, data_inputs
from tradebus.sweep.space import MAX_TRIALS, SweepSpace, load_space
from tradebus.sweep.store import TrialStore
from tradebus.sweep.stress import default_variants
from tradebus.sweep.trial import TIERS, TIMING_COLUMNS, TrialSpec, override_text
from tradebus.sweep.walkforward import data_span, fold_count, folds, stitch

__all__ = ["OWN_FILES", "STRESS_KEYS", "SweepResult", "best_trial", "default_out", "run_sweep"]

#: What a sweep writes in its directory.
OWN_FILES = frozenset(
    {"sweep.json", "space.yaml", "trials", "optuna.log", "optuna.log.lock", "optuna.db", "results.csv", "best.json",
     "stress.json", "walk_forward"}
)
#: The files :func:`~tradebus.reports.writers.write_file` writes in the sweep directory and in its ``walk_forward/``.
_WRITTEN = frozenset({"sweep.json", "space.yaml", "results.csv", "best.json", "stress.json"})
_WRITTEN_WF = frozenset({"folds.csv", "metrics.json", "equity.csv"})
#: A trial's file in a ``trials/`` folder (:meth:`~tradebus.sweep.store.TrialStore.path`).
_TRIAL_FILE = re.compile(r"trial-[0-9]{6,}\.parquet")
#: Columns of ``results.csv`` and ``folds.csv`` holding an error's text (written on one line: :func:`_cell`).
_ERROR_COLUMNS = frozenset({"error", "test_error"})
#: Keys of each ``stress.json`` entry (the tearsheet's "Stress" section reads exactly these).
STRESS_KEYS = ("total_return", "sharpe", "max_drawdown", "fills")

OnTrial = Callable[[dict[str, Any]], None]


@dataclass
class SweepResult:
    """What a sweep did: its directory, trial counts, the best trial and the extra reports."""

    out: Path
    total: int
    ran: int
    skipped: int
    best: dict[str, Any] | None
    stress: list[dict[str, Any]] | None = None
    walk_forward: dict[str, Any] | None = None
    folds: list[dict[str, Any]] = field(default_factory=list)
    #: ``tier -> trials`` run in it by this invocation (``accelerated``, ``event``; see ``tier`` in the space).
    tiers: dict[str, int] = field(default_factory=dict)
    #: Trials run by this invocation whose backtest raised (``status`` ``failed``; ``error`` says why).
    failed: int = 0
    #: Trials run by this invocation that ran (``ok``), and of them those with most of their orders denied (by the
    #: risk gate or the account: ``denied`` above half of ``orders``), with these trials' denied and orders.
    scored: int = 0
    mostly_denied: int = 0
    denied_orders: tuple[int, int] = (0, 0)


def default_out(config_path: str | Path) -> Path:
    """The sweep directory of a config when no ``--out`` is given: ``runs/sweep-<config stem>``."""
    return Path("runs") / f"sweep-{Path(config_path).stem}"


def _config_fingerprint(config: RunConfig) -> str:
    """A hash of the validated config (every setting a trial's result depends on, bar the data files)."""
    text = json.dumps(config.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _prepare(
    out: Path, config_path: Path, config: RunConfig, space_path: Path, space: SweepSpace, force: bool
) -> int | None:
    """Make or check the sweep directory ``out`` and hold it; return the descriptor to close when the sweep ends.

    ``None`` when the file system cannot lock (warned of).
    """
    meta: dict[str, Any] = {
        "config": str(config_path), "config_fingerprint": _config_fingerprint(config),
        "space_fingerprint": space.fingerprint(), "method": space.method, "seed": space.seed,
    }
    data = data_inputs(config, _read_window(config, space))
    code = code_inputs(config)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{out}: cannot create the sweep directory ({exc.strerror})") from None
    lock = _hold(out)
    try:
        _claim(out, meta, data, code, space_path, force, space.tier, held=lock is not None)
    except BaseException:
        if lock is not None:
            os.close(lock)
        raise
    return lock


def _hold(out: Path) -> int | None:
    """Lock the sweep directory (:func:`~tradebus.reports.writers.hold_directory`), or refuse one another running
    sweep holds.

    Two drivers on one directory would ask and tell the same Optuna study and run the same trials.
    """
    return hold_directory(out, "Wait for it to finish or stop it, or use another --out", kind="sweep", runs="sweep")


def _claim(
    out: Path, meta: dict[str, Any], data: dict[str, Any], code: dict[str, Any], space_path: Path, force: bool,
    tier: str, *, held: bool,
) -> None:
    """Resume the sweep of ``out`` if it is this one's, else make it a sweep directory (see :func:`run_sweep`).

    ``held``: whether ``out`` is held (:func:`_hold`; not on a file system that cannot lock).
    """
    marker = out / "sweep.json"
    if marker.is_file():
        old = json.loads(marker.read_text(encoding="utf-8"))
        keys = [k for k in meta if k in old or k != "config_fingerprint"]  # a sweep.json from before it was kept
        if {k: old.get(k) for k in keys} != {k: meta[k] for k in keys}:
            raise ConfigError(
                f"{out}: holds a sweep of another config or space ({old.get('config')}, config fingerprint "
                f"{old.get('config_fingerprint')}, space fingerprint {old.get('space_fingerprint')}; now "
                f"{meta['config_fingerprint']} and {meta['space_fingerprint']}); use another --out"
            )
        changed = changes(old["data"], data) if "data" in old else []  # a sweep.json from before it was kept
        if changed:
            raise ConfigError(
                f"{out}: the data its trials ran on has changed since: {'; '.join(changed)}; resuming would mix "
                f"results on the old data with new trials on the new; start afresh with another --out "
                f"(or delete {out})"
            )
        changed = changes(old["code"], code) if "code" in old else []  # a sweep.json from before it was kept
        if changed:
            raise ConfigError(
                f"{out}: the strategy code its trials ran has changed since: {'; '.join(changed)}; resuming would "
                f"keep the old code's results as the new code's; start afresh with another --out (or delete {out})"
            )
        _remove_temporaries(out, held)
        if not (out / "space.yaml").exists():  # the first run stopped between writing sweep.json and it
            write_file(out / "space.yaml", space_path.read_bytes())
        _note_tier(marker, old, tier)
        return
    # Without sweep.json nothing here is the sweep's, whatever its name (a results.csv, a trials/ of one's own).
    present = sorted(p.name for p in out.iterdir())
    if present and all(temporary_of(name) == "sweep.json" for name in present):  # a first run killed writing it
        _remove_temporaries(out, held)
        present = sorted(p.name for p in out.iterdir())
    if present and not force:
        raise ConfigError(
            f"{out}: not empty ({', '.join(present[:5])}) and not a sweep directory (no sweep.json); "
            "use another --out or --force"
        )
    clash = [name for name in present if name in OWN_FILES]
    if clash:
        raise ConfigError(
            f"{out}: not a sweep directory (no sweep.json) but holds {', '.join(clash)}, which the sweep "
            "writes; --force only writes beside other files: use another --out"
        )
    write_file(marker, json.dumps({**meta, "data": data, "code": code, "tiers": [tier]}, indent=2) + "\n")
    write_file(out / "space.yaml", space_path.read_bytes())


def _remove_temporaries(out: Path, held: bool) -> None:
    """Remove the temporaries of the sweep's own files that a sweep killed while writing one left in ``out``.

    Only names the sweep writes (``.results.csv.tmp-<pid>``, ``trials/.trial-000042.parquet.tmp-<pid>``, ...);
    with ``out`` held (:func:`_hold`) no other process is writing them; without (``held`` false: a file
    system that cannot lock) none is removed (:func:`~tradebus.reports.writers.remove_temporaries`). A
    symlinked ``out`` is its target's (the directory held and written in); a symlinked folder inside it is left.
    """
    out = out.resolve()
    wf = out / "walk_forward"
    trial_folders = [out / "trials", *(fold / "trials" for fold in sorted(wf.glob("fold-*")))]
    remove_temporaries(out, _WRITTEN.__contains__, "a sweep", held=held)
    remove_temporaries(wf, _WRITTEN_WF.__contains__, "a sweep", held=held)
    for folder in trial_folders:
        remove_temporaries(folder, lambda name: _TRIAL_FILE.fullmatch(name) is not None, "a sweep", held=held)


def _note_tier(marker: Path, old: dict[str, Any], tier: str) -> None:
    """Record in ``sweep.json`` the tier a resumed sweep asks; warn when its earlier runs asked another.

    Both tiers give the same fills and metrics (the tier is not part of the space's fingerprint), so a
    resume in another tier is allowed; the trials it runs record their tier in ``results.csv``.
    """
    asked = old.get("tiers")
    if asked is None:  # a sweep.json from before it was kept: the earlier runs' tiers are unknown
        asked = []
    elif tier not in asked:
        logger.warning(
            "{}: resumed with tier {}, its earlier runs asked {}: the trials run now run in {}, those run before "
            "in theirs (both give the same fills and metrics; results.csv's tier column says which ran each)",
            marker.parent, tier, ", ".join(asked), tier,
        )
    if tier not in asked:
        write_file(marker, json.dumps({**old, "tiers": [*asked, tier]}, indent=2) + "\n")


def _read_window(config: RunConfig, space: SweepSpace) -> tuple[int | None, int | None]:
    """``(first, last)`` ts_init (inclusive) of the data a sweep's runs read: the config's window.

    Unbounded when walk-forward folds have their own ``start``/``end`` (they may reach beyond it).
    """
    wf = space.walk_forward
    if wf is not None and (wf.start is not None or wf.end is not None):
        return None, None
    end = config.data.end_ns
    return config.data.start_ns, None if end is None else end - 1


def _check_paths(config_path: Path, config: RunConfig, space: SweepSpace, space_path: Path) -> None:
    """Fail before any trial when a parameter's path is not a field of the config.

    Also when the path runs through a section the config leaves out (``strategy.params.fast`` of a
    config with ``strategies:``) and setting it alone makes the config invalid.
    """
    for param in space.params:
        setting = override_text(param.path, param.values[0] if param.values is not None else param.low)
        try:
            load_config(config_path, overrides=[setting])
        except ConfigError as exc:
            text = str(exc)
            if "unknown key" in text or "has no entry" in text:
                lines = [line.strip().removeprefix(f"--set {setting!r}: ").removeprefix(f"{param.path}: ")
                         for line in _problem(exc, config_path).splitlines()]
                raise ConfigError(
                    f"{space_path}: params.{param.path}: not a field of {config_path}: "
                    f"{setting}: {'; '.join(line for line in lines if line)}"
                ) from None
            unset = _unset_section(config, param.path)
            if unset is not None:
                hint = (f"; it lists strategies: name one by its index, e.g. strategies.0.{param.path.partition('.')[2]}"
                        if unset == "strategy" and config.strategies else "")
                raise ConfigError(
                    f"{space_path}: params.{param.path}: not a field of {config_path}: it has no {unset}{hint}"
                ) from None


def _problem(exc: ConfigError, config_path: Path) -> str:
    """What ``exc``, raised loading ``config_path`` with overrides, says is wrong, without the path it starts with."""
    text = str(exc).removeprefix(f"{config_path}: ")
    return text.removeprefix("invalid config:").strip()


def _unset_section(config: RunConfig, path: str) -> str | None:
    """The leading part of the dotted ``path`` that ``config`` leaves unset (``None``), if any."""
    node: Any = config
    parts = path.split(".")
    for n, name in enumerate(parts[:-1]):
        if not isinstance(node, BaseModel) or name not in type(node).model_fields:
            return None
        node = getattr(node, name)
        if node is None:
            return ".".join(parts[: n + 1])
    return None


def _check_grid(config_path: Path, space: SweepSpace, space_path: Path) -> None:
    """Fail before any trial when no point of a grid makes a valid config (stops at the first that does)."""
    if space.method != "grid":
        return
    first: str | None = None
    for point in space.grid():
        try:
            load_config(config_path, overrides=[override_text(path, value) for path, value in point.items()])
        except ConfigError as exc:
            if first is None:
                values = ", ".join(f"{path}={value}" for path, value in point.items())
                first = f"{values}: {_problem(exc, config_path)}"
            continue
        return
    raise ConfigError(
        f"{space_path}: params: no point of the grid makes a valid config of {config_path}; the first, {first}"
    )


def _check_tier(config_path: Path, space: SweepSpace, space_path: Path) -> None:
    """Fail before any trial when ``tier: accelerated`` is asked of a config that cannot run in it."""
    if space.tier != "accelerated":
        return
    from tradebus.cli import build_kernel
    from tradebus.engine.accelerated import unsupported

    why = unsupported(build_kernel(load_config(config_path)))
    if why is not None:
        raise ConfigError(f"{space_path}: tier: accelerated: {why}; use tier: event or auto")


def _check_stress(space: SweepSpace, config: RunConfig, space_path: Path) -> None:
    """Fail before any trial when a stress variant shocks data it cannot move (an L2 book) or its
    multipliers make the config invalid (a fee rate past the config's bounds)."""
    for n, variant in enumerate(space.stress or ()):
        try:
            variant.check_data(config)
            variant.apply_config(config)
        except ConfigError as exc:
            raise ConfigError(f"{space_path}: stress.{n}: variant {variant.name!r}: {exc}") from None


def _check_folds(config_path: Path, config: RunConfig, space: SweepSpace, space_path: Path) -> None:
    """Fail before any trial when a walk-forward fold's train or test window holds no row of any source.

    Its trials would run on nothing and be stored as ``ok`` with every figure zero (a train window),
    or its test leave the fold out of the stitched equity (a test window).
    """
    if space.walk_forward is None:
        return
    from tradebus.cli import build_replay, empty_window  # the CLI module imports this one

    count, per_fold = fold_count(space.walk_forward, data_span(config)), space.total_trials()
    if count * per_fold > MAX_TRIALS:
        wf = space.walk_forward
        raise ConfigError(
            f"{space_path}: walk_forward: train {wf.train} and test {wf.test} make {count:,} folds, {count * per_fold:,} "
            f"trials in all ({per_fold:,} a fold), more than a sweep runs ({MAX_TRIALS:,}: one file a trial); "
            "lengthen test, or bound the folds with walk_forward's start and end"
        )

    for fold in folds(space.walk_forward, data_span(config)):
        for part in ("train", "test"):
            window = fold.window(part)
            fold_config = load_config(config_path, overrides=TrialSpec(fold.index, str(config_path), {}, window).overrides())
            replay = build_replay(fold_config)
            if next(iter(replay.batches()), None) is None:
                raise ConfigError(
                    f"{space_path}: walk_forward: fold {fold.index}'s {part} window {format_ns(window[0])} .. "
                    f"{format_ns(window[1])} has no data: {empty_window(fold_config, replay)}; bound the folds "
                    "with walk_forward's start and end"
                )


def _objective_values(space: SweepSpace, row: dict[str, Any]) -> list[float] | None:
    values = []
    for name in space.objectives:
        value = row.get(name)
        if row.get("status") != "ok" or value is None or not math.isfinite(value):
            return None
        values.append(float(value))
    return values


def best_trial(space: SweepSpace, store: TrialStore) -> dict[str, Any] | None:
    """The stored row that is best by the first objective (lowest trial number on ties), or ``None``."""
    return _best(space, store.table().to_pylist())


def _best(space: SweepSpace, rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """:func:`best_trial` among ``rows`` (in trial order)."""
    name, direction = next(iter(space.objectives.items()))
    best: dict[str, Any] | None = None
    for row in rows:
        if _objective_values(space, row) is None:
            continue
        if best is None or (row[name] > best[name] if direction == "maximize" else row[name] < best[name]):
            best = row
    return best


def _pareto(space: SweepSpace, rows: list[dict[str, Any]]) -> list[int]:
    """Trial numbers of the non-dominated trials among ``rows`` over all objectives."""
    scored = [(r["trial"], v) for r in rows if (v := _objective_values(space, r)) is not None]
    if not scored:
        return []
    signs = np.array([1.0 if d == "maximize" else -1.0 for d in space.directions])
    values = np.array([v for _, v in scored]) * signs
    front = []
    for i, (number, _) in enumerate(scored):
        dominated = np.any(np.all(values >= values[i], axis=1) & np.any(values > values[i], axis=1))
        if not dominated:
            front.append(number)
    return front


#: Objectives that ``metrics.json`` leaves null for a run shorter than ``MIN_ANNUALISED_DAYS``.
_ANNUALISED = ("cagr", "annualised_volatility", "sharpe", "sortino", "calmar")


def _no_best(space: SweepSpace, stores: list[TrialStore], where: str) -> TradebusError:
    """Why no trial of ``stores`` could be the best: how many were invalid, failed, or left an objective null.

    A :class:`ConfigError` unless a trial failed while running.
    """
    rows = [row for store in stores for row in store.table().select(["trial", "status", "error"]).to_pylist()]
    invalid = [r for r in rows if r["status"] == "invalid"]
    failed = [r for r in rows if r["status"] == "failed"]
    parts = [f"{len(invalid)} invalid"] if invalid else []
    parts += [f"{len(failed)} failed"] if failed else []
    unscored = len(rows) - len(invalid) - len(failed)
    names = ", ".join(space.objectives)
    if unscored:
        parts.append(f"{unscored} ran with {names} null or not finite")
    text = f"no trial has a value of {names} to pick the best by; of {len(rows)} trials, {', '.join(parts)}"
    if unscored and any(name in _ANNUALISED for name in space.objectives):
        text += f"; annualised metrics are null for a run under {MIN_ANNUALISED_DAYS:g} days"
    first = (failed or invalid)[:1]
    if first:
        text += f"; trial {first[0]['trial']}: {' '.join(str(first[0]['error']).split())}"
    text += f"; each trial's status and error are in {where}"
    return TradebusError(text) if failed else ConfigError(text)


def _grid(
    executor: RayExecutor, space: SweepSpace, config: str, store: TrialStore, window: tuple[int, int] | None,
    on_trial: OnTrial,
) -> int:
    done = store.done()
    specs = (
        TrialSpec(n, config, params, window, tier=space.tier) for n, params in enumerate(space.grid()) if n not in done
    )
    ran = 0
    for spec, row in executor.run(specs):
        _record(store, spec, row, on_trial)
        ran += 1
    return ran


def _record(store: TrialStore, spec: TrialSpec, row: dict[str, Any], on_trial: OnTrial) -> None:
    """Store a finished trial's row, warn with its parameters when it failed, report it."""
    store.write(row, spec.params)
    if row["status"] == "failed":
        values = ", ".join(f"{path}={value}" for path, value in spec.params.items())
        logger.warning("trial {} ({}) failed: {}", spec.number, values, row["error"])
    on_trial(row)


def _study_storage(directory: Path) -> Any:
    """Optuna's storage of the study in ``directory``: an append-only journal file (``optuna.log``).

    A sweep directory made before the journal (its study in ``optuna.db``) goes on with SQLite.
    Each ask or tell appends one line, fsynced; SQLite through SQLAlchemy cost ~70 ms of driver
    time a trial on a 200-trial study, more than the trials themselves.
    """
    legacy = directory / "optuna.db"
    if legacy.exists():
        return f"sqlite:///{legacy}"
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

    path = str(directory / "optuna.log")
    # Only this driver writes the file: a lock older than a few seconds is one a killed driver left.
    return JournalStorage(JournalFileBackend(path, lock_obj=JournalFileOpenLock(path, grace_period=5)))


def _tpe(
    executor: RayExecutor, space: SweepSpace, config: str, store: TrialStore, window: tuple[int, int] | None,
    on_trial: OnTrial, directory: Path, study_name: str,
) -> int:
    import optuna
    from optuna.trial import TrialState

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    directory.mkdir(parents=True, exist_ok=True)
    storage = optuna.storages.get_storage(_study_storage(directory))
    study = optuna.create_study(
        storage=storage, study_name=study_name, directions=space.directions, load_if_exists=True
    )
    distributions = {p.path: p.distribution() for p in space.params}
    total = space.total_trials()

    def sampler(number: int) -> Any:
        """The sampler that asks trial ``number``."""
        return optuna.samplers.TPESampler(seed=(space.seed * 1_000_003 + number) % 2**32)

    def asked() -> int:
        """Trials asked so far (``study.trials`` would deep-copy every one of them)."""
        return len(study.get_trials(deepcopy=False))

    def ask_round() -> None:
        """Ask the trials of the current round (finishing a round cut short while being asked)."""
        have = asked()
        target = min(total, (have // space.batch + 1) * space.batch)
        for number in range(have, target):
            study.sampler = sampler(number)
            study.ask(distributions)

    def finish_asks() -> None:
        """Store the parameters a driver stopped inside a trial's ``study.ask`` left unset.

        The parameters are drawn one after the other from the trial's seeded sampler, each from
        the trials finished before its round: asking a study holding copies of the trials before
        it draws them all again, those already stored included.
        """
        trials = study.get_trials(deepcopy=False)
        study_id = storage.get_study_id_from_name(study_name)
        for trial in trials:
            if trial.state != TrialState.RUNNING or trial.params.keys() == distributions.keys():
                continue
            replay = optuna.create_study(directions=space.directions, sampler=sampler(trial.number))
            replay.add_trials(trials[:trial.number])
            params = replay.ask(distributions).params
            differ = {k: (v, params[k]) for k, v in trial.params.items() if params.get(k) != v}
            if differ:  # the sampler draws differently from when it was asked (another Optuna version)
                raise TradebusError(
                    f"{directory}: trial {trial.number} was cut short while being asked and asking it again gives "
                    + ", ".join(f"{k}={new!r}, not the stored {old!r}" for k, (old, new) in differ.items())
                    + f" (Optuna {optuna.__version__}); start afresh with another --out"
                )
            trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
            for name, distribution in distributions.items():
                if name not in trial.params:
                    storage.set_trial_param(trial_id, name, distribution.to_internal_repr(params[name]), distribution)
            asked_again = space.points({k: params[k] for k in distributions if k not in trial.params})
            logger.info("trial {} was cut short while being asked: {} asked again", trial.number,
                        ", ".join(f"{k}={v}" for k, v in asked_again.items()))

    def tell(number: int, row: dict[str, Any]) -> None:
        values = _objective_values(space, row)
        if values is None:
            study.tell(number, state=TrialState.FAIL)
        else:
            study.tell(number, values if len(values) > 1 else values[0])

    finish_asks()
    ran = 0
    while True:
        have = asked()
        if have % space.batch and have < total:
            ask_round()
        done = store.done()
        open_trials = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.RUNNING]
        for t in open_trials:
            if t.number in done:  # finished and stored, but the process stopped before telling Optuna
                tell(t.number, store.read(t.number))
        specs = [
            TrialSpec(t.number, config, space.points(t.params), window, tier=space.tier)
            for t in open_trials
            if t.number not in done
        ]
        for spec, row in executor.run(specs):
            _record(store, spec, row, on_trial)
            tell(spec.number, row)
            ran += 1
        if asked() >= total:
            return ran
        ask_round()


def _optimise(
    executor: RayExecutor, space: SweepSpace, config: Path, directory: Path, window: tuple[int, int] | None,
    on_trial: OnTrial, study_name: str,
) -> tuple[TrialStore, int]:
    directory.mkdir(parents=True, exist_ok=True)
    store = TrialStore(directory / "trials", space.params)
    if space.method == "grid":
        ran = _grid(executor, space, str(config), store, window, on_trial)
    else:
        ran = _tpe(executor, space, str(config), store, window, on_trial, directory, study_name)
    return store, ran


def _write_outputs(space: SweepSpace, store: TrialStore, out: Path) -> dict[str, Any] | None:
    """``results.csv`` and ``best.json`` of the stored trials (read once: a few ms a trial file); the best row."""
    rows = store.table().to_pylist()
    write_file(out / "results.csv", lambda temp: _write_csv(temp, store.schema.names, rows))
    best = _best(space, rows)
    name, direction = next(iter(space.objectives.items()))
    data: dict[str, Any] = {"objective": name, "direction": direction, "trial": None, "params": None, "metrics": None}
    if best is not None:
        data.update(trial=best["trial"], params=store.params_of(best),
                    metrics={k: v for k, v in best.items()
                             if k not in ("trial", "status", "error", "tier", *TIMING_COLUMNS)
                             and not k.startswith("param.")})
    if len(space.objectives) > 1:
        data["pareto_trials"] = _pareto(space, rows)
    data["unranked_trials"] = _unranked(space, rows)
    if best is not None:
        _warn_unranked(space, data["unranked_trials"], len(rows), "", "best.json's unranked_trials")
    write_file(out / "best.json", json.dumps(data, indent=2) + "\n")
    return best


def _unranked(space: SweepSpace, rows: list[dict[str, Any]]) -> list[int]:
    """Trial numbers of the rows that ran but have no value of every objective (left out of the ranking)."""
    # a null objective is no number to rank by (profit_factor with no losing round trip is not the worst)
    return [r["trial"] for r in rows if r["status"] == "ok" and _objective_values(space, r) is None]


def _warn_unranked(space: SweepSpace, unranked: list[int], total: int, where: str, listed: str) -> None:
    """Warn that ``unranked`` trials of ``total`` (``where``: e.g. a fold) were left out of the ranking."""
    if not unranked:
        return
    names = ", ".join(space.objectives)
    logger.warning("{}{} of {} trials ran with {} null or not finite and are not ranked ({}: {}); the metric is "
                   "undefined for such a run (null_reasons of its metrics.json: e.g. profit_factor with no losing "
                   "round trip, sharpe of daily returns that do not vary{})", where, len(unranked), total, names,
                   listed, unranked[:10], f", annualised metrics under {MIN_ANNUALISED_DAYS:g} days"
                   if any(n in _ANNUALISED for n in space.objectives) else "")


def _walk_forward(
    executor: RayExecutor, space: SweepSpace, config_path: Path, config: RunConfig, out: Path, on_trial: OnTrial,
) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any] | None, int]:
    assert space.walk_forward is not None
    wf_dir = out / "walk_forward"
    fold_rows: list[dict[str, Any]] = []
    curves: list[list[tuple[int, float]]] = []
    run_cash: list[float] = []
    best: dict[str, Any] | None = None
    ran = 0
    for fold in folds(space.walk_forward, data_span(config)):
        fold_dir = wf_dir / f"fold-{fold.index:02d}"
        store, n = _optimise(executor, space, config_path, fold_dir, fold.window("train"), on_trial,
                             f"fold-{fold.index:02d}")
        ran += n
        rows = store.table().to_pylist()
        best = _best(space, rows)
        unranked = _unranked(space, rows)
        row: dict[str, Any] = {
            "fold": fold.index, "train_start": format_ns(fold.train_start), "train_end": format_ns(fold.train_end),
            "test_end": format_ns(fold.test_end), "best_trial": None if best is None else best["trial"],
            "unranked_trials": json.dumps(unranked),
        }
        if best is not None:
            _warn_unranked(space, unranked, len(rows), f"walk-forward fold {fold.index}: ",
                           "folds.csv's unranked_trials")
        curve: list[tuple[int, float]] = []
        cash = config.initial_cash
        if best is not None:
            params = store.params_of(best)
            cash = load_config(config_path, overrides=[override_text(k, v) for k, v in params.items()]).initial_cash
            spec = TrialSpec(fold.index, str(config_path), params, fold.window("test"), keep_equity=True,
                             tier=space.tier)
            (_, test), = executor.run([spec])
            curve = test.pop("equity")
            row.update({f"param.{k}": v for k, v in params.items()})
            row.update({f"train_{k}": best[k] for k in space.objectives})
            row.update({f"test_{k}": test[k]
                        for k in ("status", "error", "total_return", "sharpe", "max_drawdown", "fills")})
            if test["status"] != "ok":
                logger.warning(
                    "walk-forward fold {}: the test run of its best trial {} ({}) on {} .. {} did not run ({}: {}); the "
                    "window is left out of the stitched equity and metrics.json (untested_folds)", fold.index, best["trial"],
                    ", ".join(f"{k}={v}" for k, v in params.items()), row["train_end"], row["test_end"],
                    test["status"], test["error"],
                )
        else:
            logger.warning(
                "walk-forward fold {} ({} .. {}): {}; its test window {} .. {} is left out of the stitched equity "
                "and metrics.json (untested_folds)", fold.index, row["train_start"], row["train_end"],
                _no_best(space, [store], str(fold_dir / "trials")), row["train_end"], row["test_end"],
            )
        curves.append(curve)
        run_cash.append(cash)
        fold_rows.append(row)
    stitched, metrics = stitch(curves, config.initial_cash, run_cash)
    wf_dir.mkdir(parents=True, exist_ok=True)
    columns = list(dict.fromkeys(k for r in fold_rows for k in r))
    write_file(wf_dir / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    write_file(wf_dir / "folds.csv", lambda temp: _write_csv(temp, columns, fold_rows))
    write_file(wf_dir / "equity.csv", lambda temp: _write_csv(
        temp, ["fold", "ts", "equity"], ({"fold": k, "ts": ts, "equity": e} for k, ts, e in stitched)))
    return metrics, fold_rows, best, ran


def _write_csv(path: Path, columns: list[str], rows: Iterable[dict[str, Any]]) -> None:
    """Write ``rows`` to the CSV file ``path`` under a header of ``columns`` as a run's files are written
    (:func:`~tradebus.reports.writers.write_csv_rows`: a float as its ``repr``, so 2.0 reads back as a float);
    a row's missing keys and its nulls are empty cells."""
    with path.open("w", newline="", encoding="utf-8") as fh:
        write_csv_header(fh, columns)
        write_csv_rows(fh, ([_cell(name, row.get(name)) for name in columns] for row in rows))


def _cell(column: str, value: Any) -> Any:
    """A CSV cell of ``value``: a null is empty; an error's text is on one line (its whitespace folded: the
    trial's file in ``trials/`` keeps it as it was), so each row of the file is one line."""
    if value is None:
        return ""
    return " ".join(value.split()) if column in _ERROR_COLUMNS and isinstance(value, str) else value


def _stress_params(space: SweepSpace, fold_rows: list[dict[str, Any]], stress: bool) -> dict[str, Any] | None:
    """The parameters the stress variants run after a walk-forward: the best of the latest fold that has one.

    ``None`` when no fold has a best trial. When the last fold has none (and ``stress``) a warning
    names the fold whose parameters are used.
    """
    tested = [row for row in fold_rows if row["best_trial"] is not None]
    if not tested:
        return None
    latest = tested[-1]
    if stress and latest is not fold_rows[-1]:
        logger.warning(
            "stress variants: the last walk-forward fold ({}) has no best trial; they run fold {}'s best parameters "
            "(trial {}), the latest fold that has one", fold_rows[-1]["fold"], latest["fold"], latest["best_trial"],
        )
    return {p.path: latest[p.column] for p in space.params}


def _stress(
    executor: RayExecutor, space: SweepSpace, config_path: Path, config: RunConfig, params: dict[str, Any], out: Path
) -> list[dict[str, Any]]:
    left_out: dict[str, str] = {}
    variants = space.stress if space.stress is not None else default_variants(data_span(config), config, left_out)
    specs = [
        TrialSpec(i, str(config_path), params, stress=v.model_dump(mode="json"), tier=space.tier)
        for i, v in enumerate(variants)
    ]
    rows: dict[int, dict[str, Any]] = {}
    for spec, row in executor.run(specs):
        if row["status"] != "ok":
            raise ConfigError(f"stress variant {variants[spec.number].name!r}: {row['error']}")
        rows[spec.number] = row
    report = [{"variant": v.name, **{k: rows[i][k] for k in STRESS_KEYS}} for i, v in enumerate(variants)]
    best = load_config(config_path, overrides=[override_text(path, value) for path, value in params.items()])
    span = data_span(best)
    for entry, variant in zip(report, variants, strict=True):
        note = variant.no_effect(best, span)
        if note is not None:
            logger.warning("stress variant {!r}: {}", variant.name, note)
            entry["note"] = note
    report += [{"variant": name, **dict.fromkeys(STRESS_KEYS), "note": f"left out: {why}"} for name, why in left_out.items()]
    write_file(out / "stress.json", json.dumps(report, indent=2) + "\n")
    return report


def run_sweep(
    config_path: str | Path,
    space_path: str | Path,
    out: str | Path | None = None,
    *,
    workers: int | None = None,
    address: str | None = None,
    stress: bool = False,
    force: bool = False,
    tier: str | None = None,
    on_start: Callable[[int, int], None] | None = None,
    on_trial: OnTrial | None = None,
) -> SweepResult:
    """Run (or resume) a sweep and write its outputs (see the module docstring).

    Parameters
    ----------
    config_path, space_path
        The run config and the space file.
    out
        Sweep directory; default ``runs/sweep-<config stem>``.
    workers, address
        Local Ray workers, or the address of an existing Ray cluster (:class:`RayExecutor`).
    stress
        Run the stress variants (the space's ``stress:`` block, or
        :func:`~tradebus.sweep.stress.default_variants`) with the best parameters; also
        done whenever the space has a ``stress:`` block.
    force
        Use a non-empty ``out`` that is not a sweep directory (its files are left alone; one
        named as a file the sweep writes is still refused).
    tier
        ``auto``, ``event`` or ``accelerated``: overrides the space's ``tier`` (see
        :data:`~tradebus.sweep.trial.TIERS`).
    on_start
        Called with ``(total trials, trials already done)`` before the first trial.
    on_trial
        Called with each finished trial's row (progress).

    Raises
    ------
    ConfigError
        Invalid config or space, a parameter path that is not a config field, a grid
        none of whose points makes a valid config, a stress variant shocking data it cannot
        move (:meth:`~tradebus.sweep.stress.StressVariant.check_data`), a walk-forward fold whose
        train or test window holds no row of the data, a sweep directory of
        another sweep or of data or strategy code that has changed since, or one another running sweep holds; after
        the trials (their files and ``results.csv`` written), no trial that ran has a value
        of every objective (all invalid, or a null objective such as a Sharpe of a run under
        30 days).
    TradebusError
        No trial has a value of every objective and some failed while running; with
        ``walk_forward``, no fold has an out-of-sample result (the test runs of the folds'
        best trials failed).
    """
    config_path = Path(config_path).resolve()
    space_path = Path(space_path)
    space = load_space(space_path)
    if tier is not None:
        if tier not in TIERS:
            raise ConfigError(f"--tier: {tier!r} is not one of {', '.join(TIERS)}")
        space = space.model_copy(update={"tier": tier})
    config = load_config(config_path)
    space = load_space(space_path, partial(float_field, config)).model_copy(update={"tier": space.tier})
    _check_paths(config_path, config, space, space_path)
    _check_grid(config_path, space, space_path)
    _check_tier(config_path, space, space_path)
    _check_stress(space, config, space_path)
    from tradebus.cli import check_window  # the CLI module imports this one

    check_window(config_path, config)
    _check_folds(config_path, config, space, space_path)
    out = Path(out) if out is not None else default_out(config_path)
    ray_executor = RayExecutor(workers, address)  # checks --workers before the directory is made
    lock = _prepare(out, config_path, config, space_path, space, force)
    try:
        tiers: dict[str, int] = {}
        failed = 0
        denials = [0, 0, 0, 0]  # trials that ran, of them mostly denied, their denied orders, their orders

        def callback(row: dict[str, Any]) -> None:
            nonlocal failed
            if row.get("tier") is not None:
                tiers[row["tier"]] = tiers.get(row["tier"], 0) + 1
            failed += row["status"] == "failed"
            if row["status"] == "ok":
                denials[0] += 1
                if (row.get("denied") or 0) * 2 > (row.get("orders") or 0):
                    denials[1:] = [denials[1] + 1, denials[2] + row["denied"], denials[3] + row["orders"]]
            if on_trial is not None:
                on_trial(row)

        no_best: TradebusError | None = None
        with ray_executor as executor:
            if space.walk_forward is not None:
                wf_folds = folds(space.walk_forward, data_span(config))
                total = space.total_trials() * len(wf_folds)
                skipped = sum(
                    len(TrialStore(out / "walk_forward" / f"fold-{f.index:02d}" / "trials", space.params).done())
                    for f in wf_folds
                )
                if on_start is not None:
                    on_start(total, skipped)
                metrics, fold_rows, best, ran = _walk_forward(executor, space, config_path, config, out, callback)
                result = SweepResult(out, total, ran, skipped, best, walk_forward=metrics, folds=fold_rows)
                best_params = _stress_params(space, fold_rows, stress or space.stress is not None)
                if all(row["best_trial"] is None for row in fold_rows):
                    stores = [TrialStore(out / "walk_forward" / f"fold-{f.index:02d}" / "trials", space.params)
                              for f in wf_folds]
                    no_best = _no_best(space, stores, str(out / "walk_forward" / "fold-NN" / "trials"))
                elif len(metrics["untested_folds"]) == len(fold_rows):
                    no_best = TradebusError(
                        "walk-forward: no fold has an out-of-sample result: each fold has no best trial or its test "
                        f"run failed (see the warnings above); each fold's best_trial, test_status and test_error are in "
                        f"{out / 'walk_forward' / 'folds.csv'}"
                    )
            else:
                store = TrialStore(out / "trials", space.params)
                total, skipped = space.total_trials(), len(store.done())
                if on_start is not None:
                    on_start(total, skipped)
                store, ran = _optimise(executor, space, config_path, out, None, callback, "sweep")
                best = _write_outputs(space, store, out)
                result = SweepResult(out, total, ran, skipped, best)
                best_params = None if best is None else store.params_of(best)
                if best is None:
                    no_best = _no_best(space, [store], str(out / "results.csv"))
            if stress or space.stress is not None:
                if best_params is None:
                    logger.warning("no trial succeeded: the stress variants were not run")
                else:
                    result.stress = _stress(executor, space, config_path, config, best_params, out)
        result.tiers, result.failed = tiers, failed
        result.scored, result.mostly_denied, result.denied_orders = denials[0], denials[1], (denials[2], denials[3])
        if result.mostly_denied:
            logger.warning(
                "{} of the {} trials that ran had most of their orders denied by the risk gate or the account ({:,} of "
                "their {:,} orders, {:.1%}): their figures are of the few orders let through; results.csv's orders and "
                "denied columns count each trial's; a backtest with a trial's parameters (--set) warns which checks "
                "denied them and why", result.mostly_denied, result.scored, denials[2], denials[3],
                denials[2] / denials[3],
            )
        if no_best is not None:
            raise no_best
        logger.info("sweep written to {} ({} trials run, {} resumed; tiers {})", out, ran, skipped, tiers)
        return result
    finally:
        if lock is not None:
            os.close(lock)

