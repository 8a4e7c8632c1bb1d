"""The workers' `/metrics` endpoint: one per host and port, summing every process of every worker there.

Why multiprocess mode for every pool: under `--pool prefork` the moderations run in forked children, each
with its own memory, while Prometheus scrapes one port. prometheus_client's multiprocess mode keeps every
process's values in mmap files in one directory (`multiproc.prepare_multiprocess`), and the collector here,
in the main process, sums them at scrape time. The `threads` pool (one process) takes the same path, so both
pools are counted the same way and the end-to-end test covers both. Several workers on one host share the
directory; the one whose main process holds the port serves the sum, the others wait to take over (`serve`).

Children that exit are marked dead by `worker_process_shutdown` (see `wiring`); at every scrape the live
gauges of processes that died silently (SIGKILL, OOM) are dropped as well. Counters and histograms of dead
children stay: what they counted happened. Queue depths are read from Redis at scrape time. Process metrics
(`process_*{pid}`, `python_info`) are read from /proc for each live process at scrape time (`ProcessesCollector`).

Imports prometheus_client: import this module only after `prepare_multiprocess()`.
"""

from __future__ import annotations

import errno
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import redis
import structlog
from prometheus_client import PLATFORM_COLLECTOR, CollectorRegistry, ProcessCollector, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector
from prometheus_client.values import MutexValue, ValueClass

from worker.observability.multiproc import dead_pids, live_pids
from worker.observability.queue_depth import queue_depths

log = structlog.get_logger(__name__)


class SweepingMultiProcessCollector(Collector):
    """Sums every process's files; first forgets the live gauges of processes that no longer exist."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._inner = MultiProcessCollector(None, str(path))  # type: ignore[no-untyped-call]

    def collect(self) -> Iterable[Metric]:
        for pid in dead_pids(self._path):
            mark_process_dead(pid, str(self._path))  # type: ignore[no-untyped-call]
        metrics: Iterable[Metric] = self._inner.collect()  # type: ignore[no-untyped-call]
        return metrics


class QueueDepthCollector(Collector):
    """`llavaguard_queue_depth{queue}`, `llavaguard_unacked_messages` and `llavaguard_redis_up`, read live."""

    def __init__(self, client: redis.Redis[bytes], queues: Sequence[str], transport_options: dict[str, Any]):
        self._client = client
        self._queues = list(dict.fromkeys(queues))
        self._options = transport_options

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("llavaguard_redis_up", "1 when this worker's metrics endpoint could read Redis.")
        try:
            depths, unacked = queue_depths(self._client, self._queues, self._options)
        except redis.RedisError as exc:
            log.warning("metrics.redis_unreachable", error=str(exc))
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        depth = GaugeMetricFamily(
            "llavaguard_queue_depth", "Messages waiting in each queue, all priorities together.", labels=["queue"]
        )
        for queue, count in depths.items():
            depth.add_metric([queue], count)
        yield depth
        yield GaugeMetricFamily(
            "llavaguard_unacked_messages",
            "Messages delivered to workers and not yet acknowledged (running or waiting for a retry).",
            value=unacked,
        )


class ProcessesCollector(Collector):
    """prometheus_client's `process_*` metrics for every live process writing into `path`, labelled `pid`.

    Why a `pid` label rather than the standard unlabelled series: one endpoint answers for the serving
    process and every pool child (prefork) or uvicorn worker, and their memory and CPU do not sum into
    anything meaningful per process (an OOM kill hits one child). Only live processes are reported, so
    the series of an exited child end with it. `sum(process_resident_memory_bytes)` is the host's total.
    """

    def __init__(self, path: Path) -> None:
        self._path = path

    def collect(self) -> Iterator[Metric]:
        merged: dict[str, Metric] = {}
        for pid in sorted(live_pids(self._path) | {os.getpid()}):
            for family in ProcessCollector(pid=_constant(pid), registry=None).collect():
                target = merged.setdefault(family.name, Metric(family.name, family.documentation, family.type))
                for sample in family.samples:
                    target.samples.append(sample._replace(labels={"pid": str(pid)}))
        yield from merged.values()


def _constant(pid: int) -> Callable[[], int]:
    return lambda: pid


TAKEOVER_RETRY_S = 2.0
"""How often a worker whose metrics port is taken (another worker on this host serves it) tries again."""


def serve(host: str, port: int, path: Path, extra: Iterable[Collector] = ()) -> None:
    """Serve the summed metrics of every process writing into `path`, plus `extra` collectors.

    When another worker on this host already serves the port, keep trying in the background: if that worker
    dies, this one takes over, and because both write into the same directory, nothing counted is lost.
    Any other error (a bad address, a privileged port) raises OSError at once.
    """
    if ValueClass is MutexValue:
        raise RuntimeError("PROMETHEUS_MULTIPROC_DIR was not set when prometheus_client was first imported")
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SweepingMultiProcessCollector(path))
    registry.register(ProcessesCollector(path))
    registry.register(PLATFORM_COLLECTOR)  # python_info: the interpreter, the same in every process
    for collector in extra:  # only the serving worker reads them: queue depths are reported once per host
        registry.register(collector)
    if _try_bind(host, port, registry):
        log.info("metrics.serving", host=host, port=port)
        return
    log.info("metrics.port_taken", host=host, port=port, retry_s=TAKEOVER_RETRY_S,
             detail="another worker on this host serves the metrics of all; this one takes over if it stops")
    threading.Thread(target=_take_over, args=(host, port, registry), name="llavaguard-metrics-takeover",
                     daemon=True).start()


def _try_bind(host: str, port: int, registry: CollectorRegistry) -> bool:
    try:
        start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        return False
    return True


def _take_over(host: str, port: int, registry: CollectorRegistry) -> None:
    last_error = ""
    while True:
        time.sleep(TAKEOVER_RETRY_S)
        try:
            if _try_bind(host, port, registry):
                log.info("metrics.took_over", host=host, port=port)
                return
        except OSError as exc:  # e.g. the address went away: keep trying, say so once per new error
            if str(exc) != last_error:
                last_error = str(exc)
                log.warning("metrics.takeover_failed", host=host, port=port, error=last_error)
