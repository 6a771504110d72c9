"""Creating and cancelling scheduled changes: validated when created, all or none per batch."""

import logging
import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from config.errors import ConflictError
from schools.scheduling import wakeups
from schools.scheduling.models import ScheduledChange, ScheduledChangeStatus
from schools.scheduling.validation import prepare, school_of_prepared, targets, validate_as_immediate

logger = logging.getLogger(__name__)

PAST_TOLERANCE_SECONDS = 60
"""How far in the past execute_at may be (clock skew between the client and us)."""

EXECUTE_AT_IN_THE_PAST = "execute_at is in the past."
EXECUTE_AT_TOO_FAR = "execute_at is more than {days} days ahead (SCHEDULED_CHANGES_HORIZON_DAYS)."
NOT_CANCELLABLE = "Only a scheduled change can be cancelled; this one is {status}."
TOO_MANY_PER_MINUTE = (
    "You may schedule at most {limit} changes a minute (SCHEDULED_CHANGES_PER_MINUTE); "
    "{recent} were scheduled in the last minute. Try again in a minute."
)
TOO_MANY_PENDING = (
    "You may have at most {limit} changes waiting to run (SCHEDULED_CHANGES_MAX_PENDING); "
    "{pending} are waiting. Cancel some, or wait for them to run."
)
LIMIT_WINDOW_SECONDS = 60


class NotCancellableError(ConflictError):
    """The change has started or finished; it can no longer be cancelled."""


class SchedulingLimitError(Exception):
    """The user has scheduled as many changes as they may for now; ``retry_after`` in seconds, if known."""

    def __init__(self, message: str, retry_after: int | None):
        super().__init__(message)
        self.retry_after = retry_after


class InvalidChangesError(Exception):
    """Some changes of a batch are invalid; ``errors`` has one dict per change (empty if valid)."""

    def __init__(self, errors: list[dict[str, list[str]]]):
        super().__init__(errors)
        self.errors = errors


def scheduled_change_create(
    *,
    execute_at: datetime,
    resource: str,
    operation: str,
    target_id: int | None = None,
    data: Mapping[str, Any] | None = None,
    actor: User,
) -> ScheduledChange:
    change = {"execute_at": execute_at, "resource": resource, "operation": operation, "target_id": target_id}
    try:
        [created] = scheduled_changes_create([{**change, "data": data or {}}], actor=actor)
    except InvalidChangesError as exc:
        raise ValidationError(exc.errors[0]) from exc
    return created


def scheduled_changes_create(changes: Iterable[Mapping[str, Any]], *, actor: User) -> list[ScheduledChange]:
    """Validate and store a batch of changes, all or none, as the actor's immediate requests would be.

    Each belongs to the school of the record it changes (for a create, its parent's), and
    runs later with the rights the actor has then. Raises SchedulingLimitError when the
    batch would take the actor over their limits.
    """
    now = timezone.now()
    changes = list(changes)
    found = targets(changes, actor)
    rows: list[ScheduledChange] = []
    errors: list[dict[str, list[str]]] = []
    for change in changes:
        data = dict(change.get("data") or {})
        target_id: int | None = change.get("target_id")
        try:
            if change["execute_at"] < now - timedelta(seconds=PAST_TOLERANCE_SECONDS):
                raise ValidationError({"execute_at": EXECUTE_AT_IN_THE_PAST})
            horizon = settings.SCHEDULED_CHANGES_HORIZON_DAYS
            if change["execute_at"] > now + timedelta(days=horizon):
                raise ValidationError({"execute_at": EXECUTE_AT_TOO_FAR.format(days=horizon)})
            target = found.get((change["resource"], target_id)) if target_id is not None else None
            prepared = prepare(change["resource"], change["operation"], target_id, data, user=actor, target=target)
            validate_as_immediate(prepared)
        except ValidationError as exc:
            errors.append(exc.message_dict)
            continue
        errors.append({})
        rows.append(
            ScheduledChange(
                execute_at=change["execute_at"],
                due_at=change["execute_at"],
                resource=change["resource"],
                operation=change["operation"],
                target_id=change.get("target_id"),
                data=data,
                school_id=school_of_prepared(prepared),
                created_by=actor,
                # In the batch's order, a microsecond apart: ties at execute_at run in creation order.
                created_at=now + timedelta(microseconds=len(rows)),
            )
        )
    if any(errors):
        raise InvalidChangesError(errors)
    with transaction.atomic():
        _check_limits(actor, len(rows), now)
        created = ScheduledChange.objects.bulk_create(rows)
        soon = [row.due_at for row in created if row.due_at <= now + timedelta(seconds=wakeups.WAKEUP_HORIZON_SECONDS)]
        if soon:
            transaction.on_commit(lambda: wakeups.wake_at(soon), robust=True)
    return created


