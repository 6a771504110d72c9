"""Prometheus metrics: outbox state from the database, push counters from the shared cache."""

import logging
import math
from collections.abc import Iterable, Iterator
from typing import Any

from django.core.cache import cache
from django.utils import timezone
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from sync import overview
from sync.client import PushResult
from sync.health import read_health
from sync.models import EntryStatus, OperationLog, Outcome

logger = logging.getLogger(__name__)

PUSH_METRICS_KEY = "sync:push-metrics"
"""Push counters live in the shared cache, so the web process serves what any sync worker
counted; flushing the cache resets them, which Prometheus treats as a counter reset."""
METRICS_MAX_LANES = 20
"""Lanes with series of their own in /metrics; the others are summed up as one."""
OTHER_LANES = "other"
# Upper bounds, in seconds, of the push duration histogram's buckets.
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def _empty() -> dict[str, Any]:
    return {
        "attempts": dict.fromkeys(Outcome.values, 0),
        "buckets": [0] * len(DURATION_BUCKETS),
        "count": 0,
        "sum": 0.0,
    }


def record_attempts(results: Iterable[PushResult]) -> None:
    """Count push attempts, a chain link's at a time. Never raises: metrics must not break a push."""
    results = list(results)
    if not results:
        return
    try:
        data = cache.get(PUSH_METRICS_KEY) or _empty()
        for result in results:
            data["attempts"][result.outcome] = data["attempts"].get(result.outcome, 0) + 1
            data["count"] += 1
            data["sum"] += result.duration
            for index, bound in enumerate(DURATION_BUCKETS):
                if result.duration <= bound:
                    data["buckets"][index] += 1
        cache.set(PUSH_METRICS_KEY, data, timeout=None)
    except Exception:
        logger.warning("could not record push metrics", exc_info=True)


def push_metrics() -> dict[str, Any]:
    try:
        return cache.get(PUSH_METRICS_KEY) or _empty()
    except Exception:
        logger.warning("could not read push metrics", exc_info=True)
        return _empty()


def lane_metrics(lanes: list[dict[str, Any]]) -> Iterator[GaugeMetricFamily]:
    """Per-lane series for the METRICS_MAX_LANES lanes furthest behind, the rest as lane="other".

    A district may have hundreds of schools: one series each would swamp Prometheus.
    """
    lanes = sorted(lanes, key=lambda lane: (lane["oldest_pending_age_seconds"] or 0.0, lane["pending"]), reverse=True)
    shown, rest = lanes[:METRICS_MAX_LANES], lanes[METRICS_MAX_LANES:]
    lag = GaugeMetricFamily("sync_lag_seconds", "Age of the oldest entry not yet delivered.", labels=["lane"])
    backlog = GaugeMetricFamily("sync_lane_pending", "Entries waiting to be sent in the lane.", labels=["lane"])
    last = GaugeMetricFamily("sync_last_pushed_sequence", "Last sequence pushed successfully.", labels=["lane"])
    for lane in shown:
        lag.add_metric([lane["name"]], lane["oldest_pending_age_seconds"] or 0.0)
        backlog.add_metric([lane["name"]], lane["pending"])
        last.add_metric([lane["name"]], lane["last_pushed_sequence"] or 0)
    if rest:
        lag.add_metric([OTHER_LANES], max(lane["oldest_pending_age_seconds"] or 0.0 for lane in rest))
        backlog.add_metric([OTHER_LANES], sum(lane["pending"] for lane in rest))
    states = GaugeMetricFamily("sync_lanes", "Lanes by state.", labels=["state"])
    states.add_metric(["all"], len(lanes))
    states.add_metric(["paused"], sum(lane["paused"] for lane in lanes))
    states.add_metric(["blocked"], sum(lane["blocked_by"] is not None for lane in lanes))
    states.add_metric(["pending"], sum(lane["pending"] > 0 for lane in lanes))
    states.add_metric(["running"], sum(lane["lease_active"] for lane in lanes))
    yield from (lag, backlog, last, states)


class SyncCollector(Collector):
    def collect(self) -> Iterator:
        counts = overview.status_counts(OperationLog.objects.all())
        entries = GaugeMetricFamily("sync_entries", "Operation log entries by status.", labels=["status"])
        for status in EntryStatus.values:
            entries.add_metric([status], counts[status])
        yield entries

        yield from lane_metrics(overview.lane_overview(timezone.now()))

        pushes = push_metrics()
        attempts = CounterMetricFamily("sync_push_attempts", "Push attempts by outcome.", labels=["outcome"])
        for outcome in Outcome.values:
            attempts.add_metric([outcome], pushes["attempts"].get(outcome, 0))
        yield attempts
        cumulative = [(str(bound), count) for bound, count in zip(DURATION_BUCKETS, pushes["buckets"], strict=True)]
        yield HistogramMetricFamily(
            "sync_push_duration_seconds",
            "Duration of calls to the external API.",
            buckets=[*cumulative, ("+Inf", pushes["count"])],
            sum_value=pushes["sum"],
        )

        health = read_health()
        up = GaugeMetricFamily("sync_external_up", "1 if the external system answered the last probe.")
        up.add_metric([], math.nan if health["reachable"] is None else float(health["reachable"]))
        yield up
        latency = GaugeMetricFamily("sync_external_latency_seconds", "Latency of the last health probe.")
        latency.add_metric([], math.nan if health["latency_ms"] is None else health["latency_ms"] / 1000)
        yield latency
        age = GaugeMetricFamily("sync_external_health_age_seconds", "Age of the last health probe.")
        age.add_metric([], math.nan if health["age_seconds"] is None else health["age_seconds"])
        yield age


def registry() -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SyncCollector())
    return registry
