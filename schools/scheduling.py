"""Scheduled changes: validate at creation, wake a worker when due, run once, confirm or roll back.

Creating a change validates it exactly as the equivalent immediate API request would
(serializer, then the model's full validation), without writing the record. When it is
due a worker claims a batch of due changes (``running``, under row locks that other
workers skip), runs each through the services that make immediate changes, so the usual
OperationLog entry is recorded and sequenced at execution time, and confirms it (``done``)
in that same transaction. A transient error puts it back to ``scheduled`` with backoff; a
change that is no longer valid (its class was deleted, say) is ``failed`` with the reason.

Wake-ups are Celery ETA messages, at most one per WAKEUP_SLOT_SECONDS slot, sent for
changes due within WAKEUP_HORIZON_SECONDS; a periodic sweep sends them for later
changes as they come within reach, runs anything overdue and releases dead claims.
"""

import functools
import logging
import operator
import random
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from celery import signature
from django.contrib.auth.models import AbstractBaseUser
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import DatabaseError, IntegrityError, models, transaction
from django.db.models import F
from django.utils import timezone
from rest_framework import serializers as drf_serializers

from schools.models import ScheduledChange, ScheduledStatus
from schools.services import RESOURCES, RecordInUseError, delete_record, record_create, record_update
from sync.dispatcher import PUBLISH_ERRORS
from sync.models import DEFAULT_LANE, Operation, Resource
from sync.recorder import lock_lane

logger = logging.getLogger(__name__)

WAKEUP_SLOT_SECONDS = 0.1  # changes due in the same slot share one wake-up message
WAKEUP_HORIZON_SECONDS = 60  # ETA messages only for changes due this soon; the sweep does the rest
CLAIM_BATCH_SIZE = 100  # changes claimed per transaction
# Changes applied per transaction: one commit for all, but the lane lock (which immediate
# writes wait for) is held while the chunk runs, a few milliseconds per change.
EXECUTE_CHUNK_SIZE = 20
MAX_DRAIN_SECONDS = 10  # one run_due task hands over to a fresh one after this long
CLAIM_LEASE_SECONDS = 120  # a claim older than this belongs to a dead worker
RETRY_BASE_SECONDS = 1.0
RETRY_MAX_SECONDS = 300.0
MAX_ATTEMPTS = 10  # after this many transient failures a change is failed
PAST_TOLERANCE_SECONDS = 60  # how far in the past execute_at may be (clock skew)

TARGET_REQUIRED = "An update or delete needs the target_id of the record to change."
TARGET_NOT_ALLOWED = "A create has no target_id."
DELETE_TAKES_NO_DATA = "A delete takes no data."
TARGET_MISSING = "There is no {resource} record with id {target_id}."
EXECUTE_AT_IN_THE_PAST = "execute_at is in the past."
NOT_CANCELLABLE = "Only a scheduled change can be cancelled; this one is {status}."

MODELS = {resource: (model, serializer) for model, (resource, serializer) in RESOURCES.items()}
PERMISSION_ACTIONS = {Operation.CREATE: "add", Operation.UPDATE: "change", Operation.DELETE: "delete"}


class NotCancellableError(Exception):
    """The change has started or finished; it can no longer be cancelled."""


class _ClaimLost(Exception):
    """Another worker took the change over after our claim expired."""


def required_permission(resource: str, operation: str) -> str:
    model, _ = MODELS[Resource(resource)]
    return f"{model._meta.app_label}.{PERMISSION_ACTIONS[Operation(operation)]}_{model._meta.model_name}"


# --- Validation, shared by creation and execution -------------------------------------


@dataclass
class PreparedChange:
    model: type[models.Model]
    instance: models.Model | None  # the record to update or delete
    data: Mapping[str, Any]  # validated field values


_UNFETCHED = object()


def prepare(
    resource: str, operation: str, target_id: int | None, data: Mapping[str, Any], target: Any = _UNFETCHED
) -> PreparedChange:
    """Check a change the way the immediate API request does; raises ValidationError.

    ``target`` is the record to change when the caller fetched it already (None: not found).
    """
    model, serializer_class = MODELS[Resource(resource)]
    if operation == Operation.CREATE:
        if target_id is not None:
            raise ValidationError({"target_id": TARGET_NOT_ALLOWED})
        return PreparedChange(model, None, _validated(serializer_class, data))
    if target_id is None:
        raise ValidationError({"target_id": TARGET_REQUIRED})
    instance = model.objects.filter(pk=target_id).first() if target is _UNFETCHED else target
    if instance is None:
        raise ValidationError({"target_id": TARGET_MISSING.format(resource=resource, target_id=target_id)})
    if operation == Operation.DELETE:
        if data:
            raise ValidationError({"data": DELETE_TAKES_NO_DATA})
        return PreparedChange(model, instance, {})
    return PreparedChange(model, instance, _validated(serializer_class, data, instance, partial=True))


