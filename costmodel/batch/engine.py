"""Run a batch on Dask: one task per target, one row per task, whatever the task does.

By default a `distributed.LocalCluster` of worker processes (one thread each) on this machine;
with a scheduler address, an existing cluster, used as it is configured. Every worker imports
torch and the tracer once (a worker plugin, re-run on a restarted worker) and then analyses
target after target.

How a row survives its model:

- raises: the task catches it; the row says error and the one line (costmodel/batch/work.py);
- hangs: the task announces its start (a worker event); past --timeout the client cancels it,
  writes a timeout row and restarts that worker through its nanny, which ends the stuck thread;
- kills its worker (segfault, os._exit, the nanny's memory limit): the scheduler reports
  `KilledWorker` for it. The local cluster is made with ``allowed-failures: 0``, so the target
  is not retried on worker after worker, and ``worker-saturation: 1.0``, so a worker holds no
  queued target that its death would take along. A target that was not yet running when its
  worker died is submitted once more; one that was running gets the error row.
"""

from __future__ import annotations

import logging
import os
import queue
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

from costmodel.errors import CostModelError

from .rows import FAILED, Output
from .targets import Target
from .work import FINISHED, STARTED, Options, analyse, one_line

#: the local cluster's scheduler settings (see the module's docstring)
LOCAL_CONFIG: dict[str, Any] = {
    "distributed.scheduler.allowed-failures": 0,
    "distributed.scheduler.worker-saturation": 1.0,
}
WORKER_DIED = ("its worker died while analysing it (a crash such as a segfault or os._exit, "
               "or the worker was killed for exceeding its memory limit)")
POLL_S = 0.1


def _dask() -> Any:
    try:
        import dask
        import distributed
    except ImportError:
        raise CostModelError("costmodel batch runs on Dask: pip install 'costmodel[batch]' "
                             "(or pip install 'dask[distributed]')") from None
    return dask, distributed


