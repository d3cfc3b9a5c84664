"""Prometheus metrics, one registry per gateway (tests run several gateways in one process)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from .hibernation_stats import HibernationStats

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..execution.pool import KernelPool
    from ..wire.replay import CallResults


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.executions = Counter("gateway_executions", "Executions by final state",
                                  ["state"], registry=r)
        self.duration = Histogram(
            "gateway_execution_seconds", "Execution duration (queue excluded)", registry=r,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300))
        self.pool_wait = Histogram("gateway_pool_wait_seconds", "Time to lease a kernel",
                                   registry=r)
        self.output_bytes = Counter("gateway_output_characters",
                                    "Characters of text output sent", registry=r)
        self.connections = Gauge("gateway_websocket_connections", "Open websocket connections",
                                 registry=r)
        self.identity_limit_refusals = Counter(
            "gateway_identity_limit_refusals",
            "Requests refused because their identity reached its own limit", ["limit"],
            registry=r)
        self.egress_requests = Counter(
            "gateway_egress_requests",
            "Connections through the egress proxy by outcome (allowed, refused, timeout, "
            "failed, bad_request)", ["outcome"], registry=r)
        self.egress_bytes_total = Counter("gateway_egress_bytes",
                                          "Bytes relayed by the egress proxy", registry=r)
        self.hibernation = HibernationStats()  # plain counts: pool stats reads them too
        self.restore_seconds = Histogram(
            "gateway_restore_seconds",
            "Time from a hibernated thread's request to its restored kernel (lease included)",
            registry=r, buckets=(0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 30, 60))

    def hibernated(self, reason: str, snapshot_failed: bool) -> None:
        self.hibernation.hibernated(reason, snapshot_failed)

    def restored(self, seconds: float, failed: bool) -> None:
        self.hibernation.restored(seconds, failed)
        self.restore_seconds.observe(seconds)

    def watch_hibernation(self, hibernated_now: Callable[[], int]) -> None:
        """Hibernated threads now, hibernations per reason and restores, read at scrape time."""
        self.registry.register(_HibernationCollector(self.hibernation, hibernated_now))

    def watch_pool(self, pool: KernelPool) -> None:
        """Kernel gauges and counters are read from the pool at scrape time: one source of truth."""
        self.registry.register(_PoolCollector(pool))

    def watch_capacity(self, capacity: Callable[[], dict]) -> None:
        """The kernel limit, the memory floor and the host's memory, read at scrape time."""
        self.registry.register(_CapacityCollector(capacity))

    def watch_results(self, results: CallResults) -> None:
        """What the finished calls kept for reconnecting clients hold, read at scrape time."""
        Gauge("gateway_retained_results", "Finished calls whose final status is kept",
              registry=self.registry).set_function(lambda: len(results))
        Gauge("gateway_retained_result_bytes", "Approximate bytes those statuses hold",
              registry=self.registry).set_function(lambda: results.bytes)

    def watch_identities(self, live_threads: Callable[[], dict[str, int]],
                         file_bytes: Callable[[], dict[str, int]]) -> None:
        """Each identity's live threads and stored bytes, read at scrape time."""
        self.registry.register(_IdentityCollector(live_threads, file_bytes))

    def execution_finished(self, state: str, seconds: float) -> None:
        self.executions.labels(state).inc()
        self.duration.observe(seconds)

    def egress_request(self, outcome: str) -> None:
        self.egress_requests.labels(outcome).inc()

    def egress_bytes(self, count: int) -> None:
        self.egress_bytes_total.inc(count)

    def bytes_out(self, count: int) -> None:
        self.output_bytes.inc(count)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _PoolCollector:
    def __init__(self, pool: KernelPool) -> None:
        self.pool = pool

    def collect(self):
        snapshot = self.pool.snapshot()
        kernels = GaugeMetricFamily("gateway_kernels", "Kernels by state", labels=["state"])
        for state in ("warm", "starting", "leased"):
            kernels.add_metric([state], snapshot[state])
        yield kernels
        events = CounterMetricFamily("gateway_kernel_events", "Kernel starts, restarts, deaths",
                                     labels=["event"])
        for event in ("starts", "start_failures", "restarts", "deaths", "heals"):
            events.add_metric([event], snapshot[event])
        yield events
        yield GaugeMetricFamily("gateway_pool_target", "Warm kernels the pool aims to keep",
                                value=snapshot["target"])
        bounds = GaugeMetricFamily("gateway_pool_target_bound",
                                   "Floor (pool_size) and ceiling (kernel limit) of the warm "
                                   "target",
                                   labels=["bound"])
        for bound in ("floor", "ceiling"):
            bounds.add_metric([bound], snapshot[bound])
        yield bounds
        drivers = GaugeMetricFamily("gateway_pool_target_driver",
                                    "What sets the warm target now (1) and what does not (0)",
                                    labels=["driver"])
        for driver in ("floor", "demand", "burst"):
            drivers.add_metric([driver], float(snapshot["target_driver"] == driver))
        yield drivers
        method = GaugeMetricFamily("gateway_kernel_start_method",
                                   "How Python kernels start now (1): forked or exec'd",
                                   labels=["method"])
        for name in ("fork", "exec"):
            method.add_metric([name], float(snapshot["start_method"] == name))
        yield method
        yield GaugeMetricFamily("gateway_pool_new_threads_per_minute",
                                "Moving average of new threads (the adaptive target's input)",
                                value=snapshot["new_threads_per_minute"])
        yield GaugeMetricFamily("gateway_kernel_failing_starts",
                                "Consecutive failed kernel starts (0 after any success)",
                                value=snapshot["failing_starts"])