def _validated(serializer_class, data: Mapping[str, Any], instance=None, partial: bool = False) -> dict[str, Any]:
    serializer = _serializer(serializer_class, partial)
    serializer.instance = instance
    try:
        return serializer.run_validation(data)
    except drf_serializers.ValidationError as exc:
        raise ValidationError({"data": [_flatten(exc.detail)]}) from exc


_per_thread = threading.local()


def _serializer(serializer_class, partial: bool):
    """One validating serializer per kind and thread: building a ModelSerializer's fields is costly."""
    serializers = _per_thread.__dict__.setdefault("serializers", {})
    key = (serializer_class, partial)
    if key not in serializers:
        serializers[key] = serializer_class(partial=partial)
    return serializers[key]


def _flatten(errors: Mapping[str, Any]) -> str:
    return "; ".join(f"{field}: {' '.join(str(m) for m in messages)}" for field, messages in errors.items())


def validate_as_immediate(prepared: PreparedChange) -> None:
    """Run the model validation the service would run, without writing anything."""
    if prepared.instance is None:
        candidate = prepared.model(**prepared.data)
    elif prepared.data:
        candidate = _detached_copy(prepared.instance)
        for field, value in prepared.data.items():
            setattr(candidate, field, value)
    else:
        return
    untouched = _untouched_unique_fields(prepared.model, prepared.data) if prepared.instance is not None else set()
    try:
        candidate.full_clean(exclude=untouched)
    except ValidationError as exc:
        raise ValidationError({"data": exc.messages}) from exc


def _untouched_unique_fields(model: type[models.Model], changed: Mapping[str, Any]) -> set[str]:
    """Single-field unique fields an update leaves alone: they cannot start clashing, so
    their uniqueness queries are skipped (as a ModelForm skips fields it does not edit).
    Fields in multi-field constraints are always checked."""
    in_composites = {
        name
        for constraint in model._meta.constraints
        if isinstance(constraint, models.UniqueConstraint)
        for name in (constraint.fields if len(constraint.fields) > 1 or constraint.expressions else ())
    }
    return {
        field.name
        for field in model._meta.concrete_fields
        if field.unique and not field.primary_key and field.name not in changed and field.name not in in_composites
    }


def _detached_copy(instance: models.Model) -> models.Model:
    """The same stored record as a separate object, so validating a change leaves the original alone."""
    values = [getattr(instance, field.attname) for field in instance._meta.concrete_fields]
    return type(instance).from_db(instance._state.db, None, values)


def _targets(changes: list[Mapping[str, Any]]) -> dict[tuple[str, int], models.Model]:
    """The records a batch updates or deletes, one query per resource."""
    wanted: dict[str, set[int]] = {}
    for change in changes:
        if change.get("target_id") is not None and change.get("resource") in MODELS:
            wanted.setdefault(change["resource"], set()).add(change["target_id"])
    found = {}
    for resource, ids in wanted.items():
        model, _ = MODELS[Resource(resource)]
        found.update({(resource, pk): record for pk, record in model.objects.in_bulk(ids).items()})
    return found


# --- Creating and cancelling ------------------------------------------------------------


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
    actor: AbstractBaseUser | None = None,
) -> ScheduledChange:
    change = {"execute_at": execute_at, "resource": resource, "operation": operation, "target_id": target_id}
    try:
        [created] = scheduled_changes_create([{**change, "data": data or {}}], actor=actor)
    except InvalidChangesError as exc:
        raise ValidationError(exc.errors[0]) from exc
    return created


def scheduled_changes_create(changes: Iterable[Mapping[str, Any]], *, actor=None) -> list[ScheduledChange]:
    """Validate and store a batch of changes, all or none."""
    now = timezone.now()
    changes = list(changes)
    targets = _targets(changes)
    rows, errors = [], []
    for change in changes:
        data = dict(change.get("data") or {})
        target_id = change.get("target_id")
        try:
            if change["execute_at"] < now - timedelta(seconds=PAST_TOLERANCE_SECONDS):
                raise ValidationError({"execute_at": EXECUTE_AT_IN_THE_PAST})
            target = targets.get((change["resource"], target_id))
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
            )
        )
    if any(errors):
        raise InvalidChangesError(errors)
    with transaction.atomic():
        created = ScheduledChange.objects.bulk_create(rows)
        soon = [row.due_at for row in created if row.due_at <= now + timedelta(seconds=WAKEUP_HORIZON_SECONDS)]
        if soon:
            transaction.on_commit(lambda: _wake_at(soon), robust=True)
    return created


