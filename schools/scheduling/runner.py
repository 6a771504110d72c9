"""Running due scheduled changes: claim a batch, apply each through the record services, confirm it."""

import logging
import time
import uuid
from datetime import datetime, timedelta
from typing import cast

from celery import signature
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import DatabaseError, IntegrityError, models, transaction
from django.db.models import Exists, F, OuterRef, Q
from django.utils import timezone

from config.errors import ConflictError
from schools.lanes import LanesBusyError
from schools.scheduling import wakeups
from schools.scheduling.models import ScheduledChange, ScheduledChangeStatus
from schools.scheduling.validation import MODELS, creator_refusal, error_text, prepare
from schools.services import record_create, record_delete, record_update
from sync import lanes
from sync.backoff import backoff_seconds
from sync.clock import DatabaseNow, database_now_plus
from sync.models import DEFAULT_LANE, Operation, Resource
from sync.recorder import lock_lanes

logger = logging.getLogger(__name__)

CLAIM_BATCH_SIZE = 100
"""Changes claimed per transaction."""

EXECUTE_CHUNK_SIZE = 20
"""Changes applied per transaction: one commit for all, but the lane lock (which immediate
writes wait for) is held while the chunk runs, a few milliseconds per change."""

MAX_DRAIN_SECONDS = 10
"""One run_due task hands over to a fresh one after this long."""

CLAIM_LEASE_SECONDS = 5
"""A claim not renewed for this long belongs to a dead worker; a live one renews its claim
before each chunk, which takes well under a second."""

RETRY_BASE_SECONDS = 1.0
RETRY_MAX_SECONDS = 300.0
MAX_ATTEMPTS = 10
"""After this many transient failures a change is failed."""


class _ClaimLost(Exception):
    """Another worker took the change over after our claim expired."""


def run_due() -> int:
    """Claim and run due changes until none is left (or hand over to a fresh task)."""
    started = time.monotonic()
    ran = 0
    while claimed := claim_due(timezone.now()):
        for start in range(0, len(claimed), EXECUTE_CHUNK_SIZE):
            chunk = claimed[start : start + EXECUTE_CHUNK_SIZE]
            renew_claim(chunk[0].claim_token)
            execute_chunk(chunk)
        ran += len(claimed)
        if time.monotonic() - started > MAX_DRAIN_SECONDS:
            signature("schools.run_due_changes").apply_async()
            break
    return ran


@transaction.atomic
def claim_due(now: datetime) -> list[ScheduledChange]:
    """Mark a batch of due changes ``running`` under a fresh claim token; other workers skip them.

    A change is claimed only when no earlier change of the same record is unfinished
    (scheduled or running), earlier meaning by ``execute_at``, then by creation: changes
    to one record run one at a time and in that order, whichever worker runs them, and
    also after a retry or a released claim moved a change's ``due_at``.
    """
    unfinished = (ScheduledChangeStatus.SCHEDULED, ScheduledChangeStatus.RUNNING)
    earlier_of_the_same_record = ScheduledChange.objects.filter(
        Q(execute_at__lt=OuterRef("execute_at"))
        | Q(execute_at=OuterRef("execute_at"), created_at__lt=OuterRef("created_at")),
        resource=OuterRef("resource"),
        target_id=OuterRef("target_id"),
        status__in=unfinished,
    )
    ids = list(
        ScheduledChange.objects.select_for_update(skip_locked=True)
        .filter(status=ScheduledChangeStatus.SCHEDULED, due_at__lte=now)
        .exclude(Exists(earlier_of_the_same_record))
        .order_by("execute_at", "created_at")
        .values_list("pk", flat=True)[:CLAIM_BATCH_SIZE]
    )
    if not ids:
        return []
    token = uuid.uuid4().hex
    ScheduledChange.objects.filter(pk__in=ids, status=ScheduledChangeStatus.SCHEDULED).update(
        status=ScheduledChangeStatus.RUNNING,
        claim_token=token,
        claimed_at=DatabaseNow(),
        updated_at=now,
    )
    return list(
        ScheduledChange.objects.filter(claim_token=token)
        .select_related("created_by")
        .order_by("execute_at", "created_at")
    )


def renew_claim(claim_token: str) -> None:
    """Tell the sweep the claim's changes not yet run are still this worker's (in the database's clock)."""
    ScheduledChange.objects.filter(claim_token=claim_token, status=ScheduledChangeStatus.RUNNING).update(
        claimed_at=DatabaseNow()
    )


