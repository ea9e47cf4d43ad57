"""Running trials on Ray: a local runtime with N workers, or an existing cluster.

:class:`RayExecutor` starts a local Ray runtime (``num_cpus = workers``, no dashboard,
quiet logs) or connects to ``address``; if Ray is already initialised in the process
(a test fixture, a notebook) it uses that runtime and leaves it running. A Ray task of one
CPU runs :func:`~tradebus.sweep.trial.run_trial` on one or a few consecutive
:class:`~tradebus.sweep.trial.TrialSpec` s (paths and parameters only; the worker reads the
catalog): as many as take about :data:`TASK_SECONDS` at the speed of the last task's trials,
so that Ray's own cost per task (a few milliseconds) stays small next to trials of a few
milliseconds, and never more than leave every worker a share of a known list of specs.
:meth:`RayExecutor.run` keeps at most ``2 * workers`` tasks in flight and yields results
as they finish, so neither the driver nor Ray holds more than a few results at a time
however long the sweep.

Workers import tradebus from the driver's environment (``PYTHONPATH`` and the installed
package are inherited by a local runtime; on a cluster every node needs tradebus and
the catalog at the same path).
"""

from __future__ import annotations

import math
import os
import signal
import socket
import threading
import time
from collections.abc import Iterable, Iterator, Sized
from itertools import islice
from typing import Any

from loguru import logger

from tradebus.errors import ConfigError, TradebusError
from tradebus.sweep.trial import TrialSpec, run_trial

__all__ = ["CONNECT_TIMEOUT_S", "MAX_TRIALS_PER_TASK", "TASK_SECONDS", "RayExecutor", "run_trials"]

#: A task runs as many trials as take about this long (estimated from the last task's trials).
TASK_SECONDS = 0.1
#: At most this many trials in one task.
MAX_TRIALS_PER_TASK = 64
#: Seconds to wait for a TCP connection to ``--address`` before refusing it (Ray's own wait has no bound).
CONNECT_TIMEOUT_S = 5.0


def run_trials(specs: list[TrialSpec]) -> list[dict[str, Any]]:
    """Run ``specs`` one after the other in this worker; return their rows in the same order."""
    return [run_trial(spec) for spec in specs]


class RayExecutor:
    """Runs :class:`TrialSpec` s on Ray (use as a context manager).

    Parameters
    ----------
    workers
        Worker processes of a local runtime (default: the machine's cores).
    address
        Address of an existing cluster (``"ray://host:10001"`` or a GCS ``"host:port"``);
        ``workers`` is then the cluster's CPU count (giving both is a :class:`ConfigError`).

    Raises
    ------
    ConfigError
        ``workers`` below 1, ``workers`` with ``address``, an ``address`` that is not ``host:port``,
        ``ray://host:port``, ``auto`` or ``local``, or one where nothing accepts a TCP connection
        within :data:`CONNECT_TIMEOUT_S` (``ray.init`` would retry for minutes).
    """

    def __init__(self, workers: int | None = None, address: str | None = None) -> None:
        if workers is not None and workers < 1:
            raise ConfigError(f"--workers must be >= 1, got {workers}")
        if workers is not None and address is not None:
            # a cluster runs as many trials at once as it has CPUs: --workers would be ignored
            raise ConfigError(
                f"--workers {workers} with --address {address}: an existing cluster uses all its CPUs; "
                "give one or the other"
            )
        if address is not None:
            _check_reachable(address)
        self.workers = workers or os.cpu_count() or 1
        self.address = address
        self._owned = False
        self._remote: Any = None

    def __enter__(self) -> RayExecutor:
        import ray

        if not ray.is_initialized():
            options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": "ERROR"}
            # ray.init replaces the driver's SIGTERM handler with sys.exit(15): put the caller's back
            # (the CLI's stops the sweep as Ctrl-C does, exit 143, saying what is saved)
            main = threading.current_thread() is threading.main_thread()
            sigterm = signal.getsignal(signal.SIGTERM) if main else None
            if self.address is not None:
                ray.init(address=self.address, **options)
            else:
                ray.init(num_cpus=self.workers, **options)
            if sigterm is not None:
                signal.signal(signal.SIGTERM, sigterm)
            self._owned = True
        if self.address is not None or not self._owned:
            self.workers = max(1, int(ray.cluster_resources().get("CPU", 1)))
        self._remote = ray.remote(num_cpus=1, max_retries=0)(run_trials)
        logger.info("ray: {} worker(s){}", self.workers, f" at {self.address}" if self.address else "")
        return self

    def __exit__(self, *exc: object) -> None:
        import ray

        if self._owned:
            ray.shutdown()

    def run(self, specs: Iterable[TrialSpec], in_flight: int | None = None) -> Iterator[tuple[TrialSpec, dict[str, Any]]]:
        """Yield ``(spec, row)`` for each spec as its task finishes (completion order; spec order within a task).

        ``row["wall_s"]`` is the time from submitting the trial's task to its result arriving
        in the driver.

        Raises
        ------
        TradebusError
            A task returned no rows (its worker died): names its trials and their parameters.
        """
        import ray

        limit = in_flight or 2 * self.workers
        left = len(specs) if isinstance(specs, Sized) else None
        pending: dict[Any, tuple[list[TrialSpec], float]] = {}
        queue = iter(specs)
        per_task = 1  # until a task says how long a trial takes here
        exhausted = False
        while True:
            while not exhausted and len(pending) < limit:
                size = per_task if left is None else max(1, min(per_task, math.ceil(left / self.workers)))
                batch = list(islice(queue, size))
                if not batch:
                    exhausted = True
                    break
                if left is not None:
                    left -= len(batch)
                pending[self._remote.remote(batch)] = (batch, time.perf_counter())
            if not pending:
                return
            ready, _ = ray.wait(list(pending), num_returns=1)
            batch, t0 = pending.pop(ready[0])
            try:
                rows = ray.get(ready[0])
            except ray.exceptions.RayError as exc:
                raise _task_failed(batch, exc) from None
            wall = time.perf_counter() - t0
            trial_s = sum(row["worker_s"] for row in rows) / len(rows)
            per_task = max(1, min(MAX_TRIALS_PER_TASK, int(TASK_SECONDS / max(trial_s, 1e-6))))
            for spec, row in zip(batch, rows, strict=True):
                row["wall_s"] = wall
                yield spec, row


