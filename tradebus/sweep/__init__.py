"""Parameter sweeps on Ray: grid and Optuna TPE, walk-forward optimisation, stress variants.

``tradebus sweep CONFIG --space SPACE.yaml`` (:mod:`tradebus.sweep.cli`).

* :mod:`~tradebus.sweep.space`: the space file (parameters by dotted config path, objectives);
* :mod:`~tradebus.sweep.trial`: one trial as a worker runs it (config + overrides -> metrics);
* :mod:`~tradebus.sweep.executor`: Ray tasks, a bounded number in flight;
* :mod:`~tradebus.sweep.store`: one Parquet file per finished trial (resume skips them);
* :mod:`~tradebus.sweep.runner`: grid / TPE driver, best trial, walk-forward, stress report;
* :mod:`~tradebus.sweep.walkforward`: train/test folds and stitched out-of-sample equity;
* :mod:`~tradebus.sweep.stress`: flash crash, volatility spike, cost and latency multipliers.
"""
