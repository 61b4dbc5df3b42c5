"""Prometheus metrics: counters fed by relay events, gauges read from relay state."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from common.version import version

from ..cluster.observer import ClusterObserver
from ..relay import RelayObserver, RelayStats, ResultOutcome

METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class _RelayStateCollector(Collector):
    def __init__(self, read_stats: Callable[[], RelayStats]) -> None:
        self._read_stats = read_stats

    def collect(self) -> Iterator[Metric]:
        stats = self._read_stats()
        yield GaugeMetricFamily("camrelay_cameras_known", "Cameras in the registry", stats.cameras)
        yield GaugeMetricFamily(
            "camrelay_cameras_online",
            "Cameras polling or seen within the connect timeout",
            stats.online,
        )
        yield GaugeMetricFamily(
            "camrelay_polls_held", "Camera polls held open now", stats.polls_held
        )
        yield GaugeMetricFamily(
            "camrelay_callers_waiting", "/logs callers queued for a command", stats.callers_waiting
        )
        yield GaugeMetricFamily(
            "camrelay_commands_in_flight",
            "Commands delivered and not yet answered",
            stats.commands_in_flight,
        )
        yield GaugeMetricFamily(
            "camrelay_result_bytes_in_flight",
            "Bytes of results held for callers or being read (MAX_RESULT_BYTES_IN_FLIGHT)",
            stats.result_bytes_in_flight,
        )
        yield GaugeMetricFamily(
            "camrelay_uploads_waiting_for_budget",
            "Result uploads waiting for room in MAX_RESULT_BYTES_IN_FLIGHT",
            stats.uploads_waiting_for_budget,
        )


class RelayMetrics(RelayObserver):
    """A registry of the relay's metrics, fed by the relay's events."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        # camrelay_build_info{version="0.2.0"} 1: which build answers, for dashboards.
        Info("camrelay_build", "The camrelay build serving", registry=self.registry).info(
            {"version": version()}
        )
        # process_resident_memory_bytes, process_open_fds, process_cpu_seconds_total, ...
        # (Linux /proc; nothing on platforms without it).
        ProcessCollector(registry=self.registry)
        self._read_stats: Callable[[], RelayStats] = lambda: RelayStats(0, 0, 0, 0, 0)
        self.registry.register(_RelayStateCollector(lambda: self._read_stats()))
        self.cameras_refused = Counter(
            "camrelay_cameras_refused",
            "Polls from new camera ids refused (503) because the registry was full (MAX_CAMERAS)",
            registry=self.registry,
        )
        self.commands_delivered = Counter(
            "camrelay_commands_delivered",
            "Commands handed to a poll for the first time",
            registry=self.registry,
        )
        self.commands_redelivered = Counter(
            "camrelay_commands_redelivered",
            "Unanswered commands handed to a later poll again",
            registry=self.registry,
        )
        self.commands_timed_out = Counter(
            "camrelay_commands_timed_out",
            "Commands whose result did not come in time",
            registry=self.registry,
        )
        self.commands_abandoned = Counter(
            "camrelay_commands_abandoned",
            "Unanswered commands dropped because every caller left",
            registry=self.registry,
        )
        self.results = Counter(
            "camrelay_results",
            "Results posted by cameras, by outcome",
            ["outcome"],
            registry=self.registry,
        )
        #: each outcome's counter, looked up once (``labels`` takes a lock)
        self._results_by_outcome = {
            outcome: self.results.labels(outcome.value) for outcome in ResultOutcome
        }
        self.logs_requests = Counter(
            "camrelay_logs_requests",
            "/logs requests by response status",
            ["status"],
            registry=self.registry,
        )
        #: the counter of each status seen, looked up once (``labels`` takes a lock)
        self._logs_by_status: dict[int, Counter] = {}
        self.relay_latency = Histogram(
            "camrelay_relay_latency_seconds",
            "Time from a /logs request to its logs (200 only)",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.uploads_refused = Counter(
            "camrelay_uploads_refused_early",
            "Results nobody awaits, answered 404 before their body was read (whole)",
            ["when"],
            registry=self.registry,
        )
        for when in ("before_body", "at_request_id"):
            self.uploads_refused.labels(when)
        self.uploads_died = Counter(
            "camrelay_uploads_died",
            "Result uploads that broke off mid-body (connection lost, BODY_TIMEOUT_SECONDS "
            "or MIN_TRANSFER_BYTES_PER_SECOND)",
            registry=self.registry,
        )
        self.slow_readers_cut = Counter(
            "camrelay_slow_readers_cut",
            "/logs answers cut because the caller read slower than WRITE_TIMEOUT_SECONDS "
            "or MIN_TRANSFER_BYTES_PER_SECOND allow",
            registry=self.registry,
        )
        self.callers_per_command = Histogram(
            "camrelay_callers_per_command",
            "Callers served by one command (coalescing)",
            buckets=(1, 2, 5, 10, 50, 100, 500, 1000, 10000),
            registry=self.registry,
        )
        self.requests_rejected = Counter(
            "camrelay_http_requests_rejected",
            "Requests the HTTP parser rejected (answered 400 before routing)",
            registry=self.registry,
        )
        self.header_timeouts = Counter(
            "camrelay_http_header_timeouts",
            "Connections closed for sending no complete request head within HEADER_TIMEOUT_SECONDS",
            registry=self.registry,
        )
        self.accept_pauses = Counter(
            "camrelay_accept_pauses",
            "Times accepting paused for a second because file descriptors ran out",
            registry=self.registry,
        )

    def logs_answered(self, status: int, seconds: float) -> None:
        """A ``/logs`` request answered with ``status`` after ``seconds`` (timed if 200)."""
        counter = self._logs_by_status.get(status)
        if counter is None:
            counter = self._logs_by_status[status] = self.logs_requests.labels(str(status))
        counter.inc()
        if status == 200:
            self.relay_latency.observe(seconds)

    def logs_cancelled(self) -> None:
        """A ``/logs`` request whose caller left before its answer."""
        self.logs_requests.labels("cancelled").inc()

    def read_state_from(self, read_stats: Callable[[], RelayStats]) -> None:
        self._read_stats = read_stats

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    # RelayObserver

    def camera_refused(self, camera_id: str, known: int) -> None:
        self.cameras_refused.inc()

    def command_delivered(
        self, camera_id: str, request_id: str, callers: int, redelivery: bool
    ) -> None:
        if redelivery:
            self.commands_redelivered.inc()
        else:
            self.commands_delivered.inc()
            self.callers_per_command.observe(callers)

    def command_timed_out(self, camera_id: str, request_id: str, callers: int) -> None:
        self.commands_timed_out.inc()

    def command_abandoned(self, camera_id: str, request_id: str) -> None:
        self.commands_abandoned.inc()

    def result_received(self, camera_id: str, outcome: ResultOutcome) -> None:
        self._results_by_outcome[outcome].inc()

    def upload_refused(self, camera_id: str, *, body_read: bool) -> None:
        self.uploads_refused.labels("at_request_id" if body_read else "before_body").inc()

    def upload_died(self, camera_id: str) -> None:
        self.uploads_died.inc()


class ClusterMetrics(ClusterObserver):
    """Cluster figures, in the relay's registry: nodes alive, forwards, Redis errors."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._read_nodes_alive: Callable[[], int] = lambda: 0
        self.nodes_alive = Gauge(
            "camrelay_cluster_nodes_alive",
            "Nodes whose heartbeat this node saw last (itself included)",
            registry=registry,
        )
        self.nodes_alive.set_function(lambda: self._read_nodes_alive())
        self.forwarded_messages = Counter(
            "camrelay_cluster_forwarded",
            "Messages sent to other nodes, by kind (enqueue, result, error, posted...)",
            ["kind"],
            registry=registry,
        )
        self.home_lookups = Counter(
            "camrelay_cluster_home_lookups",
            "Cross-node /logs calls by where their camera's home was found: store (a read) "
            "or known (found within KNOWN_HOME_SECONDS, no read)",
            ["source"],
            registry=registry,
        )
        self.forward_latency = Histogram(
            "camrelay_cluster_forward_latency_seconds",
            "Time from a node sending a message to this node reading it",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
            registry=registry,
        )
        self.redis_errors = Counter(
            "camrelay_cluster_redis_errors",
            "Redis commands that failed (Redis down or unreachable)",
            registry=registry,
        )

    def read_nodes_alive_from(self, read: Callable[[], int]) -> None:
        self._read_nodes_alive = read

    def forwarded(self, kind: str) -> None:
        self.forwarded_messages.labels(kind).inc()

    def home_found(self, source: str) -> None:
        self.home_lookups.labels(source).inc()

    def hop_latency(self, seconds: float) -> None:
        self.forward_latency.observe(seconds)

    def redis_error(self) -> None:
        self.redis_errors.inc()
