"""Running trials on Ray: a local runtime with N workers, or an existing cluster.

:class:`RayExecutor` starts a local Ray runtime (``num_cpus = workers``, no dashboard,
quiet logs) or connects to ``address``; if Ray is already initialised in the process
(a test fixture, a notebook) it uses that runtime and leaves it running. Each trial is
one Ray task of one CPU running :func:`~tradebus.sweep.trial.run_trial` on a
:class:`~tradebus.sweep.trial.TrialSpec` (paths and parameters only; the worker reads the
catalog). :meth:`RayExecutor.run` keeps at most ``2 * workers`` tasks in flight and yields
results as they finish, so neither the driver nor Ray holds more than a few results
at a time however long the sweep.

Workers import tradebus from the driver's environment (``PYTHONPATH`` and the installed
package are inherited by a local runtime; on a cluster every node needs tradebus and
the catalog at the same path).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator
from typing import Any

from loguru import logger

from tradebus.errors import ConfigError
from tradebus.sweep.trial import TrialSpec, run_trial

__all__ = ["RayExecutor"]


class RayExecutor:
    """Runs :class:`TrialSpec` s on Ray (use as a context manager).

    Parameters
    ----------
    workers
        Worker processes of a local runtime (default: the machine's cores).
    address
        Address of an existing cluster (``"ray://host:10001"`` or a GCS ``"host:port"``);
        ``workers`` is then the cluster's CPU count.
    """

    def __init__(self, workers: int | None = None, address: str | None = None) -> None:
        if workers is not None and workers < 1:
            raise ConfigError(f"--workers must be >= 1, got {workers}")
        self.workers = workers or os.cpu_count() or 1
        self.address = address
        self._owned = False
        self._remote: Any = None

    def __enter__(self) -> RayExecutor:
        import ray

        if not ray.is_initialized():
            options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": "ERROR"}
            if self.address is not None:
                ray.init(address=self.address, **options)
            else:
                ray.init(num_cpus=self.workers, **options)
            self._owned = True
        if self.address is not None or not self._owned:
            self.workers = max(1, int(ray.cluster_resources().get("CPU", 1)))
        self._remote = ray.remote(num_cpus=1, max_retries=0)(run_trial)
        logger.info("ray: {} worker(s){}", self.workers, f" at {self.address}" if self.address else "")
        return self

    def __exit__(self, *exc: object) -> None:
        import ray

        if self._owned:
            ray.shutdown()

    def run(self, specs: Iterable[TrialSpec], in_flight: int | None = None) -> Iterator[tuple[TrialSpec, dict[str, Any]]]:
        """Yield ``(spec, row)`` for each spec as its trial finishes (completion order).

        ``row["wall_s"]`` is the time from submission to the result arriving in the driver.
        """
        import ray

        limit = in_flight or 2 * self.workers
        pending: dict[Any, tuple[TrialSpec, float]] = {}
        queue = iter(specs)
        exhausted = False
        while True:
            while not exhausted and len(pending) < limit:
                spec = next(queue, None)
                if spec is None:
                    exhausted = True
                    break
                pending[self._remote.remote(spec)] = (spec, time.perf_counter())
            if not pending:
                return
            ready, _ = ray.wait(list(pending), num_returns=1)
            spec, t0 = pending.pop(ready[0])
            row = ray.get(ready[0])
            row["wall_s"] = time.perf_counter() - t0
            yield spec, row