def _check_reachable(address: str) -> None:
    """Refuse a cluster ``address`` that is malformed or where nothing accepts a TCP connection.

    ``auto`` is the address ``ray.init`` would join: the ``RAY_ADDRESS`` environment variable's
    when it is set, else the last ``ray start``'s or a raylet's on this machine (:func:`_auto_address`).
    ``local`` is left to Ray. Ray connects to a loopback host through this node's address, so
    either one accepting will do.
    """
    if address == "auto" and os.environ.get("RAY_ADDRESS"):
        try:
            _check_reachable(os.environ["RAY_ADDRESS"])
        except ConfigError as exc:
            raise ConfigError(f"--address auto is RAY_ADDRESS={os.environ['RAY_ADDRESS']}: {exc}") from None
        return
    if address == "auto":
        found = _auto_address()
        try:
            _check_reachable(found)
        except ConfigError as exc:
            raise ConfigError(f"--address auto found {found} (RAY_ADDRESS is not set): {exc}") from None
        return
    if address == "local":
        return
    host, _, port_text = address.removeprefix("ray://").rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    port = int(port_text) if port_text.isdigit() else 0
    if not host or not 0 < port < 65536:
        raise ConfigError(f"--address {address}: not an address; give host:port, ray://host:port, auto or local")
    hosts = [host]
    if host in ("localhost", "127.0.0.1", "::1"):
        import ray.util

        hosts.append(ray.util.get_node_ip_address())
    problems = []
    for name in dict.fromkeys(hosts):
        try:
            with socket.create_connection((name, port), timeout=CONNECT_TIMEOUT_S):
                return
        except OSError as exc:
            problems.append(f"{name}:{port}: {exc.strerror or exc}")
    raise ConfigError(
        f"--address {address}: no Ray cluster reachable ({'; '.join(problems)}); start one "
        "(ray start --head) or check the host and port"
    )


def _auto_address() -> str:
    """The cluster ``ray.init(address="auto")`` joins when ``RAY_ADDRESS`` is not set.

    Ray reads the address the last ``ray start`` wrote into its temp directory (``RAY_TMPDIR``,
    else ``TMPDIR``, else ``/tmp``) and any raylet process running on this machine; finding
    none, ``ray.init`` raises a ``ConnectionError``, refused here as a :class:`ConfigError`.
    """
    # ray.init's own lookup (ray has no public function for it), so that both find the same cluster
    from ray._common.utils import get_ray_address_file
    from ray._private.services import get_ray_address_from_environment

    try:
        return str(get_ray_address_from_environment("auto", None))
    except ConnectionError:
        raise ConfigError(
            f"--address auto: no running Ray cluster found (RAY_ADDRESS is not set, no {get_ray_address_file(None)} "
            "and no raylet on this machine); start one (ray start --head), give its address, or leave --address "
            "out to run on a local runtime"
        ) from None


def _task_failed(batch: list[TrialSpec], exc: Exception) -> TradebusError:
    """The error of a Ray task that returned no rows (its worker died, ...), naming its trials and parameters.

    A trial's own exception is its row's error (:func:`~tradebus.sweep.trial.run_trial`); this is
    everything else: the worker process exiting or killed (out of memory), a node lost.
    """
    trials = "; ".join(
        f"{spec.number} ({', '.join(f'{path}={value}' for path, value in spec.params.items())})" for spec in batch
    )
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return TradebusError(
        f"trial{'s' if len(batch) > 1 else ''} {trials}: the Ray task running "
        f"{'them' if len(batch) > 1 else 'it'} failed ({type(exc).__name__}: {reason}); the trials stored "
        "before it are kept: the same command resumes (and runs these trials again)"
    )
