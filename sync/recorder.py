"""Records an OperationLog entry inside the transaction that makes the change (I1, I3)."""

from collections.abc import Iterable
from typing import Any

from django.contrib.auth.models import User
from django.db import connection, transaction

from sync import lanes
from sync.models import DEFAULT_LANE, Operation, OperationLog, OperationSlot, ReleasedValue, Resource, SyncLane
from sync.wakeup import kick

NOT_IN_TRANSACTION = "entry_create() must run inside the transaction.atomic() block that makes the change."


def entry_create(
    *,
    operation: Operation,
    resource: Resource,
    object_id: int,
    payload: dict[str, Any],
    actor: User | None = None,
    lane: str = DEFAULT_LANE,
    other_lanes: Iterable[str] = (),
    releases: Iterable[str] = (),
    school_id: int | None = None,
    other_school_id: int | None = None,
) -> OperationLog:
    """Insert the outbox entry for a change; call it as the last step of the writing transaction.

    The entry takes the next sequence of its lane and a slot (a sequence) in each of
    ``other_lanes``: the lanes of the other schools a change involves. ``releases`` names
    the values unique across lanes the change gave up (see ReleasedValue). ``school_id`` is the
    school of the record, ``other_school_id`` the one a move took it from. The lane rows stay
    locked until the transaction ends, so a transaction that takes a sequence commits
    before any other transaction can take the next one: readers never see a lower sequence
    appear after a higher one (I3). Registers one dispatcher kick per lane and
    transaction, run after commit.
    """
    connection = transaction.get_connection()
    if not connection.in_atomic_block:
        raise RuntimeError(NOT_IN_TRANSACTION)
    others = sorted(set(other_lanes) - {lane})
    if others:
        lock_lanes([lane, *others])  # a no-op when the service locked them first, as it should
    if not any(getattr(callback, "kicks_lane", None) == lane for _, callback, _ in connection.run_on_commit):
        # robust: the change is committed whatever happens to the kick; the sweep covers for it.
        transaction.on_commit(_LaneKick(lane), robust=True)
    entry = OperationLog.objects.create(
        lane_id=lane,
        sequence=_take_sequence(lane),
        operation=operation,
        resource=resource,
        object_id=object_id,
        payload=payload,
        actor=actor,
        school_id=school_id,
        other_school_id=other_school_id if other_school_id != school_id else None,
    )
    OperationSlot.objects.bulk_create(
        OperationSlot(entry=entry, lane_id=other, sequence=_take_sequence(other)) for other in others
    )
    if lanes.by_school():  # with one lane, the lane's order alone keeps hand-overs in order
        ReleasedValue.objects.bulk_create(ReleasedValue(entry=entry, key=key) for key in releases)
    return entry


class _LaneKick:
    """Kicks the lane's dispatcher after commit; one per lane per transaction."""

    def __init__(self, lane: str):
        self.kicks_lane = lane

    def __call__(self) -> None:
        kick(self.kicks_lane)


def lock_lane(lane: str = DEFAULT_LANE) -> SyncLane:
    """Lock the lane's row until the transaction ends.

    Services take this lock before they validate, so writes to a lane run one at a time:
    uniqueness and cross-record checks see a world no concurrent write can change under
    them, and sequences are taken in commit order.
    """
    return SyncLane.objects.select_for_update().get_or_create(pk=lane)[0]


def lock_lanes(names: Iterable[str]) -> None:
    """Lock several lanes' rows until the transaction ends, in name order.

    Every transaction that locks more than one lane locks them in this one order, so two
    of them never wait for each other.
    """
    for name in sorted(set(names)):
        lock_lane(name)


def _take_sequence(lane: str) -> int:
    """Advance the lane's counter and return the sequence taken, in one statement.

    The UPDATE locks the row until commit (the service usually holds that lock already).
    """
    table = SyncLane._meta.db_table
    sql = f"UPDATE {table} SET next_sequence = next_sequence + 1 WHERE name = %s RETURNING next_sequence - 1"  # noqa: S608
    with connection.cursor() as cursor:
        cursor.execute(sql, [lane])
        row = cursor.fetchone()
        if row is None:  # a lane nobody has written to yet
            lock_lane(lane)
            cursor.execute(sql, [lane])
            row = cursor.fetchone()
    return row[0]
