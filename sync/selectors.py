"""The sync engine's reads of the outbox: what is due next in a lane, and whether a chain holds it."""

from datetime import datetime

from django.conf import settings

from sync import lease
from sync.models import OPEN_STATUSES, EntryStatus, OperationLog, SyncLane


def blocks_on_failure() -> bool:
    """Whether a permanently failed entry holds its lane until an operator acts (the default)."""
    return settings.SYNC_ON_PERMANENT_FAILURE == "block"


def holding_statuses() -> tuple[str, ...]:
    """Statuses of entries that keep later entries of their lane from being sent."""
    return OPEN_STATUSES if blocks_on_failure() else (EntryStatus.PENDING, EntryStatus.IN_PROGRESS)


def due_entries(lane: str, now: datetime, limit: int) -> list[int]:
    """Ids of the entries to push next, in sequence order: up to the first failed or waiting one."""
    head = (
        OperationLog.objects.filter(lane_id=lane, status__in=holding_statuses())
        .order_by("sequence")
        .values_list("pk", "status", "next_attempt_at")[:limit]
    )
    due = []
    for pk, status, next_attempt_at in head:
        if status == EntryStatus.FAILED or (next_attempt_at is not None and next_attempt_at > now):
            break
        due.append(pk)
    return due


def has_due_work(lane: str, now: datetime) -> bool:
    """Whether the lane has an entry that may be sent now."""
    return bool(due_entries(lane, now, limit=1))


def lane_has_live_lease(lane: str) -> bool:
    """Whether a chain holds the lane's lease and will pick new entries up by itself."""
    return SyncLane.objects.filter(lease.live(), pk=lane).exists()
