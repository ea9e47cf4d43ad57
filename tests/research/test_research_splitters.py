"""Splitters: skfolio's CPCV, the published purging rules written here, sklearn's TimeSeriesSplit, properties."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, TimeSeriesSplit, cross_val_predict, cross_val_score

from tradebus.errors import ConfigError
from tradebus.research.splitters import CombinatorialPurgedCV, PurgedKFold, PurgedWalkForward


def grid_labels(n: int, k: int | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sample times 0, 10, 20 ...; label i ends at sample i + k (capped at the last sample)."""
    t0 = np.arange(n, dtype=np.int64) * 10
    end = np.minimum(np.arange(n) + k, n - 1)
    return t0, t0[end]


# ---------------------------------------------------------------------------- CPCV vs skfolio


@pytest.mark.parametrize(("n", "n_folds", "n_test", "k", "h"), [(120, 6, 2, 3, 2), (100, 5, 3, 2, 0), (90, 3, 2, 1, 4)])
def test_cpcv_equals_skfolio_combinatorial_purged_cv(n: int, n_folds: int, n_test: int, k: int, h: int) -> None:
    from skfolio.model_selection import CombinatorialPurgedCV as SkfolioCPCV

    t0, t1 = grid_labels(n, k)
    ours = CombinatorialPurgedCV(n_folds, n_test, t0=t0, t1=t1, embargo=h)
    ref = SkfolioCPCV(n_folds=n_folds, n_test_folds=n_test, purged_size=k, embargo_size=h)
    X = np.zeros((n, 1))
    pairs = list(zip(ours.split(X), ref.split(X), strict=True))
    assert len(pairs) == ours.get_n_splits() == ref.n_splits
    for (train, test), (ref_train, ref_tests) in pairs:
        assert np.array_equal(train, ref_train)
        assert np.array_equal(test, np.concatenate(ref_tests))
    assert ours.n_test_paths == ref.n_test_paths
    assert np.array_equal(ours.recombined_paths, ref.recombined_paths)


