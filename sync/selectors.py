"""The sync engine's reads of the outbox: what is due next in a lane, and whether a chain holds it."""

from datetime import datetime

from django.conf import settings
from django.db.models import Exists, OuterRef, Q, QuerySet

from sync import lease
from sync.models import OPEN_STATUSES, EntryStatus, OperationLog, OperationSlot, SyncLane


def blocks_on_failure() -> bool:
    """Whether a permanently failed entry holds its lane until an operator acts (the default)."""
    return settings.SYNC_ON_PERMANENT_FAILURE == "block"


def holding_statuses() -> tuple[str, ...]:
    """Statuses of entries that keep later entries of their lane from being sent."""
    return OPEN_STATUSES if blocks_on_failure() else (EntryStatus.PENDING, EntryStatus.IN_PROGRESS)


def due_entries(lane: str, now: datetime, limit: int) -> list[int]:
    """Ids of the entries to push next, in sequence order.

    They run up to the first failed or waiting entry, the lane's first open slot of
    another lane's entry (this lane waits for that entry to be sent by its own lane), or
    the first entry of its own with a slot in a lane that has not reached that slot yet.
    A paused lane has nothing due.
    """
    if SyncLane.objects.filter(pk=lane, paused=True).exists():
        return []
    head = OperationLog.objects.filter(lane_id=lane, status__in=holding_statuses())
    barrier = first_open_slot(lane)
    if barrier is not None:
        head = head.filter(sequence__lt=barrier.sequence)
    rows = (
        head.annotate(has_other_slots=Exists(OperationSlot.objects.filter(entry=OuterRef("pk"))))
        .order_by("sequence")
        .values_list("pk", "status", "next_attempt_at", "has_other_slots")[:limit]
    )
    due = []
    for pk, status, next_attempt_at, has_other_slots in rows:
        if status == EntryStatus.FAILED or (next_attempt_at is not None and next_attempt_at > now):
            break
        if has_other_slots and waits_for_other_lanes(pk):
            break
        due.append(pk)
    return due


def open_slots(lane: str) -> QuerySet[OperationSlot]:
    """The slots other lanes' open entries hold in this lane."""
    return OperationSlot.objects.filter(lane_id=lane, entry__status__in=holding_statuses())


def first_open_slot(lane: str) -> OperationSlot | None:
    return open_slots(lane).select_related("entry").order_by("sequence").first()


def open_before(lane: str, sequence: int) -> bool:
    """Whether the lane has an open entry or slot before this sequence."""
    return open_before_own(lane, sequence) or open_slots(lane).filter(sequence__lt=sequence).exists()


def waits_for_other_lanes(entry_id: int) -> bool:
    """Whether an entry with slots in other lanes must still wait: one of them is paused or has
    not reached the entry's slot (something open comes before it there)."""
    for slot in OperationSlot.objects.filter(entry_id=entry_id).select_related("lane"):
        if slot.lane.paused or open_before(slot.lane_id, slot.sequence):
            return True
    return False


def lanes_waited_for(lane: str) -> list[str]:
    """The lanes whose two-slot entries this lane has reached: they may send them now.

    The lane's head is another lane's entry when its first open slot comes before its own
    first open entry.
    """
    slot = first_open_slot(lane)
    if slot is None or open_before_own(lane, slot.sequence):
        return []
    return [slot.entry.lane_id]


def open_before_own(lane: str, sequence: int) -> bool:
    """Whether the lane has an open entry of its own before this sequence."""
    return OperationLog.objects.filter(lane_id=lane, sequence__lt=sequence, status__in=holding_statuses()).exists()


def has_due_work(lane: str, now: datetime) -> bool:
    """Whether the lane has an entry that may be sent now."""
    return bool(due_entries(lane, now, limit=1))


def lane_has_live_lease(lane: str) -> bool:
    """Whether a chain holds the lane's lease and will pick new entries up by itself."""
    return SyncLane.objects.filter(lease.live(), pk=lane).exists()


def lanes_to_sweep() -> list[str]:
    """Lanes the sweep looks at: those with open entries or slots, or a lease (to expire)."""
    holding = holding_statuses()
    with_work = OperationLog.objects.filter(status__in=holding).values("lane_id")
    with_slots = OperationSlot.objects.filter(entry__status__in=holding).values("lane_id")
    return list(
        SyncLane.objects.filter(Q(pk__in=with_work) | Q(pk__in=with_slots) | ~Q(lease_token=""))
        .order_by("name")
        .values_list("name", flat=True)
    )
