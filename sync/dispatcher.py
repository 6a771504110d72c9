"""Pushes each lane's entries to the external API in sequence (I2, I4, I5, I7, I8).

A lane is pushed by one Celery chain at a time, ``push(e1) | … | push(eK) | dispatch``,
owned through a lease on the lane row. Every push renews the lease, re-reads its entry
and checks that nothing earlier in the lane is still open before it sends, so a stray,
duplicated or late message can never send out of order. A transient failure stores the
backoff on the entry, frees the lane and ends the chain; the scheduled dispatch (or the
sweep, if that message is lost) resumes the lane when the entry is due.
"""

import enum
import logging
import random
import uuid
from datetime import timedelta

from celery import chain, signature
from celery.exceptions import CeleryError
from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone
from kombu.exceptions import KombuError

from sync import metrics, selectors
from sync.client import PushResult, get_client
from sync.models import OperationAttempt, OperationLog, Outcome, Status, SyncLane

logger = logging.getLogger(__name__)

# Pushes per chain message. A chain message carries the rest of the chain, so very long
# chains cost more per link; a bounded chain ends in a dispatch that starts the next one.
CHAIN_LENGTH = 50
# Never wait longer than this for a Retry-After the external system asks for.
MAX_RETRY_AFTER_SECONDS = 3600

# What a publish to the broker can raise when the broker is unreachable.
PUBLISH_ERRORS = (KombuError, CeleryError, OSError)


def kick(lane: str) -> None:
    """Wake the dispatcher for a lane, unless a live chain will pick new work up itself.

    Never raises: a lost kick only delays delivery until the sweep kicks the lane (I6).
    """
    if selectors.lane_has_live_lease(lane, timezone.now()):
        return
    try:
        signature("sync.dispatch", args=(lane,)).apply_async(retry=False)
    except PUBLISH_ERRORS:
        logger.warning("could not publish a dispatch for lane %s; the sweep will retry", lane, exc_info=True)


def dispatch_lane(lane: str, lease_token: str | None = None) -> None:
    """Start (or, with the chain's token, continue) pushing a lane's due entries."""
    if lease_token is None:
        lease_token = uuid.uuid4().hex
        if not _acquire_lease(lane, lease_token):
            return  # a live chain owns the lane
    elif not _renew_lease(lane, lease_token):
        return  # our lease expired and another chain took over

    entry_ids = selectors.due_entries(lane, timezone.now(), CHAIN_LENGTH)
    if not entry_ids:
        _release_lease(lane, lease_token)
        # A writer that committed while we held the lease skipped its kick; look once more.
        if selectors.has_due_work(lane, timezone.now()):
            dispatch_lane(lane)
        return

    links = [signature("sync.push", args=(entry_id, lease_token), immutable=True) for entry_id in entry_ids]
    links.append(signature("sync.dispatch", args=(lane, lease_token), immutable=True))
    try:
        chain(*links).apply_async()
    except PUBLISH_ERRORS:
        _release_lease(lane, lease_token)
        raise


def push_entry(entry_id: int, lease_token: str) -> bool:
    """Send one entry under the lane's lease; return whether its chain should go on."""
    entry = OperationLog.objects.filter(pk=entry_id).first()
    if entry is None or entry.status not in (Status.PENDING, Status.IN_PROGRESS):
        return True  # cancelled, already sent, or purged: nothing to send
    lane = entry.lane_id
    start = _start_push(entry, lease_token)
    if start == _Start.LEASE_LOST:
        return False  # another chain owns the lane now
    if start == _Start.OUT_OF_ORDER:
        # Something before this entry was reopened (retry, resend): start over from the head.
        _release_lease(lane, lease_token)
        kick(lane)
        return False
    if start == _Start.GONE:
        return True  # cancelled a moment ago

    started_at = timezone.now()
    result = get_client().push(entry)
    _log_push(entry, result)
    metrics.record_attempt(result.outcome, result.duration)

    if result.outcome == Outcome.SUCCESS:
        return _record_success(entry, result, started_at, lease_token)
    if result.outcome == Outcome.TRANSIENT:
        _record_transient_failure(entry, result, started_at, lease_token)
        return False
    if not _record_permanent_failure(entry, result, started_at):
        return False
    if selectors.blocks_on_failure():
        _release_lease(lane, lease_token)
        return False
    return True


def sweep() -> list[str]:
    """Expire stale leases and kick every lane that has due work and no live chain (I5, I7)."""
    kicked = []
    for lane in SyncLane.objects.all():
        now = timezone.now()
        if lane.lease_owner and lane.lease_expires_at and lane.lease_expires_at > now:
            continue  # a live chain carries on by itself
        if lane.lease_owner:
            _expire_lease(lane.name, lane.lease_owner)
        if selectors.has_due_work(lane.name, now):
            kick(lane.name)
            kicked.append(lane.name)
    return kicked


def retry_delay(attempts: int, retry_after: float | None) -> float:
    """Exponential backoff with jitter, capped, and never sooner than Retry-After asks."""
    ceiling = min(settings.SYNC_RETRY_MAX_SECONDS, settings.SYNC_RETRY_BASE_SECONDS * 2 ** max(attempts - 1, 0))
    delay = random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not cryptography
    if retry_after is not None:
        delay = max(delay, min(retry_after, MAX_RETRY_AFTER_SECONDS))
    return delay


# --- The lease ------------------------------------------------------------------------


def _lease_until():
    return timezone.now() + timedelta(seconds=settings.SYNC_LEASE_SECONDS)


