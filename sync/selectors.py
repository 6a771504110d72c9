"""Reads of the outbox shared by the dispatcher, the sweep, the admin and the API."""

from datetime import datetime

from django.conf import settings
from django.db.models import Q

from sync.models import OPEN_STATUSES, OperationLog, Status, SyncLane


def blocks_on_failure() -> bool:
    return settings.SYNC_ON_PERMANENT_FAILURE == "block"


def holding_statuses() -> tuple[str, ...]:
    """Statuses of entries that keep later entries of their lane from being sent."""
    return OPEN_STATUSES if blocks_on_failure() else (Status.PENDING, Status.IN_PROGRESS)


def due_entries(lane: str, now: datetime, limit: int) -> list[int]:
    """Ids of the entries to push next, in sequence order: up to the first failed or waiting one."""
    head = (
        OperationLog.objects.filter(lane_id=lane, status__in=holding_statuses())
        .order_by("sequence")
        .values_list("pk", "status", "next_attempt_at")[:limit]
    )
    due = []
    for pk, status, next_attempt_at in head:
        if status == Status.FAILED or (next_attempt_at is not None and next_attempt_at > now):
            break
        due.append(pk)
    return due


def has_due_work(lane: str, now: datetime) -> bool:
    return bool(due_entries(lane, now, limit=1))


def has_earlier_open_entries(entry: OperationLog) -> bool:
    """True when an entry before this one in its lane has neither succeeded nor been cancelled."""
    return OperationLog.objects.filter(
        lane_id=entry.lane_id, sequence__lt=entry.sequence, status__in=holding_statuses()
    ).exists()


def lane_has_live_lease(lane: str, now: datetime) -> bool:
    return SyncLane.objects.filter(Q(pk=lane) & ~Q(lease_owner="") & Q(lease_expires_at__gt=now)).exists()
