"""Cross-validation without leakage: purged K-fold, purged walk-forward, combinatorial purged CV.

Every splitter follows scikit-learn's splitter API (``split(X, y, groups)`` and
``get_n_splits``), so it can be passed as ``cv=`` to ``cross_val_score``,
``cross_val_predict`` (K-fold) and ``GridSearchCV``. Samples are in time order; sample
``i`` is the label interval ``[t0[i], t1[i]]`` (event time and the time its label is
known, e.g. the ``ts_event`` and ``t1`` columns of :mod:`tradebus.research.labels`).

Purging and embargo (López de Prado, *Advances in Financial Machine Learning*, ch. 7)
----------------------------------------------------------------------------------------
Test samples form contiguous *blocks*. For a block ``[a, b)`` with end time
``E = max(t1[a:b])``:

* **purge**: a training sample ``j`` is dropped when its interval overlaps the block's,
  ``t0[j] <= E and t1[j] >= t0[a]``;
* **embargo**: the ``h`` samples that follow the block's labels (the first ``h``
  samples with ``t0 > E``) are dropped too, because features computed over
  trailing windows still contain the test period's information.

``embargo`` is a number of samples (a whole number) or a fraction of all samples (float < 1,
rounded up); a non-whole number >= 1 is refused. With labels spanning ``k`` samples
(``t1[i] = t0[i + k]``) this removes ``k`` samples before each block and ``k + h`` after it,
which is skfolio's ``CombinatorialPurgedCV(purged_size=k, embargo_size=h)``.

In a walk-forward no training sample follows its test window, so the embargo above would
remove nothing; there it is a margin *before* the test window instead: of the training
samples purging kept, the ``h`` nearest the test window (the last ``h``) are dropped, so
the training labels end at least ``h`` samples before the test window starts (with labels
spanning ``k`` samples: ``k + h`` samples before each test window, as after a K-fold block).
A training window's samples that follow an earlier window's test samples are that earlier
window's test, not this one's: they stay in the training set (walk-forward retrains on
the past it has tested).

A K-fold or CPCV split that purging and embargo leave without a training sample is refused
(``ConfigError`` naming the split, the embargo and the counts): no model can be fitted on it.
So is a walk-forward window whose whole training window is purged or embargoed.

Folds are contiguous, of sizes as in scikit-learn's ``KFold`` (the first ``n % k``
folds one sample larger).

Measured (bench/research.py): split generation for 1M samples is dominated by the
O(n) overlap mask per test block.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import BaseCrossValidator

from tradebus.errors import ConfigError

__all__ = ["CombinatorialPurgedCV", "PurgedKFold", "PurgedWalkForward", "embargo_problem", "embargo_samples",
           "fold_bounds", "purge"]


def fold_bounds(n: int, k: int) -> np.ndarray:
    """Start positions of ``k`` contiguous folds over ``n`` samples, plus ``n`` (sklearn ``KFold`` sizes)."""
    sizes = np.full(k, n // k, dtype=np.int64)
    sizes[: n % k] += 1
    return np.concatenate([[0], np.cumsum(sizes)])


def _times(name: str, values: Any) -> np.ndarray:
    if isinstance(values, (pd.Series, pd.Index)):
        values = values.to_numpy()
    arr = np.asarray(values)
    if np.issubdtype(arr.dtype, np.datetime64):
        arr = arr.astype("datetime64[ns]").astype(np.int64)
    if arr.ndim != 1:
        raise ConfigError(f"splitter: {name} must be 1-D, got shape {arr.shape}")
    return arr


def embargo_problem(embargo: float) -> str | None:
    """Why ``embargo`` is not a sample count or a fraction of the samples, or ``None`` when it is.

    Parameters
    ----------
    embargo
        Samples (a whole number) or a fraction of all samples (float < 1).
    """
    if embargo < 0:
        return f"embargo must be >= 0, got {embargo}"
    if embargo >= 1 and embargo != int(embargo):
        return (f"embargo {embargo} is neither a number of samples (a whole number) "
                f"nor a fraction of the samples (< 1)")
    return None


def embargo_samples(t0: np.ndarray, t1: np.ndarray, n_splits: int, embargo_ns: int) -> int:
    """The embargo in samples that covers ``embargo_ns`` after every test fold of a :class:`PurgedKFold`.

    :class:`PurgedKFold` embargoes the ``h`` samples that follow a fold's labels; with irregular
    sample times the samples within ``embargo_ns`` of a fold's label end vary in number, so ``h``
    is the largest such count over the ``n_splits`` folds (some folds drop a few more samples than
    the time asks).

    Parameters
    ----------
    t0, t1
        Label start and end time (ns) of every sample, in time order.
    n_splits
        Number of folds.
    embargo_ns
        The embargo as a duration (ns), >= 0.
    """
    t0, t1 = np.asarray(t0, dtype=np.int64), np.asarray(t1, dtype=np.int64)
    h = 0
    for a, b in itertools.pairwise(fold_bounds(t0.shape[0], n_splits).tolist()):
        if b > a:
            end = int(t1[a:b].max())
            after = np.searchsorted(t0, [end, end + int(embargo_ns)], side="right")
            h = max(h, int(after[1] - after[0]))
    return h


def _embargo_size(embargo: float, n: int) -> int:
    problem = embargo_problem(embargo)
    if problem is not None:
        raise ConfigError(f"splitter: {problem}")
    if isinstance(embargo, float) and embargo < 1.0:
        return math.ceil(embargo * n)
    return int(embargo)


def _embargo_text(embargo: float, h: int) -> str:
    return f"{h} samples" if embargo >= 1 or embargo == 0 else f"{embargo} = {h} samples"


def _blocks(test: np.ndarray) -> list[tuple[int, int]]:
    """Contiguous runs ``[a, b)`` of sorted test positions."""
    if test.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(test) != 1)
    starts = np.concatenate([[test[0]], test[breaks + 1]])
    ends = np.concatenate([test[breaks] + 1, [test[-1] + 1]])
    return list(zip(starts.tolist(), ends.tolist(), strict=True))


def purge(train: np.ndarray, test: np.ndarray, t0: np.ndarray, t1: np.ndarray, embargo: int = 0) -> np.ndarray:
    """Training positions left after purging against every test block and embargoing after it.

    Parameters
    ----------
    train, test
        Sorted sample positions.
    t0, t1
        Label start and end time of every sample (``t0`` non-decreasing).
    embargo
        Samples dropped after each block's labels end.
    """
    keep = np.zeros(t0.shape[0], dtype=bool)
    keep[train] = True
    for a, b in _blocks(test):
        end = t1[a:b].max()
        keep &= ~((t0 <= end) & (t1 >= t0[a]))
        if embargo:
            after = int(np.searchsorted(t0, end, side="right"))
            keep[after : after + embargo] = False
    return np.flatnonzero(keep)


class _Purged(BaseCrossValidator):
    """Shared checks: time arrays, their order and length against ``X``."""

    def _arrays(self, X: Any) -> tuple[np.ndarray, np.ndarray]:
        t0, t1 = _times("t0", self.t0), _times("t1", self.t1)
        if t0.shape != t1.shape:
            raise ConfigError(f"splitter: t0 and t1 differ in length ({t0.shape[0]} != {t1.shape[0]})")
        if X is not None and len(X) != t0.shape[0]:
            raise ConfigError(f"splitter: X has {len(X)} samples but t0/t1 have {t0.shape[0]}")
        if t0.size and not (t0[1:] >= t0[:-1]).all():
            row = int(np.argmax(t0[1:] < t0[:-1])) + 1
            raise ConfigError(f"splitter: samples must be in time order (t0 decreases at sample {row})")
        if (t1 < t0).any():
            row = int(np.argmax(t1 < t0))
            raise ConfigError(f"splitter: t1 < t0 at sample {row}")
        return t0, t1

    def _trainable(self, split: str, train: np.ndarray, test: np.ndarray, n: int, h: int, least: int = 1) -> np.ndarray:
        """``train``, refused when purging and embargo left it fewer than ``least`` samples (empty by default)."""
        if train.size < least:
            if train.size == 0:
                left = "no training samples left"
            else:
                left = (f"only {train.size} training sample{'s' if train.size > 1 else ''} left, fewer than the "
                        f"{least} asked for")
            raise ConfigError(
                f"{type(self).__name__}: {split} has {left}: of {n} samples {test.size} are tested and the other "
                f"{n - test.size - train.size} are purged or embargoed (embargo {_embargo_text(self.embargo, h)}); "
                "lower the embargo or use more samples")
        return train

    def _iter_test_indices(self, X: Any = None, y: Any = None, groups: Any = None) -> Iterator[np.ndarray]:
        for _, test in self.split(X, y, groups):
            yield test


class PurgedKFold(_Purged):
    """K contiguous folds; each test fold's overlapping and embargoed samples leave the training set.

    Every sample is tested exactly once, so ``cross_val_predict`` accepts it.

    Parameters
    ----------
    n_splits
        Number of folds (>= 2).
    t0, t1
        Label start and end times per sample (see the module docstring).
    embargo
        Samples (a whole number) or fraction of samples (float < 1) embargoed after each test fold.
    min_train
        Fewest training samples a fold may keep after its purge and embargo (>= 1); a fold left
        with fewer is refused (:class:`~tradebus.errors.ConfigError` naming it and the counts).
    """

    def __init__(self, n_splits: int = 5, *, t0: Any, t1: Any, embargo: float = 0, min_train: int = 1) -> None:
        if n_splits < 2:
            raise ConfigError(f"PurgedKFold: n_splits must be >= 2, got {n_splits}")
        if min_train < 1:
            raise ConfigError(f"PurgedKFold: min_train must be >= 1, got {min_train}")
        self.n_splits = n_splits
        self.t0 = t0
        self.t1 = t1
        self.embargo = embargo
        self.min_train = min_train

    def get_n_splits(self, X: Any = None, y: Any = None, groups: Any = None) -> int:
        """Number of folds."""
        return self.n_splits

    def split(self, X: Any = None, y: Any = None, groups: Any = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(train, test)`` positions per fold."""
        t0, t1 = self._arrays(X)
        n = t0.shape[0]
        if n < self.n_splits:
            raise ConfigError(f"PurgedKFold: {n} samples cannot make {self.n_splits} folds")
        h = _embargo_size(self.embargo, n)
        bounds = fold_bounds(n, self.n_splits)
        everything = np.arange(n)
        for k, (a, b) in enumerate(itertools.pairwise(bounds.tolist())):
            test = everything[a:b]
            train = np.concatenate([everything[:a], everything[b:]])
            yield self._trainable(f"fold {k}", purge(train, test, t0, t1, h), test, n, h, self.min_train), test


