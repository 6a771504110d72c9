"""Creating and cancelling scheduled changes: validated when created, all or none per batch."""

import functools
import logging
import operator
import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.utils import timezone

from config.errors import ConflictError
from schools.scheduling import wakeups
from schools.scheduling.models import ScheduledChange, ScheduledChangeStatus
from schools.scheduling.validation import prepare, targets, validate_as_immediate

logger = logging.getLogger(__name__)

PAST_TOLERANCE_SECONDS = 60
"""How far in the past execute_at may be (clock skew between the client and us)."""

EXECUTE_AT_IN_THE_PAST = "execute_at is in the past."
EXECUTE_AT_TOO_FAR = "execute_at is more than {days} days ahead (SCHEDULED_CHANGES_HORIZON_DAYS)."
NOT_CANCELLABLE = "Only a scheduled change can be cancelled; this one is {status}."


class NotCancellableError(ConflictError):
    """The change has started or finished; it can no longer be cancelled."""


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
    actor: User | None = None,
) -> ScheduledChange:
    change = {"execute_at": execute_at, "resource": resource, "operation": operation, "target_id": target_id}
    try:
        [created] = scheduled_changes_create([{**change, "data": data or {}}], actor=actor)
    except InvalidChangesError as exc:
        raise ValidationError(exc.errors[0]) from exc
    return created


def scheduled_changes_create(
    changes: Iterable[Mapping[str, Any]], *, actor: User | None = None
) -> list[ScheduledChange]:
    """Validate and store a batch of changes, all or none."""
    now = timezone.now()
    changes = list(changes)
    found = targets(changes)
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
            validate_as_immediate(prepare(change["resource"], change["operation"], target_id, data, target))
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
                created_by=actor,
                # In the batch's order, a microsecond apart: ties at execute_at run in creation order.
                created_at=now + timedelta(microseconds=len(rows)),
            )
        )
    if any(errors):
        raise InvalidChangesError(errors)
    with transaction.atomic():
        created = ScheduledChange.objects.bulk_create(rows)
        soon = [row.due_at for row in created if row.due_at <= now + timedelta(seconds=wakeups.WAKEUP_HORIZON_SECONDS)]
        if soon:
            transaction.on_commit(lambda: wakeups.wake_at(soon), robust=True)
    return created


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


def scheduled_changes_cancel(*, ids: Iterable[uuid.UUID], allowed: Iterable[tuple[str, str]]) -> dict[str, list]:
    """Cancel many changes at once; only those of an allowed (resource, operation) kind.

    Returns the ids cancelled, those that had already started or finished, and those not found
    or not allowed.
    """
    ids = set(ids)
    kinds = [models.Q(resource=resource, operation=operation) for resource, operation in allowed]
    if not kinds:
        return {"cancelled": [], "not_cancellable": [], "not_found": sorted(map(str, ids))}
    permitted = ScheduledChange.objects.filter(pk__in=ids).filter(functools.reduce(operator.or_, kinds))
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