def test_cpcv_backtest_paths_cover_every_sample_once_per_path() -> None:
    n = 60
    t0, t1 = grid_labels(n, 2)
    cv = CombinatorialPurgedCV(6, 2, t0=t0, t1=t1)
    # prediction of a sample in a split = split id * 1000 + position: identifies where it came from
    preds = [split * 1000.0 + test for split, (_, test) in enumerate(cv.split())]
    paths = cv.backtest_paths(preds, n)
    assert paths.shape == (5, n)
    assert np.array_equal(paths % 1000, np.tile(np.arange(n), (5, 1)))
    # each path uses each split's test groups at most once and each group comes from a split that tests it
    groups = cv.test_set_index
    for p in range(5):
        for g in range(6):
            split = int(paths[p, g * 10] // 1000)
            assert g in groups[split]
    # across paths, a group is predicted by every split that tests it, each once
    for g in range(6):
        used = sorted(int(v // 1000) for v in paths[:, g * 10])
        assert used == sorted(np.flatnonzero((groups == g).any(axis=1)).tolist())


# ---------------------------------------------------------------------------- K-fold vs the published rule


def reference_purged_kfold(t0: np.ndarray, t1: np.ndarray, n_splits: int, h: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """López de Prado's getTrainTimes, with the test end moved h samples later (getEmbargoTimes)."""
    labels = pd.Series(t1, index=t0)
    out = []
    for test in np.array_split(np.arange(len(t0)), n_splits):
        start, end = t0[test[0]], labels.iloc[test].max()
        pos_end = int(np.searchsorted(t0, end))
        end = t0[min(pos_end + h, len(t0) - 1)]
        train = labels.drop(labels.index[test])
        drop0 = train[(start <= train.index) & (train.index <= end)].index
        drop1 = train[(start <= train) & (train <= end)].index
        drop2 = train[(train.index <= start) & (end <= train)].index
        kept = train.drop(drop0.union(drop1).union(drop2))
        out.append((np.flatnonzero(np.isin(t0, kept.index)), test))
    return out


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), n_splits=st.integers(2, 7), h=st.integers(0, 5))
def test_purged_kfold_equals_lopez_de_prado_get_train_times(seed: int, n_splits: int, h: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(30, 150))
    t0, t1 = grid_labels(n, rng.integers(0, 8, n))
    ours = list(PurgedKFold(n_splits, t0=t0, t1=t1, embargo=h).split(np.zeros(n)))
    for (train, test), (ref_train, ref_test) in zip(ours, reference_purged_kfold(t0, t1, n_splits, h), strict=True):
        assert np.array_equal(test, ref_test)
        assert np.array_equal(train, ref_train)


def test_purged_kfold_without_overlap_equals_sklearn_kfold() -> None:
    from sklearn.model_selection import KFold

    t0 = np.arange(53)
    for (a, b), (c, d) in zip(PurgedKFold(5, t0=t0, t1=t0).split(), KFold(5).split(t0), strict=True):
        assert np.array_equal(a, c) and np.array_equal(b, d)


# ---------------------------------------------------------------------------- properties


def overlaps(train: np.ndarray, test: np.ndarray, t0: np.ndarray, t1: np.ndarray) -> bool:
    """Brute force: any training interval intersecting any test interval."""
    a0, a1 = t0[train][:, None], t1[train][:, None]
    b0, b1 = t0[test][None, :], t1[test][None, :]
    return bool(((a0 <= b1) & (b0 <= a1)).any())


def random_labels(draw_seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(draw_seed)
    t0 = np.cumsum(rng.integers(0, 5, n))  # ties allowed
    t1 = t0 + rng.integers(0, 30, n)  # ends off the sample grid
    return t0, t1


def clean_train(test: np.ndarray, t0: np.ndarray, t1: np.ndarray, h: int) -> np.ndarray:
    """Brute force: the samples outside ``test`` overlapping none of its intervals and not embargoed."""
    keep = np.ones(t0.shape[0], dtype=bool)
    keep[test] = False
    keep &= ~((t0[:, None] <= t1[test][None, :]) & (t0[test][None, :] <= t1[:, None])).any(axis=1)
    for block in np.split(test, np.flatnonzero(np.diff(test) != 1) + 1):
        keep[np.flatnonzero(t0 > t1[block].max())[:h]] = False
    return np.flatnonzero(keep)


def refused_split(splits: object, tests: list[np.ndarray], t0: np.ndarray, t1: np.ndarray, h: int) -> int | None:
    """Iterate ``splits``; the split refused for lack of training samples (brute force agreeing), if any."""
    done = 0
    try:
        for _ in splits:  # type: ignore[attr-defined]
            done += 1
    except ConfigError as exc:
        assert f" {done} has no training samples left" in str(exc)
        assert clean_train(tests[done], t0, t1, h).size == 0
        return done
    return None


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 100_000), n=st.integers(20, 120), k=st.integers(2, 6), h=st.integers(0, 4))
def test_kfold_properties_no_overlap_embargo_and_each_sample_tested_once(seed: int, n: int, k: int, h: int) -> None:
    t0, t1 = random_labels(seed, n)
    cv = PurgedKFold(k, t0=t0, t1=t1, embargo=h)
    if refused_split(cv.split(np.zeros(n)), np.array_split(np.arange(n), k), t0, t1, h) is not None:
        return
    seen = np.zeros(n, dtype=int)
    for train, test in cv.split(np.zeros(n)):
        seen[test] += 1
        assert not overlaps(train, test, t0, t1)
        assert not np.intersect1d(train, test).size
        end = t1[test].max()
        after = np.flatnonzero(t0 > end)[:h]
        assert not np.intersect1d(train, after).size
        assert np.array_equal(train, clean_train(test, t0, t1, h))
    assert (seen == 1).all()


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 100_000), n=st.integers(30, 120), h=st.integers(0, 3))
def test_cpcv_properties_no_overlap_with_any_test_group(seed: int, n: int, h: int) -> None:
    t0, t1 = random_labels(seed, n)
    cv = CombinatorialPurgedCV(5, 2, t0=t0, t1=t1, embargo=h)
    if refused_split(cv.split(), [np.concatenate(parts) for parts in cv.test_groups(n)], t0, t1, h) is not None:
        return
    tested = np.zeros(n, dtype=int)
    for train, test in cv.split():
        tested[test] += 1
        assert not overlaps(train, test, t0, t1)
        assert np.array_equal(train, clean_train(test, t0, t1, h))
    assert (tested == math.comb(4, 1)).all()


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 100_000), n=st.integers(40, 150), test_size=st.integers(3, 10),
       expanding=st.booleans(), gap=st.integers(0, 3), train_size=st.integers(1, 25), h=st.integers(0, 3))
