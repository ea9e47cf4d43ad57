"""Research: datasets from the feature bank, labels, purged cross-validation, models, checks.

Modules (one concept each):

* :mod:`~tradebus.research.dataset`: the bank run in batch over catalog data (batch = live),
  slower timeframes joined after their bar closed;
* :mod:`~tradebus.research.labels`: forward returns, triple-barrier and meta-labels, CUSUM
  event sampling, sample weights;
* :mod:`~tradebus.research.splitters`: purged K-fold, purged walk-forward, combinatorial
  purged CV (scikit-learn splitter API);
* :mod:`~tradebus.research.model`: a fitted model as a per-event feature, calibration,
  files bound to their feature specs; :mod:`~tradebus.research.strategy` trades it;
* :mod:`~tradebus.research.walkforward`: walk-forward retraining backtests on the kernel;
* :mod:`~tradebus.research.lookahead`: the lookahead detector;
* :mod:`~tradebus.research.alpha`: IC, turnover, quantile returns, PSR/DSR, Monte Carlo, cost stress;
* :mod:`~tradebus.research.edge`: multi-horizon expected-return (edge) models: tuning, pruning,
  calibration on purged out-of-fold predictions; :mod:`~tradebus.research.edge_strategy` trades
  an edge through gates with brackets; :mod:`~tradebus.research.edge_walkforward` retrains and
  trades it walk-forward; :mod:`~tradebus.research.tradelog` analyses the trades by exit reason;
* :mod:`~tradebus.research.ml_gated`: the ML-gated system (``tradebus research run``);
* :mod:`~tradebus.research.config` and :mod:`~tradebus.research.cli`: ``tradebus research ...``.
* :mod:`~tradebus.research.output`: strict JSON (an undefined figure is ``null``) and atomic file writes.

Models, calibration, walk-forward and alpha reports need the ``research`` extra
(scikit-learn, XGBoost, SciPy). The core never imports this package.
"""