class PurgedWalkForward(_Purged):
    """Walk-forward splits: train on the past only (rolling or expanding), test the next window.

    Parameters
    ----------
    test_size
        Samples per test window.
    t0, t1
        Label start and end times per sample.
    train_size
        Rolling window length in samples (scikit-learn ``TimeSeriesSplit``'s ``max_train_size``);
        with ``expanding=True`` and no ``n_splits``, the length of the first training set.
        Default: all the samples before the first test window.
    n_splits
        Number of test windows, placed so that the last ends at the last sample (the first
        starts at ``n - test_size - (n_splits - 1) * step``), as ``TimeSeriesSplit`` places
        them; with ``train_size`` too, fewer than ``train_size + gap`` samples before the first
        is refused (:class:`~tradebus.errors.ConfigError` naming how many windows fit), never
        a silently smaller evaluation.
        Default: as many as fit after ``train_size + gap``.
    step
        Samples between test window starts (default ``test_size``).
    expanding
        Training starts at sample 0 instead of rolling.
    gap
        Samples skipped between the training window and the test window (on top of
        purging, which drops the training labels that end inside the test window).
    embargo
        Samples (a whole number) or fraction of samples (float < 1) dropped from the end of
        each training window after purging: the ``h`` kept samples nearest the test window
        (see the module docstring).
    """

    def __init__(
        self,
        test_size: int,
        *,
        t0: Any,
        t1: Any,
        train_size: int | None = None,
        n_splits: int | None = None,
        step: int | None = None,
        expanding: bool = False,
        gap: int = 0,
        embargo: float = 0,
    ) -> None:
        if test_size < 1 or (step is not None and step < 1) or gap < 0:
            raise ConfigError("PurgedWalkForward: test_size and step must be >= 1 and gap >= 0")
        if train_size is None and n_splits is None:
            raise ConfigError("PurgedWalkForward: give train_size or n_splits")
        self.test_size = test_size
        self.t0 = t0
        self.t1 = t1
        self.train_size = train_size
        self.n_splits = n_splits
        self.step = step
        self.expanding = expanding
        self.gap = gap
        self.embargo = embargo

    def _starts(self, n: int) -> list[int]:
        step = self.step or self.test_size
        if self.n_splits is None:
            assert self.train_size is not None
            first = self.train_size + self.gap
        else:
            # the last window ends at the last sample; train_size samples must precede the first
            first = n - self.test_size - (self.n_splits - 1) * step
            if self.train_size is not None and first < self.train_size + self.gap:
                fit = max((n - self.test_size - self.train_size - self.gap) // step + 1, 0)
                fixes = [f"n_splits <= {fit}"] * (fit > 0)
                fixes += [f"train_size <= {first - self.gap}"] * (first - self.gap >= 1)
                raise ConfigError(
                    f"PurgedWalkForward: n_splits {self.n_splits} test windows of {self.test_size} samples "
                    f"(step {step}) ending at the last of {n} samples start at sample {first}, but train_size "
                    f"{self.train_size} + gap {self.gap} samples must precede the first: only {fit} fit; give "
                    + (f"{' or '.join(fixes)} (or a smaller test_size)" if fixes
                       else "a smaller train_size, test_size or n_splits, or more samples"))
        starts = list(range(first, n - self.test_size + 1, step))
        if self.n_splits is not None:
            starts = starts[: self.n_splits]
        if not starts or first - self.gap < 1:
            raise ConfigError(f"PurgedWalkForward: {n} samples leave no room for a training and a test window")
        return starts

    def get_n_splits(self, X: Any = None, y: Any = None, groups: Any = None) -> int:
        """Number of test windows."""
        return len(self._starts(_times("t0", self.t0).shape[0]))

    def train_windows(self, n: int) -> list[tuple[int, int]]:
        """The training window ``[begin, stop)`` of each split over ``n`` samples, before purging and embargo."""
        starts = self._starts(n)
        # train_size, or by default all that precedes the first test window
        length = self.train_size if self.train_size is not None else starts[0] - self.gap
        return [(0 if self.expanding else max(s - self.gap - length, 0), s - self.gap) for s in starts]

    def split(self, X: Any = None, y: Any = None, groups: Any = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(train, test)`` positions per window, in time order."""
        t0, t1 = self._arrays(X)
        n = t0.shape[0]
        h = _embargo_size(self.embargo, n)
        for k, (s, (begin, stop)) in enumerate(zip(self._starts(n), self.train_windows(n), strict=True)):
            test = np.arange(s, s + self.test_size)
            purged = purge(np.arange(begin, stop), test, t0, t1)
            train = purged[: max(purged.size - h, 0)]
            if purged.size == 0:
                raise ConfigError(
                    f"PurgedWalkForward: window {k} has no training samples left: the labels of all {stop - begin} "
                    f"samples of its training window ({begin}..{stop - 1}) reach its test window "
                    f"({s}..{s + self.test_size - 1}) and are purged; use a longer train_size or a gap "
                    "as long as the labels")
            if train.size == 0:
                raise ConfigError(
                    f"PurgedWalkForward: window {k} has no training samples left: of the {stop - begin} samples of "
                    f"its training window ({begin}..{stop - 1}) purging against its test window "
                    f"({s}..{s + self.test_size - 1}) keeps {purged.size} and the embargo "
                    f"({_embargo_text(self.embargo, h)}) drops them; lower the embargo or use a longer train_size")
            yield train, test


class CombinatorialPurgedCV(_Purged):
    """Combinatorial purged cross-validation (CPCV) and its backtest paths.

    The samples are cut into ``n_folds`` contiguous groups; every combination of
    ``n_test_folds`` groups is a test set (``C(n_folds, n_test_folds)`` splits), trained
    on the other groups after purging and embargo. Each group is tested in
    ``n_test_paths = n_test_folds * n_splits / n_folds`` splits; taking each group's
    ``p``-th test gives backtest path ``p``.

    ``split`` yields the test groups concatenated (scikit-learn API); :meth:`test_groups`
    gives them per split and :attr:`recombined_paths` which split tests each group in
    each path (the layout of skfolio's ``recombined_paths``).
    """

    def __init__(self, n_folds: int = 6, n_test_folds: int = 2, *, t0: Any, t1: Any, embargo: float = 0) -> None:
        if not 1 <= n_test_folds < n_folds:
            raise ConfigError(f"CombinatorialPurgedCV: need 1 <= n_test_folds < n_folds, got {n_test_folds}, {n_folds}")
        self.n_folds = n_folds
        self.n_test_folds = n_test_folds
        self.t0 = t0
        self.t1 = t1
        self.embargo = embargo

    @property
    def test_set_index(self) -> np.ndarray:
        """The test groups of each split, shape ``(n_splits, n_test_folds)``."""
        combos = list(itertools.combinations(range(self.n_folds), self.n_test_folds))
        return np.array(combos, dtype=np.int64).reshape(-1, self.n_test_folds)

    @property
    def n_test_paths(self) -> int:
        """Number of backtest paths."""
        return math.comb(self.n_folds - 1, self.n_test_folds - 1)

    @property
    def recombined_paths(self) -> np.ndarray:
        """``[group, path]`` -> the split whose test set gives that group in that path."""
        out = np.empty((self.n_folds, self.n_test_paths), dtype=np.int64)
        seen = np.zeros(self.n_folds, dtype=np.int64)
        for split, groups in enumerate(self.test_set_index):
            for g in groups:
                out[g, seen[g]] = split
                seen[g] += 1
        return out

    def get_n_splits(self, X: Any = None, y: Any = None, groups: Any = None) -> int:
        """``C(n_folds, n_test_folds)``."""
        return math.comb(self.n_folds, self.n_test_folds)

    def test_groups(self, n: int) -> list[list[np.ndarray]]:
        """Per split, the sample positions of each of its test groups."""
        bounds = fold_bounds(n, self.n_folds)
        return [[np.arange(bounds[g], bounds[g + 1]) for g in groups] for groups in self.test_set_index]

    def split(self, X: Any = None, y: Any = None, groups: Any = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(train, test)`` positions per combination."""
        t0, t1 = self._arrays(X)
        n = t0.shape[0]
        if n < self.n_folds:
            raise ConfigError(f"CombinatorialPurgedCV: {n} samples cannot make {self.n_folds} groups")
        h = _embargo_size(self.embargo, n)
        everything = np.arange(n)
        for k, parts in enumerate(self.test_groups(n)):
            test = np.concatenate(parts)
            mask = np.ones(n, dtype=bool)
            mask[test] = False
            yield self._trainable(f"split {k}", purge(everything[mask], test, t0, t1, h), test, n, h), test

    def backtest_paths(self, predictions: list[np.ndarray], n: int) -> np.ndarray:
        """Stitch per-split test predictions into ``n_test_paths`` full-length paths.

        Parameters
        ----------
        predictions
            One array per split, aligned with that split's ``test`` positions.
        n
            Number of samples.

        Returns
        -------
        numpy.ndarray
            Shape ``(n_test_paths, n)``.
        """
        bounds = fold_bounds(n, self.n_folds)
        groups = self.test_set_index
        paths = np.full((self.n_test_paths, n), np.nan)
        recombined = self.recombined_paths
        for g in range(self.n_folds):
            for p in range(self.n_test_paths):
                split = recombined[g, p]
                offset = 0
                for other in groups[split]:
                    if other == g:
                        break
                    offset += bounds[other + 1] - bounds[other]
                size = bounds[g + 1] - bounds[g]
                paths[p, bounds[g] : bounds[g + 1]] = predictions[split][offset : offset + size]
        return paths