def execute_chunk(changes: list[ScheduledChange]) -> None:
    """Apply claimed changes in one transaction, each confirmed (``done``) with its own write.

    Each change runs in a savepoint: one that is no longer valid is ``failed`` alone. A
    transient database error rolls the whole chunk back; every change in it is then
    retried later. One commit (and one dispatcher kick) serves the whole chunk.

    With school lanes a chunk's changes may touch any schools, and each takes its own
    lanes' locks in a transaction of its own: a chunk holding one school's lane while
    waiting for another's could wait for a write that waits for it.
    """
    if lanes.by_school():
        for change in changes:
            _execute_together([change])
    else:
        _execute_together(changes)


def _execute_together(changes: list[ScheduledChange]) -> None:
    outcomes: list[tuple[ScheduledChange, str]] = []
    try:
        with transaction.atomic():
            if not lanes.by_school():
                # Before anything is read: the targets cannot change (or go) until the chunk commits.
                lock_lanes([DEFAULT_LANE])
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
                status=ScheduledChangeStatus.DONE,
                attempt_count=F("attempt_count") + 1,
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
    except LanesBusyError as exc:  # an import holds the school's lane: later, not never
        _retry_later(change, str(exc))
        return "to be retried"
    except (ValidationError, ConflictError, IntegrityError) as exc:
        _fail(change, error_text(exc))
        return "failed"
    except DatabaseError:
        raise
    except Exception as exc:  # a bug in one change must not retry forever, nor hold the others back
        logger.exception("scheduled change %s raised", change.pk)
        _retry_later(change, f"{type(exc).__name__}: {exc}")
        return "to be retried"
    return "done"


def _apply(change: ScheduledChange) -> int:
    """Make the change as its creator, with the rights they have now; ValidationError says why not."""
    model, _ = MODELS[Resource(change.resource)]
    target = model._default_manager.filter(pk=change.target_id).first() if change.target_id is not None else None
    refusal = creator_refusal(change, target)
    if refusal:
        raise ValidationError(refusal)
    actor = cast(User, change.created_by)  # creator_refusal() refused a change without one
    prepared = prepare(change.resource, change.operation, change.target_id, change.data, user=actor, target=target)
    if change.operation == Operation.CREATE:
        return record_create(model=prepared.model, data=prepared.data, actor=actor).pk
    instance = cast(models.Model, prepared.instance)  # an update's or delete's target; prepare() raised if missing
    if change.operation == Operation.UPDATE:
        return record_update(instance=instance, data=prepared.data, actor=actor).pk
    object_id = instance.pk
    record_delete(instance=instance, actor=actor)
    return object_id


def _mine(change: ScheduledChange):
    return ScheduledChange.objects.filter(
        pk=change.pk, status=ScheduledChangeStatus.RUNNING, claim_token=change.claim_token
    )


def _fail(change: ScheduledChange, reason: str) -> None:
    _mine(change).update(
        status=ScheduledChangeStatus.FAILED,
        attempt_count=F("attempt_count") + 1,
        error=reason,
        finished_at=timezone.now(),
        updated_at=timezone.now(),
    )
    logger.warning("scheduled change %s failed: %s", change.pk, reason)


def _retry_later(change: ScheduledChange, reason: str) -> None:
    attempts = change.attempt_count + 1  # this one included
    if attempts >= MAX_ATTEMPTS:
        _fail(change, f"gave up after {attempts} attempts: {reason}")
        return
    delay = backoff_seconds(attempts, base=RETRY_BASE_SECONDS, cap=RETRY_MAX_SECONDS)
    due_at = timezone.now() + timedelta(seconds=delay)
    _mine(change).update(
        status=ScheduledChangeStatus.SCHEDULED,
        attempt_count=attempts,
        due_at=due_at,
        claim_token="",
        error=reason,
        updated_at=timezone.now(),
    )
    logger.warning("scheduled change %s will be retried at %s: %s", change.pk, due_at.isoformat(), reason)
    transaction.on_commit(lambda: wakeups.wake_at([due_at]), robust=True)  # never publish under the lane lock


def sweep() -> dict[str, int]:
    """Release dead claims, run what is overdue, and send wake-ups for changes coming due."""
    now = timezone.now()
    released = ScheduledChange.objects.filter(
        status=ScheduledChangeStatus.RUNNING, claimed_at__lt=database_now_plus(-CLAIM_LEASE_SECONDS)
    ).update(status=ScheduledChangeStatus.SCHEDULED, claim_token="", updated_at=now)
    upcoming = list(
        ScheduledChange.objects.filter(
            status=ScheduledChangeStatus.SCHEDULED, due_at__lte=now + timedelta(seconds=wakeups.WAKEUP_HORIZON_SECONDS)
        )
        .values_list("due_at", flat=True)
        .distinct()
    )
    wakeups.wake_at(max(moment, now) for moment in upcoming)
    return {"released": released, "upcoming": len(upcoming)}
