"""Records an OperationLog entry inside the transaction that makes the change (I1, I3)."""

from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from sync.models import DEFAULT_LANE, Operation, OperationLog, Resource, SyncLane

NOT_IN_TRANSACTION = "record_operation() must run inside the transaction.atomic() block that makes the change."


def record_operation(
    *,
    operation: Operation,
    resource: Resource,
    object_id: int,
    payload: dict[str, Any],
    actor: AbstractBaseUser | None = None,
    lane: str = DEFAULT_LANE,
) -> OperationLog:
    """Insert the outbox entry for a change; call it as the last step of the writing transaction.

    The lane row stays locked from here until the transaction ends, so a transaction that
    takes a sequence commits before any transaction can take the next one: readers never
    see a lower sequence appear after a higher one (I3).
    """
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError(NOT_IN_TRANSACTION)
    return OperationLog.objects.create(
        lane_id=lane,
        sequence=_take_sequence(lane),
        operation=operation,
        resource=resource,
        object_id=object_id,
        payload=payload,
        actor=actor,
    )


def _take_sequence(lane: str) -> int:
    """Lock the lane's counter row until commit and advance it by one."""
    try:
        counter = SyncLane.objects.select_for_update().get(pk=lane)
    except SyncLane.DoesNotExist:
        SyncLane.objects.get_or_create(pk=lane)
        counter = SyncLane.objects.select_for_update().get(pk=lane)
    sequence = counter.next_sequence
    counter.next_sequence = sequence + 1
    counter.save(update_fields=["next_sequence"])
    return sequence