def test_walk_forward_trains_only_on_the_purged_past(seed: int, n: int, test_size: int, expanding: bool, gap: int,
                                                     train_size: int, h: int) -> None:
    t0, t1 = random_labels(seed, n)
    cv = PurgedWalkForward(test_size, t0=t0, t1=t1, train_size=train_size, expanding=expanding, gap=gap, embargo=h)
    # brute force: window k tests k * test_size + train_size + gap onwards and trains on the train_size samples
    # (all of them, if expanding) that end gap samples before it, less those overlapping a test interval,
    # less the h latest of the rest
    expected = []
    for s in range(train_size + gap, n - test_size + 1, test_size):
        test = np.arange(s, s + test_size)
        window = np.arange(0 if expanding else s - gap - train_size, s - gap)
        train = np.setdiff1d(window, np.setdiff1d(np.arange(n), clean_train(test, t0, t1, 0)))
        expected.append((train[: len(train) - h] if len(train) > h else train[:0], test))
    empty = next((k for k, (train, _) in enumerate(expected) if train.size == 0), None)
    assert len(expected) == cv.get_n_splits()
    splits = []
    if empty is not None:
        with pytest.raises(ConfigError, match=rf"PurgedWalkForward: window {empty} has no training samples left"):
            splits.extend(cv.split(np.zeros(n)))
        assert len(splits) == empty
        return
    splits.extend(cv.split(np.zeros(n)))
    for (train, test), (want_train, want_test) in zip(splits, expected, strict=True):
        assert np.array_equal(test, want_test) and np.array_equal(train, want_train)
        assert train.max() < test.min() - gap
        assert not overlaps(train, test, t0, t1)


def test_walk_forward_window_whose_training_labels_all_reach_the_test_window_is_refused() -> None:
    # train_size 5, labels spanning 12 samples: every label of samples 0..4 ends at or after sample 5
    t0, t1 = grid_labels(60, 12)
    cv = PurgedWalkForward(10, t0=t0, t1=t1, train_size=5)
    with pytest.raises(ConfigError) as info:
        list(cv.split(np.zeros(60)))
    assert str(info.value) == (
        "PurgedWalkForward: window 0 has no training samples left: the labels of all 5 samples of its training "
        "window (0..4) reach its test window (5..14) and are purged; use a longer train_size or a gap as long as "
        "the labels")
    assert [tr.tolist() for tr, _ in PurgedWalkForward(10, t0=t0, t1=t1, train_size=5, gap=12).split()][0] == [0, 1, 2, 3, 4]


def test_walk_forward_hand_derived_rolling_windows_and_step() -> None:
    t0 = np.arange(20)
    t1 = t0 + 2  # each label spans 3 samples: the 2 before a test window overlap it
    cv = PurgedWalkForward(4, t0=t0, t1=t1, train_size=8, step=5, gap=1)
    got = [(tr.tolist(), te.tolist()) for tr, te in cv.split()]
    assert got == [
        (list(range(0, 7)), [9, 10, 11, 12]),  # window 0..7 (gap drops 8); label 7 (7..9) purged
        (list(range(5, 12)), [14, 15, 16, 17]),  # window 5..12 (gap drops 13); label 12 purged
    ]


@pytest.mark.parametrize(("expanding", "windows"), [(True, [(0, 8), (0, 12), (0, 16)]),
                                                     (False, [(0, 8), (4, 12), (8, 16)])])
