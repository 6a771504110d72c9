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
    QuerySet,
    Subquery,
    When,
)

from schools import access
from sync import lease
from sync.health import read_health
from sync.lanes import by_school
from sync.models import OPEN_STATUSES, EntryStatus, OperationLog, OperationSlot, SyncLane
from sync.selectors import blocks_on_failure, holding_statuses

HISTORY_HOURS = 24


def status_counts(entries: QuerySet[OperationLog]) -> dict[str, int]:
    counts = dict.fromkeys(EntryStatus.values, 0)
    counts.update(entries.order_by().values_list("status").annotate(n=Count("pk")))
    return counts


def lane_overview(
    now: datetime, lanes: QuerySet[SyncLane] | None = None, entries: QuerySet[OperationLog] | None = None
) -> list[dict[str, Any]]:
    """Every lane (or those given) with its backlog, lag, pause and chain, and the failed entry it waits on.

    An entry with slots in other lanes counts in each of those lanes' figures too: they wait for it.
    The failed entry is shown only if it is one of ``entries`` (those the reader may see).
    """
    holding = holding_statuses()
    own_head = OperationLog.objects.filter(lane=OuterRef("pk"), status__in=holding).order_by("sequence")
    slot_head = OperationSlot.objects.filter(lane=OuterRef("pk"), entry__status__in=holding).order_by("sequence")
    rows = list(
        (lanes if lanes is not None else SyncLane.objects.all())
        .order_by("name")
        .annotate(
            own_head_id=Subquery(own_head.values("pk")[:1]),
            own_head_sequence=Subquery(own_head.values("sequence")[:1]),
            slot_head_id=Subquery(slot_head.values("entry_id")[:1]),
            slot_head_sequence=Subquery(slot_head.values("sequence")[:1]),
            lease_active=ExpressionWrapper(lease.live(), output_field=BooleanField()),  # in the database's clock
        )
    )
    backlog = _backlog(OperationLog.objects.all(), "")
    for name, slots in _backlog(OperationSlot.objects.all(), "entry__").items():
        figures = backlog.setdefault(name, {"pending": 0, "failed": 0, "oldest": None})
        figures["pending"] += slots["pending"]
        figures["failed"] += slots["failed"]
        figures["oldest"] = min(filter(None, (figures["oldest"], slots["oldest"])), default=None)
    heads = {lane.pk: _head_id(lane) for lane in rows}
    visible = entries if entries is not None else OperationLog.objects.all()
    head_entries = visible.in_bulk([head for head in heads.values() if head is not None])
    overview = []
    for lane in rows:
        figures = backlog.get(lane.pk, {})
        oldest = figures.get("oldest")
        overview.append(
            {
                "name": lane.name,
                "next_sequence": lane.next_sequence,
                "pending": figures.get("pending", 0),
                "failed": figures.get("failed", 0),
                "last_pushed_sequence": lane.last_pushed_sequence,
                "last_pushed_at": lane.last_pushed_at,
                "oldest_pending_age_seconds": round((now - oldest).total_seconds(), 3) if oldest else None,
                "paused": lane.paused,
                "lease_active": lane.lease_active,
                "blocked_by": _failed(head_entries.get(heads[lane.pk])),
            }
        )
    return overview


def _backlog(rows: QuerySet, entry: str) -> dict[str, dict[str, Any]]:
    """Per lane: entries (or slots) waiting to be sent, failed, and the creation of the oldest not delivered."""
    statuses = f"{entry}status"
    figures = (
        rows.filter(**{f"{statuses}__in": OPEN_STATUSES})
        .order_by()
        .values("lane_id")
        .annotate(
            pending=Count("pk", filter=Q(**{f"{statuses}__in": (EntryStatus.PENDING, EntryStatus.IN_PROGRESS)})),
            failed=Count("pk", filter=Q(**{statuses: EntryStatus.FAILED})),
            oldest=Min(f"{entry}created_at", filter=Q(**{f"{statuses}__in": holding_statuses()})),
        )
    )
    return {row.pop("lane_id"): row for row in figures}


def _head_id(lane: Any) -> int | None:  # a SyncLane annotated by lane_overview()
    """The entry the lane sends (or waits for) next: its own head, or another lane's entry holding an earlier slot."""
    own, slot = lane.own_head_sequence, lane.slot_head_sequence
    if slot is not None and (own is None or slot < own):
        return lane.slot_head_id
    return lane.own_head_id


def _failed(entry: OperationLog | None) -> OperationLog | None:
    return entry if entry is not None and entry.status == EntryStatus.FAILED else None


def pushes_since(since: datetime, entries: QuerySet[OperationLog]) -> int:
    # updated_at >= pushed_at, so the updated_at index narrows the scan.
    return entries.filter(updated_at__gte=since, pushed_at__gte=since).count()


def history(now: datetime, entries: QuerySet[OperationLog], hours: int = HISTORY_HOURS) -> list[dict[str, Any]]:
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
        entries.filter(Q(updated_at__gte=start) | Q(status__in=OPEN_STATUSES))
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


def sync_status(now: datetime, lanes: QuerySet[SyncLane], entries: QuerySet[OperationLog]) -> dict[str, Any]:
    """What GET /api/sync/status/ returns, over these lanes and entries; the dashboard shows the same numbers."""
    overview = lane_overview(now, lanes, entries)
    ages = [lane["oldest_pending_age_seconds"] for lane in overview if lane["oldest_pending_age_seconds"] is not None]
    pushed = [lane for lane in overview if lane["last_pushed_at"] is not None]
    latest = max(pushed, key=lambda lane: lane["last_pushed_at"], default=None)
    # With school lanes, sequences of different lanes cannot be compared: no one "last pushed".
    last_pushed_sequence = latest["last_pushed_sequence"] if latest and not by_school() else None
    return {
        "counts": status_counts(entries),
        "last_pushed_sequence": last_pushed_sequence,
        "last_pushed_at": latest["last_pushed_at"] if latest else None,
        "oldest_pending_age_seconds": max(ages, default=None),
        "pushes_last_hour": pushes_since(now - timedelta(hours=1), entries),
        "external": read_health(),
        "lanes": overview,
    }


def sync_status_for(user: Any, now: datetime) -> dict[str, Any]:
    """The status over the lanes and entries of the user's schools (every lane and entry, for district staff)."""
    return sync_status(
        now, access.scoped(SyncLane.objects.all(), user), access.scoped(OperationLog.objects.all(), user)
    )