def _check_limits(actor: User, count: int, now: datetime) -> None:
    """Refuse a batch that takes the actor over their per-minute or pending limit.

    The actor's row is locked first, so two batches of one user are counted one after the other.
    """
    list(User.objects.select_for_update().filter(pk=actor.pk).values_list("pk", flat=True))
    mine = ScheduledChange.objects.filter(created_by=actor)
    per_minute = settings.SCHEDULED_CHANGES_PER_MINUTE
    recent = mine.filter(created_at__gt=now - timedelta(seconds=LIMIT_WINDOW_SECONDS)).count()
    if recent + count > per_minute:
        raise SchedulingLimitError(
            TOO_MANY_PER_MINUTE.format(limit=per_minute, recent=recent), retry_after=LIMIT_WINDOW_SECONDS
        )
    max_pending = settings.SCHEDULED_CHANGES_MAX_PENDING
    pending = mine.filter(status=ScheduledChangeStatus.SCHEDULED).count()
    if pending + count > max_pending:
        raise SchedulingLimitError(TOO_MANY_PENDING.format(limit=max_pending, pending=pending), retry_after=None)


def scheduled_change_cancel(*, change: ScheduledChange, actor: User | None = None) -> ScheduledChange:
    """Cancel a change that has not started. Cancel and claim are one row update each: one wins."""
    cancelled = ScheduledChange.objects.filter(pk=change.pk, status=ScheduledChangeStatus.SCHEDULED).update(
        status=ScheduledChangeStatus.CANCELLED, finished_at=timezone.now(), updated_at=timezone.now()
    )
    change.refresh_from_db()
    if not cancelled:
        raise NotCancellableError(NOT_CANCELLABLE.format(status=change.get_status_display().lower()))
    logger.info("scheduled change %s cancelled by %s", change.pk, getattr(actor, "username", "-"))
    return change


def scheduled_changes_cancel(*, ids: Iterable[uuid.UUID], allowed: Iterable[uuid.UUID]) -> dict[str, list]:
    """Cancel many changes at once: those of ``ids`` that are also ``allowed`` (to this user).

    Returns the ids cancelled, those that had already started or finished, and those not found
    or not allowed.
    """
    ids = set(ids)
    permitted = ScheduledChange.objects.filter(pk__in=ids & set(allowed))
    now = timezone.now()
    with transaction.atomic():
        cancelled = set(
            permitted.filter(status=ScheduledChangeStatus.SCHEDULED).select_for_update().values_list("pk", flat=True)
        )
        ScheduledChange.objects.filter(pk__in=cancelled).update(
            status=ScheduledChangeStatus.CANCELLED, finished_at=now, updated_at=now
        )
        started = set(permitted.exclude(pk__in=cancelled).values_list("pk", flat=True))
    return {
        "cancelled": sorted(map(str, cancelled)),
        "not_cancellable": sorted(map(str, started)),
        "not_found": sorted(map(str, ids - cancelled - started)),
    }
