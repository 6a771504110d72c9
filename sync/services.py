"""Operator actions on the outbox: retry, cancel and resend entries; pause and resume lanes."""

import functools
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from config.errors import ConflictError
from sync import wakeup
from sync.models import DEFAULT_LANE, EntryStatus, OperationLog, OperationSlot, SyncLane

logger = logging.getLogger(__name__)

RETRY_NOT_ALLOWED = (
    "Only a failed entry, or a pending one waiting for its next attempt, can be retried; this one is {status}."
)
CANCEL_NOT_ALLOWED = "Only a pending or failed entry can be cancelled; this one is {status}."
CANCEL_NEEDS_CONFIRMATION = (
    "The external system may already have applied entry #{sequence}: a send ended without a clear answer "
    "({error}). Cancelling stops further sends but does not undo it there. Confirm to cancel anyway."
)
CANCELLABLE_STATUSES = (EntryStatus.PENDING, EntryStatus.FAILED)


class EntryStateError(ConflictError):
    """The entry's status does not allow the requested action."""


class CancelNeedsConfirmation(ConflictError):
    """The entry may have been applied by the external system; cancelling it needs an explicit confirmation."""


@dataclass
class CancelResult:
    cancelled: list[OperationLog] = field(default_factory=list)
    refused: list[tuple[OperationLog, str]] = field(default_factory=list)  # with the reason


def entry_retry(*, entry: OperationLog, actor: User | None = None) -> OperationLog:
    """Make a failed (or backing-off) entry due now; the lane resumes with it."""
    with transaction.atomic():
        now = timezone.now()
        changed = OperationLog.objects.filter(pk=entry.pk, status__in=(EntryStatus.FAILED, EntryStatus.PENDING)).update(
            status=EntryStatus.PENDING, next_attempt_at=None, retried_by=actor, retried_at=now, updated_at=now
        )
        if not changed:
            entry.refresh_from_db(fields=["status"])
            raise EntryStateError(RETRY_NOT_ALLOWED.format(status=entry.get_status_display()))
        _kick_after_commit([entry.lane_id])
    _log("retried", entry, actor)
    entry.refresh_from_db()
    return entry


def entry_cancel(*, entry: OperationLog, actor: User | None = None, confirmed: bool = False) -> OperationLog:
    """Give up on an entry; the lane goes on after it. One that may have been applied needs ``confirmed``."""
    result = entries_cancel(entry_ids=[entry.pk], actor=actor, confirmed=confirmed)
    if result.refused:
        raise EntryStateError(result.refused[0][1])
    return result.cancelled[0]


def entries_cancel(*, entry_ids: Iterable[int], actor: User | None = None, confirmed: bool = False) -> CancelResult:
    """Cancel entries as one decision: one commit, so none of them is sent after it.

    Cancelling one at a time would free the lane after the first, and a worker could send
    the next before its cancel came. Entries being sent are refused; if any of the others
    may have been applied by the external system and ``confirmed`` is false, nothing is
    cancelled and CancelNeedsConfirmation says which.
    """
    result = CancelResult()
    now = timezone.now()
    with transaction.atomic():
        entries = list(OperationLog.objects.select_for_update().filter(pk__in=entry_ids).order_by("lane", "sequence"))
        for entry in entries:
            if entry.status in CANCELLABLE_STATUSES:
                result.cancelled.append(entry)
            else:
                result.refused.append((entry, CANCEL_NOT_ALLOWED.format(status=entry.get_status_display())))
        unconfirmed = [entry for entry in result.cancelled if entry.maybe_applied and not confirmed]
        if unconfirmed:
            raise CancelNeedsConfirmation(
                " ".join(
                    CANCEL_NEEDS_CONFIRMATION.format(sequence=entry.sequence, error=entry.last_error or "no answer")
                    for entry in unconfirmed
                )
            )
        OperationLog.objects.filter(pk__in=[entry.pk for entry in result.cancelled]).update(
            status=EntryStatus.CANCELLED, next_attempt_at=None, cancelled_by=actor, cancelled_at=now, updated_at=now
        )
        # The lanes the entries held slots in as well: they were waiting for them.
        slot_lanes = OperationSlot.objects.filter(entry__in=result.cancelled).values_list("lane_id", flat=True)
        _kick_after_commit({entry.lane_id for entry in result.cancelled} | set(slot_lanes))
    for entry in result.cancelled:
        entry.status, entry.cancelled_by, entry.cancelled_at, entry.next_attempt_at = (
            EntryStatus.CANCELLED,
            actor,
            now,
            None,
        )
        _log("cancelled", entry, actor)
    return result


def entries_resend(
    *, from_sequence: int, lane: str = DEFAULT_LANE, to_sequence: int | None = None, requested_by: str
) -> int:
    """Queue sent (or failed) entries again, in order, with their original idempotency keys.

    ``requested_by`` names who asked (a user name, or the account that ran the command), for the record.
    """
    entries = OperationLog.objects.filter(
        lane_id=lane, sequence__gte=from_sequence, status__in=(EntryStatus.SUCCEEDED, EntryStatus.FAILED)
    )
    if to_sequence is not None:
        entries = entries.filter(sequence__lte=to_sequence)
    with transaction.atomic():
        now = timezone.now()
        count = entries.update(
            status=EntryStatus.PENDING, next_attempt_at=None, resent_by=requested_by, resent_at=now, updated_at=now
        )
        _kick_after_commit([lane])
    logger.info(
        "resend lane=%s from_sequence=%s to_sequence=%s entries=%s by=%s",
        lane,
        from_sequence,
        to_sequence,
        count,
        requested_by,
    )
    return count


def lane_pause(*, lane: SyncLane, actor: User | None = None) -> SyncLane:
    """Stop a lane after the push in flight; writes to it go on and queue. Pausing it again changes nothing."""
    return _set_paused(lane, True, actor)


def lane_resume(*, lane: SyncLane, actor: User | None = None) -> SyncLane:
    """Let a paused lane send again, starting with its head. Resuming a running lane changes nothing."""
    return _set_paused(lane, False, actor)


def _set_paused(lane: SyncLane, paused: bool, actor: User | None) -> SyncLane:
    with transaction.atomic():
        changed = SyncLane.objects.filter(pk=lane.pk, paused=not paused).update(
            paused=paused, paused_changed_by=actor, paused_changed_at=timezone.now()
        )
        if changed and not paused:
            _kick_after_commit([lane.pk])
    if changed:
        logger.info("lane %s %s by=%s", lane.pk, "paused" if paused else "resumed", getattr(actor, "username", "-"))
    lane.refresh_from_db()
    return lane


def _kick_after_commit(lanes: Iterable[str]) -> None:
    for lane in sorted(set(lanes)):
        transaction.on_commit(functools.partial(wakeup.kick, lane), robust=True)


def _log(verb: str, entry: OperationLog, actor: User | None) -> None:
    logger.info(
        "entry %s lane=%s sequence=%s key=%s by=%s",
        verb,
        entry.lane_id,
        entry.sequence,
        entry.idempotency_key,
        getattr(actor, "username", "-"),
    )