def default_workers() -> int:
    """The cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def local_cluster(workers: int, quiet: bool = True) -> Any:
    """A LocalCluster as `costmodel batch` makes it: worker processes of one thread, no
    dashboard (the scheduler's HTTP routes on a free port, not 8787, which another cluster
    may hold), the scheduler settings of LOCAL_CONFIG."""
    dask, distributed = _dask()
    with dask.config.set(LOCAL_CONFIG):
        return distributed.LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
            scheduler_kwargs={"dashboard_address": ":0"},
            silence_logs=logging.CRITICAL if quiet else logging.WARNING)


def _warm_up_plugin() -> Any:
    from distributed import WorkerPlugin

    class WarmUp(WorkerPlugin):
        """Import torch, the tracer and the formulas, and trace once, when a worker starts:
        not in its first task, whose --timeout clock would count them."""

        name = "costmodel-batch-warm-up"

        def setup(self, worker: Any) -> None:
            from torch import nn

            from costmodel.analysis import analyze

            analyze(nn.Linear(2, 2), input_shape=(1, 2))  # the tracer's own first-use costs

    return WarmUp()


@contextmanager
def connect(scheduler: str | None, workers: int | None, quiet: bool = True
            ) -> Iterator[Any]:
    """A Client on the cluster at `scheduler`, else on a new LocalCluster of `workers`."""
    _, distributed = _dask()
    cluster = None
    if scheduler is None:
        if workers is not None and workers < 1:
            raise CostModelError("--workers must be at least 1")
        cluster = local_cluster(workers or default_workers(), quiet)
        client = distributed.Client(cluster, set_as_default=False)
    else:
        try:
            client = distributed.Client(scheduler, set_as_default=False)
        except Exception as exc:  # a bad address, a refused or timed-out connection
            raise CostModelError(f"{scheduler}: cannot reach the Dask scheduler: "
                                 f"{one_line(exc)}") from None
    plugin = _warm_up_plugin()
    try:
        client.register_plugin(plugin)
        yield client
    finally:
        if cluster is None:  # leave a shared cluster as it was found
            with suppress(Exception):  # the cluster may be gone: nothing left to tidy
                client.unregister_worker_plugin(plugin.name)
        client.close()
        if cluster is not None:
            cluster.close()


class _Run:
    """The bookkeeping of one batch: futures by key, start events, rows written."""

    def __init__(self, client: Any, options: Options, output: Output,
                 timeout: float | None, on_row: Callable[[dict[str, Any]], None]) -> None:
        self.client, self.options, self.output, self.timeout = client, options, output, timeout
        self.on_row = on_row
        self.token = uuid.uuid4().hex[:8]
        self.targets: dict[str, Target] = {}  # key -> target
        self.futures: dict[str, Any] = {}  # key -> future, while it is pending
        self.started: dict[str, tuple[float, str]] = {}  # key -> (monotonic start, worker)
        self.attempts: dict[str, int] = {}  # target -> submissions
        self.restarted: dict[str, float] = {}  # worker -> when we restarted it
        self.failed = 0
        self.rows: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()

    def on_started(self, event: tuple[float, dict[str, Any]]) -> None:
        _, message = event
        self.started[message["key"]] = (time.monotonic(), message["worker"])

    def on_finished(self, event: tuple[float, dict[str, Any]]) -> None:
        self.rows.put(event[1])  # written by the main thread, in `collect`

    def collect(self) -> None:
        """Write the rows the workers sent since the last call."""
        while not self.rows.empty():
            message = self.rows.get()
            future = self.futures.pop(message["key"], None)
            if future is not None:  # not timed out meanwhile
                self.write(message["row"])
                future.cancel()  # the scheduler forgets it: a worker's death won't redo it

    def submit(self, target: Target) -> Any:
        self.attempts[target.target] = self.attempts.get(target.target, 0) + 1
        key = f"costmodel-batch-{self.token}-{len(self.targets)}"
        self.targets[key] = target
        future = self.client.submit(analyse, target.target, target.family, self.options,
                                    key=key, pure=False)
        self.futures[key] = future
        return future

    def running(self) -> int:
        return sum(1 for key in self.futures if key in self.started)

    def write(self, row: dict[str, Any]) -> None:
        self.output.write(row)
        if row["status"] in FAILED:
            self.failed += 1
        self.on_row(row)

    def finished(self, future: Any) -> Any | None:
        """Write the row of a future that ended without sending its row (an error of the
        cluster's, its worker's death); a future to wait for instead, if resubmitted."""
        self.collect()  # its row may have come meanwhile
        key = future.key
        if key not in self.futures:
            return None  # its row is written (or it timed out)
        target = self.targets[key]
        if future.status == "finished":  # its row is still on its way: take the result
            self.futures.pop(key)
            self.write(future.result())
            return None
        self.futures.pop(key)
        result = future.exception() if future.status == "error" else None
        from distributed import KilledWorker

        began = self.started.get(key)
        if isinstance(result, KilledWorker):
            worker = getattr(result.last_worker, "address", None)
            innocent = began is None or (began[1] == worker and worker in self.restarted)
            if innocent and self.attempts[target.target] < 2:
                return self.submit(target)  # its worker died of another target
            message = WORKER_DIED
        elif result is not None:  # the task cannot raise for a model's fault: the cluster's
            message = one_line(result)
        else:
            message = f"the cluster dropped the task ({future.status})"
        seconds = time.monotonic() - began[0] if began else None
        self.write({"target": target.target, "family": target.family, "status": "error",
                    "error": message, "seconds": _round(seconds)})
        return None

    def expire(self) -> None:
        """Cancel the tasks running past the timeout and restart their workers."""
        if self.timeout is None:
            return
        now = time.monotonic()
        stuck = [(key, worker) for key, (begin, worker) in list(self.started.items())
                 if key in self.futures and now - begin > self.timeout]
        for key, _ in stuck:
            target = self.targets[key]
            self.futures.pop(key).cancel()
            self.write({"target": target.target, "family": target.family, "status": "timeout",
                        "error": f"still running after {self.timeout:g} s (--timeout)",
                        "seconds": _round(now - self.started[key][0])})
        if not stuck:
            return
        alive = set(self.client.scheduler_info(n_workers=-1)["workers"])
        workers = sorted({worker for _, worker in stuck} & alive)  # not those gone already
        for worker in workers:
            self.restarted[worker] = now
        if workers:
            # a nanny ends the process and starts a fresh one; a worker without one is retired
            with suppress(KeyError, ValueError):  # gone meanwhile; no nanny to restart it
                self.client.restart_workers(workers, raise_for_error=False)


def _round(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 3)


def run(targets: list[Target], options: Options, output: Output, workers: int | None = None,
        scheduler: str | None = None, timeout: float | None = None, progress: bool = True,
        quiet_logs: bool = True) -> None:
    """Analyse every target not already in `output` (--resume), writing rows as they come."""
    if timeout is not None and timeout <= 0:
        raise CostModelError("--timeout must be a positive number of seconds")
    done = output.done()
    todo = [t for t in targets if t.target not in done]
    if not todo:
        return
    from distributed import as_completed
    from tqdm import tqdm

    with connect(scheduler, workers, quiet_logs) as client, \
            tqdm(total=len(todo), unit="model", disable=not progress, dynamic_ncols=True,
                 desc="batch") as bar:
        output.start()
        batch = _Run(client, options, output, timeout, lambda row: bar.update(1))
        client.subscribe_topic(STARTED, batch.on_started)
        client.subscribe_topic(FINISHED, batch.on_finished)
        try:
            shown = ""
            pending = as_completed([batch.submit(t) for t in todo], loop=client.loop)
            while batch.futures:
                batch.collect()
                ended = pending.next_batch(block=False)
                for future in ended:
                    again = batch.finished(future)
                    if again is not None:
                        pending.add(again)
                batch.expire()
                state = (f"done={bar.n - batch.failed} failed={batch.failed} "
                         f"running={batch.running()}")
                if state != shown:
                    bar.set_postfix_str(state)
                    shown = state
                time.sleep(POLL_S)
        finally:
            client.unsubscribe_topic(STARTED)
            client.unsubscribe_topic(FINISHED)
            for future in batch.futures.values():
                future.cancel()