def test_walk_forward_embargo_drops_the_training_samples_purging_kept_nearest_the_test_window(
        expanding: bool, windows: list[tuple[int, int]]) -> None:
    # 20 samples, labels 2 samples long, embargo 0.1 = 2 samples; 3 test windows of 4 end at the last sample:
    # tests 8..11, 12..15, 16..19 (default training window: the 8 samples before the first). Before test
    # window s, purging drops s-2 and s-1 (their labels end at s and s+1) and the embargo the 2 before them.
    t0 = np.arange(20)
    t1 = t0 + 2
    cv = PurgedWalkForward(4, t0=t0, t1=t1, n_splits=3, expanding=expanding, embargo=0.1)
    assert cv.train_windows(20) == windows
    got = [(tr.tolist(), te.tolist()) for tr, te in cv.split()]
    first = [0, 0, 0] if expanding else [0, 4, 8]
    assert got == [(list(range(first[0], 4)), [8, 9, 10, 11]),
                   (list(range(first[1], 8)), [12, 13, 14, 15]),
                   (list(range(first[2], 12)), [16, 17, 18, 19])]
    assert [tr.tolist() for tr, _ in PurgedWalkForward(4, t0=t0, t1=t1, n_splits=3, expanding=expanding,
                                                       embargo=2).split()] == [tr for tr, _ in got]
    # without an embargo only purging removes samples: training runs to s-3
    assert [tr[-1] for tr, _ in PurgedWalkForward(4, t0=t0, t1=t1, n_splits=3, expanding=expanding).split()] == [
        5, 9, 13]


def test_walk_forward_window_that_the_embargo_empties_is_refused_naming_it() -> None:
    t0 = np.arange(20)
    cv = PurgedWalkForward(4, t0=t0, t1=t0 + 2, train_size=4, embargo=2)
    with pytest.raises(ConfigError) as info:
        list(cv.split())
    assert str(info.value) == (
        "PurgedWalkForward: window 0 has no training samples left: of the 4 samples of its training window (0..3) "
        "purging against its test window (4..7) keeps 2 and the embargo (2 samples) drops them; lower the embargo "
        "or use a longer train_size")


def test_walk_forward_rolls_without_train_size_when_not_expanding() -> None:
    # 50 samples, 3 test windows of 10 placed to end at the last sample: tests 20..29, 30..39, 40..49;
    # the rolling window keeps the first training set's length (20, less the gap of 2)
    t0 = np.arange(50)
    rolling = PurgedWalkForward(10, t0=t0, t1=t0, n_splits=3, expanding=False, gap=2)
    assert [(tr.tolist(), te.tolist()) for tr, te in rolling.split()] == [
        (list(range(0, 18)), list(range(20, 30))),
        (list(range(10, 28)), list(range(30, 40))),
        (list(range(20, 38)), list(range(40, 50))),
    ]
    expanding = PurgedWalkForward(10, t0=t0, t1=t0, n_splits=3, expanding=True, gap=2)
    assert [(tr[0], tr[-1]) for tr, _ in expanding.split()] == [(0, 17), (0, 27), (0, 37)]


def test_walk_forward_expanding_without_overlap_equals_sklearn_time_series_split() -> None:
    t0 = np.arange(100)
    ours = PurgedWalkForward(10, t0=t0, t1=t0, n_splits=4, expanding=True, gap=2)
    ref = TimeSeriesSplit(n_splits=4, test_size=10, gap=2)
    for (a, b), (c, d) in zip(ours.split(), ref.split(t0), strict=True):
        assert np.array_equal(a, c) and np.array_equal(b, d)


@pytest.mark.parametrize("expanding", [False, True])
def test_walk_forward_with_train_size_and_n_splits_tests_up_to_the_last_sample_as_sklearn_does(expanding: bool) -> None:
    # 100 samples, 3 test windows of 20, rolling training of 30: scikit-learn's TimeSeriesSplit(3, test_size=20,
    # max_train_size=30) tests 40..59, 60..79, 80..99. Placing the first window right after train_size tested
    # 30..89 and left the last 10 samples, the most recent, in no test window.
    t0 = np.arange(100)
    ours = PurgedWalkForward(20, t0=t0, t1=t0, train_size=30, n_splits=3, expanding=expanding, gap=2)
    ref = TimeSeriesSplit(n_splits=3, test_size=20, gap=2, max_train_size=None if expanding else 30)
    got, want = list(ours.split()), list(ref.split(t0))
    assert len(got) == len(want) == ours.get_n_splits() == 3
    for (a, b), (c, d) in zip(got, want, strict=True):
        assert np.array_equal(a, c) and np.array_equal(b, d)
    assert ours.train_windows(100) == [(0 if expanding else s - 32, s - 2) for s in (40, 60, 80)]