def scheduled_change_cancel(*, change: ScheduledChange, actor: AbstractBaseUser | None = None) -> ScheduledChange:
    """Cancel a change that has not started. Cancel and claim are one row update each: one wins."""
    cancelled = ScheduledChange.objects.filter(pk=change.pk, status=ScheduledStatus.SCHEDULED).update(
        status=ScheduledStatus.CANCELLED, finished_at=timezone.now(), updated_at=timezone.now()
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
            permitted.filter(status=ScheduledStatus.SCHEDULED).select_for_update().values_list("pk", flat=True)
        )
        ScheduledChange.objects.filter(pk__in=cancelled).update(
            status=ScheduledStatus.CANCELLED, finished_at=now, updated_at=now
        )
        started = set(permitted.exclude(pk__in=cancelled).values_list("pk", flat=True))
    return {
        "cancelled": sorted(map(str, cancelled)),
        "not_cancellable": sorted(map(str, started)),
        "not_found": sorted(map(str, ids - cancelled - started)),
    }


# --- Waking up ----------------------------------------------------------------------


def _slot(moment: datetime) -> datetime:
    """The end of the wake-up slot a moment falls in."""
    seconds = moment.timestamp()
    end = (int(seconds / WAKEUP_SLOT_SECONDS) + 1) * WAKEUP_SLOT_SECONDS
    return datetime.fromtimestamp(end, tz=moment.tzinfo)


def _wake_at(moments: Iterable[datetime]) -> None:
    """Send one run_due message per slot, at the slot's end; duplicates are harmless."""
    for slot in sorted({_slot(moment) for moment in moments}):
        key = f"schools:wakeup:{slot.timestamp():.1f}"
        try:
            if not cache.add(key, 1, timeout=WAKEUP_HORIZON_SECONDS * 3):
                continue  # another writer already sent this slot's wake-up
        except Exception:
            logger.warning("wake-up cache unavailable; sending anyway", exc_info=True)
        try:
            signature("schools.run_due_changes").apply_async(eta=slot, retry=False)
        except PUBLISH_ERRORS:
            logger.warning("could not publish a wake-up for %s; the sweep will run it", slot, exc_info=True)
            cache.delete(key)  # so that the sweep's wake-up for this slot is not skipped


def sweep_scheduled_changes() -> dict[str, int]:
    """Release dead claims, run what is overdue, and send wake-ups for changes coming due."""
    now = timezone.now()
    released = ScheduledChange.objects.filter(
        status=ScheduledStatus.RUNNING, claimed_at__lt=now - timedelta(seconds=CLAIM_LEASE_SECONDS)
    ).update(status=ScheduledStatus.SCHEDULED, claim_token="", updated_at=now)
    upcoming = list(
        ScheduledChange.objects.filter(
            status=ScheduledStatus.SCHEDULED, due_at__lte=now + timedelta(seconds=WAKEUP_HORIZON_SECONDS)
        )
        .values_list("due_at", flat=True)
        .distinct()
    )
    _wake_at(max(moment, now) for moment in upcoming)
    return {"released": released, "upcoming": len(upcoming)}


# --- Running -----------------------------------------------------------------------------


def run_due_changes() -> int:
    """Claim and run due changes until none is left (or hand over to a fresh task)."""
    started = time.monotonic()
    ran = 0
    while claimed := _claim_due(timezone.now()):
        for start in range(0, len(claimed), EXECUTE_CHUNK_SIZE):
            execute_chunk(claimed[start : start + EXECUTE_CHUNK_SIZE])
        ran += len(claimed)
        if time.monotonic() - started > MAX_DRAIN_SECONDS:
            signature("schools.run_due_changes").apply_async()
            break
    return ran


