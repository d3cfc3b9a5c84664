"""Prometheus metrics, one registry per gateway (tests run several gateways in one process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.executions = Counter("gateway_executions", "Executions by final state",
                                  ["state"], registry=r)
        self.duration = Histogram(
            "gateway_execution_seconds", "Execution duration (queue excluded)", registry=r,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300))
        self.kernels = Gauge("gateway_kernels", "Kernels by state", ["state"], registry=r)
        self.kernel_events = Counter("gateway_kernel_events", "Kernel starts, restarts, deaths",
                                     ["event"], registry=r)
        self.pool_wait = Histogram("gateway_pool_wait_seconds", "Time to lease a kernel",
                                   registry=r)
        self.output_bytes = Counter("gateway_output_characters",
                                    "Characters of text output sent", registry=r)
        self.connections = Gauge("gateway_websocket_connections", "Open websocket connections",
                                 registry=r)

    def execution_finished(self, state: str, seconds: float) -> None:
        self.executions.labels(state).inc()
        self.duration.observe(seconds)

    def bytes_out(self, count: int) -> None:
        self.output_bytes.inc(count)

    def render(self) -> bytes:
        return generate_latest(self.registry)