@pytest.mark.parametrize("expanding", [False, True])
def test_walk_forward_refuses_n_splits_that_train_size_leaves_no_room_for_instead_of_running_fewer(
        expanding: bool) -> None:
    # 100 samples, 3 windows of 20 ending at the last sample start at 40, 60, 80. A train_size of 50 fits only
    # the last two (60 and 80 have >= 50 samples before them): it ran those two, a silently smaller evaluation
    # than the 3 asked for; now it is refused, naming what fits (n_splits <= 2, or train_size <= 40).
    t0 = np.arange(100)
    late = PurgedWalkForward(20, t0=t0, t1=t0, train_size=50, n_splits=3, expanding=expanding)
    message = (r"PurgedWalkForward: n_splits 3 test windows of 20 samples \(step 20\) ending at the last of 100 "
               r"samples start at sample 40, but train_size 50 \+ gap 0 samples must precede the first: only 2 fit; "
               r"give n_splits <= 2 or train_size <= 40 \(or a smaller test_size\)")
    with pytest.raises(ConfigError, match=message):
        late.get_n_splits()
    with pytest.raises(ConfigError, match=message):
        list(late.split())
    # what the message proposes runs: each as scikit-learn's TimeSeriesSplit places it
    for ours, ref in ((PurgedWalkForward(20, t0=t0, t1=t0, train_size=50, n_splits=2, expanding=expanding),
                       TimeSeriesSplit(n_splits=2, test_size=20, max_train_size=None if expanding else 50)),
                      (PurgedWalkForward(20, t0=t0, t1=t0, train_size=40, n_splits=3, expanding=expanding),
                       TimeSeriesSplit(n_splits=3, test_size=20, max_train_size=None if expanding else 40))):
        got, want = list(ours.split()), list(ref.split(t0))
        assert len(got) == len(want) == ours.get_n_splits()
        assert all(np.array_equal(a, c) and np.array_equal(b, d) for (a, b), (c, d) in zip(got, want, strict=True))
    # a gap counts against the room: 38 + 2 fits the first window at 40, 39 + 2 does not
    assert PurgedWalkForward(20, t0=t0, t1=t0, train_size=38, n_splits=3, gap=2).get_n_splits() == 3
    with pytest.raises(ConfigError, match=r"gap 2 samples must precede the first: only 2 fit; give n_splits <= 2 "
                                          r"or train_size <= 38"):
        PurgedWalkForward(20, t0=t0, t1=t0, train_size=39, n_splits=3, gap=2).get_n_splits()
    # a train_size leaving room for no window at all says none fit
    with pytest.raises(ConfigError, match=r"train_size 81 \+ gap 0 samples must precede the first: only 0 fit"):
        PurgedWalkForward(20, t0=t0, t1=t0, train_size=81, n_splits=3).get_n_splits()
    # ... and proposes no n_splits <= 0 (n_splits is at least 1), only the train_size that fits: 40 before sample 40
    with pytest.raises(ConfigError, match=r"only 0 fit; give train_size <= 40 \(or a smaller test_size\)$"):
        PurgedWalkForward(20, t0=t0, t1=t0, train_size=81, n_splits=3).get_n_splits()
    # 2 windows of 20 of 30 samples would start at -10: no train_size fits them
    with pytest.raises(ConfigError, match=r"only 0 fit; give a smaller train_size, test_size or n_splits, or more samples$"):
        PurgedWalkForward(20, t0=t0[:30], t1=t0[:30], train_size=50, n_splits=2).get_n_splits()


# ---------------------------------------------------------------------------- scikit-learn API


def test_splitters_work_with_cross_val_score_predict_and_grid_search() -> None:
    rng = np.random.default_rng(0)
    n = 400
    X = rng.normal(size=(n, 3))
    y = (X[:, 0] + rng.normal(0, 0.5, n) > 0).astype(int)
    t0, t1 = grid_labels(n, 5)
    kfold = PurgedKFold(4, t0=t0, t1=t1, embargo=0.01)
    assert cross_val_score(LogisticRegression(), X, y, cv=kfold).mean() > 0.7
    assert cross_val_predict(LogisticRegression(), X, y, cv=kfold).shape == (n,)
    search = GridSearchCV(LogisticRegression(), {"C": [0.01, 1.0]}, cv=CombinatorialPurgedCV(5, 2, t0=t0, t1=t1))
    search.fit(X, y)
    assert search.n_splits_ == 10
    search = GridSearchCV(LogisticRegression(), {"C": [0.1]}, cv=PurgedWalkForward(50, t0=t0, t1=t1, n_splits=3))
    assert search.fit(X, y).n_splits_ == 3