@transaction.atomic
def _claim_due(now: datetime) -> list[ScheduledChange]:
    ids = list(
        ScheduledChange.objects.select_for_update(skip_locked=True)
        .filter(status=ScheduledStatus.SCHEDULED, due_at__lte=now)
        .order_by("due_at")
        .values_list("pk", flat=True)[:CLAIM_BATCH_SIZE]
    )
    if not ids:
        return []
    token = uuid.uuid4().hex
    ScheduledChange.objects.filter(pk__in=ids, status=ScheduledStatus.SCHEDULED).update(
        status=ScheduledStatus.RUNNING,
        claim_token=token,
        claimed_at=now,
        attempts=F("attempts") + 1,
        updated_at=now,
    )
    return list(ScheduledChange.objects.filter(claim_token=token).select_related("created_by").order_by("due_at"))


def execute_chunk(changes: list[ScheduledChange]) -> None:
    """Apply claimed changes in one transaction, each confirmed (``done``) with its own write.

    Each change runs in a savepoint: one that is no longer valid is ``failed`` alone. A
    transient database error rolls the whole chunk back; every change in it is then
    retried later. One commit (and one dispatcher kick) serves the whole chunk.
    """
    outcomes: list[tuple[ScheduledChange, str]] = []
    try:
        with transaction.atomic():
            # Before anything is read: the targets cannot change (or go) until the chunk commits.
            lock_lane(DEFAULT_LANE)
            for change in changes:
                outcomes.append((change, _execute_in_savepoint(change)))
    except DatabaseError as exc:
        for change in changes:
            _retry_later(change, f"{type(exc).__name__}: {exc}")
        return
    for change, outcome in outcomes:
        logger.info(
            "scheduled change %s %s: %s %s, %.3f s after execute_at",
            change.pk,
            outcome,
            change.operation,
            change.resource,
            (timezone.now() - change.execute_at).total_seconds(),
        )


def _execute_in_savepoint(change: ScheduledChange) -> str:
    try:
        with transaction.atomic():
            object_id = _apply(change)
            confirmed = _mine(change).update(
                status=ScheduledStatus.DONE,
                result_object_id=object_id,
                started_at=F("claimed_at"),
                finished_at=timezone.now(),
                error="",
                updated_at=timezone.now(),
            )
            if not confirmed:
                raise _ClaimLost
    except _ClaimLost:
        return "taken over by another worker; not applied here"
    except (ValidationError, RecordInUseError, IntegrityError) as exc:
        _fail(change, _reason(exc))
        return "failed"
    except DatabaseError:
        raise
    except Exception as exc:  # a bug in one change must not retry forever, nor hold the others back
        logger.exception("scheduled change %s raised", change.pk)
        _retry_later(change, f"{type(exc).__name__}: {exc}")
        return "to be retried"
    return "done"


def _apply(change: ScheduledChange) -> int:
    prepared = prepare(change.resource, change.operation, change.target_id, change.data)
    actor = change.created_by
    if change.operation == Operation.CREATE:
        return record_create(model=prepared.model, data=prepared.data, actor=actor).pk
    if change.operation == Operation.UPDATE:
        return record_update(instance=prepared.instance, data=prepared.data, actor=actor).pk
    object_id = prepared.instance.pk
    delete_record(instance=prepared.instance, actor=actor)
    return object_id


def _mine(change: ScheduledChange):
    return ScheduledChange.objects.filter(pk=change.pk, status=ScheduledStatus.RUNNING, claim_token=change.claim_token)


def _fail(change: ScheduledChange, reason: str) -> None:
    _mine(change).update(
        status=ScheduledStatus.FAILED, error=reason, finished_at=timezone.now(), updated_at=timezone.now()
    )
    logger.warning("scheduled change %s failed: %s", change.pk, reason)


def _retry_later(change: ScheduledChange, reason: str) -> None:
    if change.attempts >= MAX_ATTEMPTS:
        _fail(change, f"gave up after {change.attempts} attempts: {reason}")
        return
    ceiling = min(RETRY_MAX_SECONDS, RETRY_BASE_SECONDS * 2 ** (change.attempts - 1))
    due_at = timezone.now() + timedelta(seconds=random.uniform(ceiling / 2, ceiling))  # noqa: S311 - jitter
    _mine(change).update(
        status=ScheduledStatus.SCHEDULED, due_at=due_at, claim_token="", error=reason, updated_at=timezone.now()
    )
    logger.warning("scheduled change %s will be retried at %s: %s", change.pk, due_at.isoformat(), reason)
    transaction.on_commit(lambda: _wake_at([due_at]), robust=True)  # never publish under the lane lock


def _reason(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return _flatten(exc.message_dict) if hasattr(exc, "error_dict") else " ".join(exc.messages)
    return str(exc)
