"""Operator actions on the outbox: retry, cancel and resend entries."""

import logging

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from config.errors import ConflictError
from sync.models import DEFAULT_LANE, EntryStatus, OperationLog
from sync.wakeup import kick

logger = logging.getLogger(__name__)

RETRY_NOT_ALLOWED = (
    "Only a failed entry, or a pending one waiting for its next attempt, can be retried; this one is {status}."
)
CANCEL_NOT_ALLOWED = "Only a pending or failed entry can be cancelled; this one is {status}."


class EntryStateError(ConflictError):
    """The entry's status does not allow the requested action."""


def entry_retry(*, entry: OperationLog, actor: User | None = None) -> OperationLog:
    """Make a failed (or backing-off) entry due now; the lane resumes with it."""
    return _transition(
        entry, (EntryStatus.FAILED, EntryStatus.PENDING), EntryStatus.PENDING, RETRY_NOT_ALLOWED, actor, "retried"
    )


def entry_cancel(*, entry: OperationLog, actor: User | None = None) -> OperationLog:
    """Give up on an entry that was not sent; the lane goes on after it."""
    return _transition(
        entry, (EntryStatus.PENDING, EntryStatus.FAILED), EntryStatus.CANCELLED, CANCEL_NOT_ALLOWED, actor, "cancelled"
    )


def entries_resend(*, from_sequence: int, lane: str = DEFAULT_LANE, to_sequence: int | None = None) -> int:
    """Queue sent (or failed) entries again, in order, with their original idempotency keys."""
    entries = OperationLog.objects.filter(
        lane_id=lane, sequence__gte=from_sequence, status__in=(EntryStatus.SUCCEEDED, EntryStatus.FAILED)
    )
    if to_sequence is not None:
        entries = entries.filter(sequence__lte=to_sequence)
    with transaction.atomic():
        count = entries.update(status=EntryStatus.PENDING, next_attempt_at=None, updated_at=timezone.now())
        transaction.on_commit(lambda: kick(lane), robust=True)
    logger.info("resend lane=%s from_sequence=%s to_sequence=%s entries=%s", lane, from_sequence, to_sequence, count)
    return count


def _transition(entry, allowed, new_status, refusal, actor, verb) -> OperationLog:
    with transaction.atomic():
        changed = OperationLog.objects.filter(pk=entry.pk, status__in=allowed).update(
            status=new_status, next_attempt_at=None, updated_at=timezone.now()
        )
        if not changed:
            entry.refresh_from_db(fields=["status"])
            raise EntryStateError(refusal.format(status=entry.get_status_display()))
        transaction.on_commit(lambda: kick(entry.lane_id), robust=True)
    logger.info(
        "entry %s lane=%s sequence=%s key=%s by=%s",
        verb,
        entry.lane_id,
        entry.sequence,
        entry.idempotency_key,
        getattr(actor, "username", "-"),
    )
    entry.refresh_from_db()
    return entry