class _CapacityCollector:
    GAUGES = (
        ("gateway_kernel_limit", "kernel_limit",
         "Kernels allowed in all (max_kernels in force; 0 resolved from the host)"),
        ("gateway_memory_floor_bytes", "memory_floor_bytes",
         "Host memory kept free: no kernel starts below it (memory_floor in force)"),
        ("gateway_host_memory_total_bytes", "memory_total_bytes",
         "Host memory, or the gateway's cgroup limit when lower"),
        ("gateway_host_memory_available_bytes", "memory_available_bytes",
         "Host memory available now (MemAvailable, or less in the gateway's cgroup)"),
        ("gateway_host_memory_pressure", "memory_pressure",
         "PSI memory some avg10: % of the last 10 s some task waited for memory"),
        ("gateway_kernels_memory_bytes", "kernels_memory_bytes",
         "Memory charged to the kernels' own cgroups (beyond what they share with the zygote)"),
    )

    def __init__(self, capacity: Callable[[], dict]) -> None:
        self.capacity = capacity

    def collect(self):
        snapshot = self.capacity()
        for name, key, help_text in self.GAUGES:
            if snapshot.get(key) is not None:  # a host that does not report it: no sample
                yield GaugeMetricFamily(name, help_text, value=snapshot[key])
        yield GaugeMetricFamily("gateway_host_memory_under_pressure",
                                "1 while memory is below the floor or PSI is high",
                                value=float(snapshot.get("under_pressure") is not None))


class _HibernationCollector:
    def __init__(self, stats: HibernationStats, hibernated_now: Callable[[], int]) -> None:
        self.stats = stats
        self.hibernated_now = hibernated_now

    def collect(self):
        yield GaugeMetricFamily("gateway_hibernated_threads",
                                "Threads whose kernel is stopped and state stored",
                                value=self.hibernated_now())
        hibernations = CounterMetricFamily("gateway_hibernations", "Threads hibernated, by "
                                           "reason (idle, capacity, pressure, shutdown, ...)",
                                           labels=["reason"])
        for reason, count in sorted(self.stats.hibernations.items()):
            hibernations.add_metric([reason], count)
        yield hibernations
        restores = CounterMetricFamily("gateway_restores", "Hibernated threads restored, by "
                                       "outcome (failed: the namespace did not come back and "
                                       "the thread went on with a clean kernel)",
                                       labels=["outcome"])
        restores.add_metric(["ok"], self.stats.restores - self.stats.restore_failures)
        restores.add_metric(["failed"], self.stats.restore_failures)
        yield restores


class _IdentityCollector:
    def __init__(self, live_threads: Callable[[], dict[str, int]],
                 file_bytes: Callable[[], dict[str, int]]) -> None:
        self.live_threads = live_threads
        self.file_bytes = file_bytes

    def collect(self):
        threads = GaugeMetricFamily("gateway_identity_live_threads",
                                    "Live threads (with a kernel or work) per identity",
                                    labels=["identity"])
        for identity, count in sorted(self.live_threads().items()):
            threads.add_metric([identity], count)
        yield threads
        stored = GaugeMetricFamily("gateway_identity_file_bytes",
                                   "Bytes of stored files per identity", labels=["identity"])
        for identity, size in sorted(self.file_bytes().items()):
            stored.add_metric([identity], size)
        yield stored