@transaction.atomic
def _acquire_lease(lane: str, token: str) -> bool:
    """Take a free or expired lease; entries left in progress by its last owner become pending."""
    free = SyncLane.objects.filter(Q(lease_owner="") | Q(lease_expires_at__lte=timezone.now()), pk=lane)
    if not free.update(lease_owner=token, lease_expires_at=_lease_until()):
        return False
    _reopen_in_progress(lane)
    return True


def _renew_lease(lane: str, token: str) -> bool:
    return bool(SyncLane.objects.filter(pk=lane, lease_owner=token).update(lease_expires_at=_lease_until()))


def _release_lease(lane: str, token: str) -> None:
    SyncLane.objects.filter(pk=lane, lease_owner=token).update(lease_owner="", lease_expires_at=None)


@transaction.atomic
def _expire_lease(lane: str, token: str) -> None:
    expired = SyncLane.objects.filter(pk=lane, lease_owner=token, lease_expires_at__lte=timezone.now())
    if expired.update(lease_owner="", lease_expires_at=None):
        _reopen_in_progress(lane)


def _reopen_in_progress(lane: str) -> None:
    # Only a lease holder pushes, so with the lease gone these pushes are dead; they are
    # sent again with the same idempotency key, which the external system deduplicates.
    OperationLog.objects.filter(lane_id=lane, status=Status.IN_PROGRESS).update(
        status=Status.PENDING, updated_at=timezone.now()
    )


# --- Recording outcomes -----------------------------------------------------------------


class _Start(enum.Enum):
    READY = "ready"
    LEASE_LOST = "lease lost"
    OUT_OF_ORDER = "an earlier entry is open"
    GONE = "no longer pending"


@transaction.atomic
def _start_push(entry: OperationLog, lease_token: str) -> _Start:
    """Renew the lease, check the order and mark the entry in progress, in one commit."""
    if not _renew_lease(entry.lane_id, lease_token):
        return _Start.LEASE_LOST
    if selectors.has_earlier_open_entries(entry):
        return _Start.OUT_OF_ORDER
    marked = OperationLog.objects.filter(pk=entry.pk, status__in=(Status.PENDING, Status.IN_PROGRESS)).update(
        status=Status.IN_PROGRESS, attempts=F("attempts") + 1, updated_at=timezone.now()
    )
    if not marked:
        return _Start.GONE
    entry.attempts += 1
    return _Start.READY


def _attempt(entry: OperationLog, result: PushResult, started_at) -> OperationAttempt:
    return OperationAttempt.objects.create(
        entry=entry,
        started_at=started_at,
        duration_ms=round(result.duration * 1000),
        outcome=result.outcome,
        status_code=result.status_code,
        error=result.error,
    )


def _this_attempt(entry: OperationLog):
    """The entry, if this attempt is still the one in progress.

    A late attempt (its lease expired and the entry was reopened, resent or cancelled
    meanwhile, or a duplicate message tried it again) must not overwrite what happened since.
    """
    return OperationLog.objects.filter(pk=entry.pk, status=Status.IN_PROGRESS, attempts=entry.attempts)


@transaction.atomic
def _record_success(entry: OperationLog, result: PushResult, started_at, lease_token: str) -> bool:
    now = timezone.now()
    _attempt(entry, result, started_at)
    recorded = _this_attempt(entry).update(
        status=Status.SUCCEEDED, pushed_at=now, next_attempt_at=None, last_error="", updated_at=now
    )
    if not recorded:
        return False  # superseded: whoever took over goes on with the lane
    SyncLane.objects.filter(pk=entry.lane_id, lease_owner=lease_token).update(
        last_pushed_sequence=entry.sequence, last_pushed_at=now, lease_expires_at=_lease_until()
    )
    return True


def _record_transient_failure(entry: OperationLog, result: PushResult, started_at, lease_token: str) -> None:
    delay = retry_delay(entry.attempts, result.retry_after)
    now = timezone.now()
    with transaction.atomic():
        _attempt(entry, result, started_at)
        recorded = _this_attempt(entry).update(
            status=Status.PENDING,
            next_attempt_at=now + timedelta(seconds=delay),
            last_error=result.error,
            updated_at=now,
        )
    if not recorded:
        return  # superseded: the lane is someone else's now
    _release_lease(entry.lane_id, lease_token)
    try:
        signature("sync.dispatch", args=(entry.lane_id,)).apply_async(countdown=delay)
    except PUBLISH_ERRORS:
        logger.warning("could not schedule the retry of lane %s; the sweep will", entry.lane_id, exc_info=True)


@transaction.atomic
def _record_permanent_failure(entry: OperationLog, result: PushResult, started_at) -> bool:
    now = timezone.now()
    _attempt(entry, result, started_at)
    return bool(
        _this_attempt(entry).update(status=Status.FAILED, next_attempt_at=None, last_error=result.error, updated_at=now)
    )


def _log_push(entry: OperationLog, result: PushResult) -> None:
    logger.log(
        logging.INFO if result.ok else logging.WARNING,
        "push lane=%s sequence=%s key=%s %s %s/%s attempt=%s outcome=%s status=%s duration_ms=%d%s",
        entry.lane_id,
        entry.sequence,
        entry.idempotency_key,
        entry.operation,
        entry.resource,
        entry.object_id,
        entry.attempts,
        result.outcome,
        result.status_code or "-",
        result.duration * 1000,
        f" error={result.error!r}" if result.error else "",
    )