def test_splitters_reject_bad_input_with_a_clear_message() -> None:
    t0, t1 = grid_labels(10, 1)
    with pytest.raises(ConfigError, match="time order"):
        list(PurgedKFold(2, t0=t0[::-1], t1=t1[::-1]).split())
    with pytest.raises(ConfigError, match="X has 5 samples"):
        list(PurgedKFold(2, t0=t0, t1=t1).split(np.zeros(5)))
    with pytest.raises(ConfigError, match="t1 < t0"):
        list(PurgedKFold(2, t0=t0, t1=t0 - 1).split())


@pytest.mark.parametrize("splitter", [PurgedKFold(3, t0=np.arange(30) * 10, t1=np.minimum(np.arange(30) + 1, 29) * 10,
                                                  embargo=25),
                                      CombinatorialPurgedCV(3, 1, t0=np.arange(30) * 10,
                                                            t1=np.minimum(np.arange(30) + 1, 29) * 10, embargo=25)])
def test_a_split_left_without_training_samples_is_refused_naming_it_the_embargo_and_the_counts(splitter: object) -> None:
    # split 0 tests samples 0..9; label 9 ends at sample 10 (purged), the embargo takes 11..29: nothing to train on
    name = "PurgedKFold: fold 0" if isinstance(splitter, PurgedKFold) else "CombinatorialPurgedCV: split 0"
    with pytest.raises(ConfigError) as info:
        list(splitter.split(np.zeros(30)))
    assert str(info.value) == (f"{name} has no training samples left: of 30 samples 10 are tested and the other 20 "
                               "are purged or embargoed (embargo 25 samples); lower the embargo or use more samples")


def test_an_embargo_that_is_neither_a_sample_count_nor_a_fraction_is_refused() -> None:
    t0, t1 = grid_labels(40, 1)
    with pytest.raises(ConfigError, match=r"embargo 1.5 is neither a number of samples \(a whole number\) "
                                          r"nor a fraction of the samples \(< 1\)"):
        list(PurgedKFold(2, t0=t0, t1=t1, embargo=1.5).split())
    with pytest.raises(ConfigError, match="embargo 2.5 is neither"):
        list(CombinatorialPurgedCV(4, 2, t0=t0, t1=t1, embargo=2.5).split())
    whole = [tr.tolist() for tr, _ in PurgedKFold(2, t0=t0, t1=t1, embargo=2.0).split()]
    assert whole == [tr.tolist() for tr, _ in PurgedKFold(2, t0=t0, t1=t1, embargo=2).split()]
    assert whole[0] == list(range(23, 40))  # test 0..19, label 19 ends at 20 (purged), embargo 21, 22


def test_a_fold_left_with_fewer_training_samples_than_asked_is_refused_naming_the_counts() -> None:
    # labels 12 samples long, 4 folds of 10, embargo 7: fold 1 tests 0-based 10..19, whose labels run to 31;
    # purging takes 0..9 (their labels reach 10) and 20..31, the embargo 32..38: only sample 39 is left
    t0 = np.arange(40)
    t1 = np.minimum(t0 + 12, 39)
    sizes = [len(train) for train, _ in PurgedKFold(4, t0=t0, t1=t1, embargo=7).split()]
    assert sizes == [11, 1, 8, 18]  # by default a fold trains on whatever is left
    with pytest.raises(ConfigError) as info:
        list(PurgedKFold(4, t0=t0, t1=t1, embargo=7, min_train=10).split())
    assert str(info.value) == ("PurgedKFold: fold 1 has only 1 training sample left, fewer than the 10 asked for: of "
                               "40 samples 10 are tested and the other 29 are purged or embargoed (embargo 7 samples); "
                               "lower the embargo or use more samples")
    # without the embargo the smallest folds keep 8: exactly enough for min_train 8
    assert [len(train) for train, _ in PurgedKFold(4, t0=t0, t1=t1, min_train=8).split()] == [18, 8, 8, 18]
