"""Reads for people watching delivery: the status API, the dashboard and the metrics."""

from datetime import datetime, timedelta
from typing import Any

from django.db.models import (
    Aggregate,
    BooleanField,
    Case,
    Count,
    ExpressionWrapper,
    F,
    Min,
    OuterRef,
    Q,
    Subquery,
    When,
)

from sync import lease
from sync.health import read_health
from sync.models import OPEN_STATUSES, EntryStatus, OperationLog, SyncLane
from sync.selectors import blocks_on_failure, holding_statuses

HISTORY_HOURS = 24


def status_counts() -> dict[str, int]:
    counts = dict.fromkeys(EntryStatus.values, 0)
    counts.update(OperationLog.objects.order_by().values_list("status").annotate(n=Count("pk")))
    return counts


def lane_overview(now: datetime) -> list[dict[str, Any]]:
    """Every lane with its progress, lag and, when the lane is blocked, its failed head entry."""
    head = OperationLog.objects.filter(lane=OuterRef("pk"), status__in=holding_statuses()).order_by("sequence")
    lanes = list(
        SyncLane.objects.order_by("name").annotate(
            head_id=Subquery(head.values("pk")[:1]),
            head_created_at=Subquery(head.values("created_at")[:1]),
            lease_active=ExpressionWrapper(lease.live(), output_field=BooleanField()),  # in the database's clock
        )
    )
    failed_heads = OperationLog.objects.in_bulk([lane.head_id for lane in lanes if lane.head_id is not None])
    return [
        {
            "name": lane.name,
            "next_sequence": lane.next_sequence,
            "last_pushed_sequence": lane.last_pushed_sequence,
            "last_pushed_at": lane.last_pushed_at,
            "lease_active": lane.lease_active,
            "oldest_open_age_seconds": (
                round((now - lane.head_created_at).total_seconds(), 3) if lane.head_created_at else None
            ),
            "blocked_by": _failed(failed_heads.get(lane.head_id)),
        }
        for lane in lanes
    ]


def _failed(entry: OperationLog | None) -> OperationLog | None:
    return entry if entry is not None and entry.status == EntryStatus.FAILED else None


def pushes_since(since: datetime) -> int:
    # updated_at >= pushed_at, so the updated_at index narrows the scan.
    return OperationLog.objects.filter(updated_at__gte=since, pushed_at__gte=since).count()


def history(now: datetime, hours: int = HISTORY_HOURS) -> list[dict[str, Any]]:
    """Per hour over the last day: pushes made, and the lag (age of the oldest open entry) at its end.

    Derived from the entries themselves in one query: an entry is open from its creation
    until it succeeded (pushed_at) or was cancelled (updated_at).
    """
    start = now - timedelta(hours=hours)
    ends = [start + timedelta(hours=index + 1) for index in range(hours)]
    closed_at = Case(
        When(status=EntryStatus.SUCCEEDED, then=F("pushed_at")),
        When(status=EntryStatus.CANCELLED, then=F("updated_at")),
        default=None,
    )
    if not blocks_on_failure():
        closed_at = Case(When(status=EntryStatus.FAILED, then=F("updated_at")), default=closed_at)
    aggregates: dict[str, Aggregate] = {}
    for index, end in enumerate(ends):
        aggregates[f"pushes_{index}"] = Count(
            "pk", filter=Q(pushed_at__gt=end - timedelta(hours=1), pushed_at__lte=end)
        )
        aggregates[f"oldest_{index}"] = Min(
            "created_at", filter=Q(created_at__lte=end) & (Q(closed_at__isnull=True) | Q(closed_at__gt=end))
        )
    row = (
        OperationLog.objects.filter(Q(updated_at__gte=start) | Q(status__in=OPEN_STATUSES))
        .annotate(closed_at=closed_at)
        .aggregate(**aggregates)
    )
    return [
        {
            "end": end,
            "pushes": row[f"pushes_{index}"],
            "lag_seconds": (end - row[f"oldest_{index}"]).total_seconds() if row[f"oldest_{index}"] else 0.0,
        }
        for index, end in enumerate(ends)
    ]


def sync_status(now: datetime) -> dict[str, Any]:
    """What GET /api/sync/status/ returns; the dashboard shows the same numbers."""
    lanes = lane_overview(now)
    ages = [lane["oldest_open_age_seconds"] for lane in lanes if lane["oldest_open_age_seconds"] is not None]
    pushed = [lane for lane in lanes if lane["last_pushed_at"] is not None]
    latest = max(pushed, key=lambda lane: lane["last_pushed_at"], default=None)
    return {
        "counts": status_counts(),
        "last_pushed_sequence": latest["last_pushed_sequence"] if latest else None,
        "last_pushed_at": latest["last_pushed_at"] if latest else None,
        "oldest_pending_age_seconds": max(ages, default=None),
        "pushes_last_hour": pushes_since(now - timedelta(hours=1)),
        "external": read_health(),
        "lanes": lanes,
    }
