"""Pushes each lane's entries to the external API in sequence (I2, I4, I5, I7, I8).

A lane is pushed by one chain at a time, owned through a lease on the lane row: a
dispatch takes the lease, pushes the first run of due entries itself and chains the rest,
``push(run2) | … | push(runN) | dispatch``, where each run is a few consecutive entries.
Before it sends, a run renews the lease and checks that nothing earlier in the lane is
still open, so a stray, duplicated or late message can never send out of order; each
entry is sent only after the one before it succeeded. A transient failure stores the
backoff on the entry, frees the lane and ends the chain; the scheduled dispatch (or the
sweep, if that message is lost) resumes the lane when the entry is due.
"""

import enum
import logging
import random
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from celery import chain, signature
from celery.exceptions import CeleryError
from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone
from kombu.exceptions import KombuError

from sync import metrics, selectors
from sync.client import PushResult, get_client
from sync.models import OperationAttempt, OperationLog, Outcome, Status, SyncLane

logger = logging.getLogger(__name__)

# Entries per chain. A chain message carries the rest of the chain, so very long chains
# cost more per link; a bounded chain ends in a dispatch that starts the next one.
CHAIN_LENGTH = 100
# Entries per chain link. Each link costs a Celery message and two commits (claim and
# record), more than a push to a fast external system, so a link pushes a run of
# consecutive entries, each sent only after the one before it succeeded.
RUN_LENGTH = 20
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
    _publish_dispatch(lane)


def dispatch_lane(lane: str, lease_token: str | None = None) -> None:
    """Start (or, with the chain's token, continue) pushing a lane's due entries."""
    if lease_token is None:
        lease_token = uuid.uuid4().hex
        if not _acquire_lease(lane, lease_token):
            return  # a live chain owns the lane
    elif not _renew_lease(lease_token):
        return  # our lease expired and another chain took over

    entry_ids = selectors.due_entries(lane, timezone.now(), CHAIN_LENGTH)
    if not entry_ids:
        _release_lease(lane, lease_token)
        # A writer that committed while we held the lease skipped its kick; look once more.
        if selectors.has_due_work(lane, timezone.now()):
            dispatch_lane(lane)
        return

    runs = [entry_ids[start : start + RUN_LENGTH] for start in range(0, len(entry_ids), RUN_LENGTH)]
    # The first run goes out in this task: on an idle lane, no second message before the send.
    if not push_entries(runs[0], lease_token):
        return
    links = [signature("sync.push", args=(run, lease_token), immutable=True) for run in runs[1:]]
    links.append(signature("sync.dispatch", args=(lane, lease_token), immutable=True))
    try:
        chain(*links).apply_async()
    except PUBLISH_ERRORS:
        _release_lease(lane, lease_token)
        raise


def push_entries(entry_ids: list[int], lease_token: str) -> bool:
    """Send a run of a lane's consecutive entries in order; return whether the chain goes on.

    One commit claims the run (marks it in progress), the entries are sent one after the
    other, each only after the one before it succeeded, and one commit records what
    happened. After a crash in between, the redelivered link re-claims the run (or, for a
    dispatch's first run, the lease expires and the sweep resumes the lane); its entries are
    sent again with the same idempotency keys, which the external system deduplicates (I4).
    """
    claim, run = _claim_run(entry_ids, lease_token)
    if claim == _Claim.LEASE_LOST:
        return False  # another chain owns the lane now
    if claim == _Claim.OUT_OF_ORDER:
        # Something before this run was reopened (retry, resend): start over from the head.
        _release_lease(run[0].lane_id, lease_token)
        kick(run[0].lane_id)
        return False
    if not run:
        return True  # cancelled, already sent, or purged: nothing to send

    sent: list[_Sent] = []
    deadline = time.monotonic() + settings.SYNC_RUN_SECONDS
    for entry in run:
        if sent and time.monotonic() > deadline:
            break  # out of time: the rest goes to a fresh dispatch
        started_at = timezone.now()
        result = get_client().push(entry)
        _log_push(entry, result)
        sent.append(_Sent(entry, result, started_at))
        if result.outcome == Outcome.TRANSIENT or (
            result.outcome == Outcome.PERMANENT and selectors.blocks_on_failure()
        ):
            break
    metrics.record_attempts(attempt.result for attempt in sent)
    return _record_run(run, sent, lease_token)


class _Claim(enum.Enum):
    READY = "ready"
    LEASE_LOST = "lease lost"
    OUT_OF_ORDER = "an earlier entry is open"


@dataclass(frozen=True)
class _Sent:
    entry: OperationLog
    result: PushResult
    started_at: datetime


@transaction.atomic
def _claim_run(entry_ids: list[int], lease_token: str) -> tuple[_Claim, list[OperationLog]]:
    """Renew the lease and mark the run's open entries in progress, if nothing before them is open.

    The entries' rows stay locked until the commit, so an operator's cancel waits for the
    claim and then finds the entry in progress (only a pending or failed one can be cancelled).
    """
    # The lane row first, then the entries: the order _acquire_lease and _expire_lease lock them in.
    if not _renew_lease(lease_token):
        return _Claim.LEASE_LOST, []
    entries = list(
        OperationLog.objects.select_for_update()
        .filter(pk__in=entry_ids, status__in=(Status.PENDING, Status.IN_PROGRESS))
        .order_by("sequence")
    )
    if not entries:
        return _Claim.READY, []
    run_ids = [entry.pk for entry in entries]
    # Anything open before the run's last entry that is not part of the run must go first.
    # (Literal bounds, not a subquery per entry: that one the planner turns into a table scan.)
    earlier_open = OperationLog.objects.filter(
        lane_id=entries[0].lane_id, sequence__lt=entries[-1].sequence, status__in=selectors.holding_statuses()
    ).exclude(pk__in=run_ids)
    if earlier_open.exists():
        return _Claim.OUT_OF_ORDER, entries
    OperationLog.objects.filter(pk__in=run_ids).update(
        status=Status.IN_PROGRESS, attempts=F("attempts") + 1, updated_at=timezone.now()
    )
    for entry in entries:
        entry.status, entry.attempts = Status.IN_PROGRESS, entry.attempts + 1
    return _Claim.READY, entries


def _record_run(run: list[OperationLog], sent: list[_Sent], lease_token: str) -> bool:
    """Record every attempt of a run in one commit; return whether the chain goes on.

    The outcomes are applied only while the lease is still this chain's: a chain whose
    lease expired (a stalled worker) has had its entries reopened and taken over, and must
    not overwrite what happened since. The attempts are kept either way.
    """
    lane = run[0].lane_id
    now = timezone.now()
    last = sent[-1]  # a run sends at least its first entry
    succeeded = [attempt.entry for attempt in sent if attempt.result.ok]
    unsent = [entry.pk for entry in run[len(sent) :]]
    retry_in = None
    if last.result.outcome == Outcome.TRANSIENT:
        retry_in = retry_delay(last.entry.attempts, last.result.retry_after)
    stops = retry_in is not None or (last.result.outcome == Outcome.PERMANENT and selectors.blocks_on_failure())

    with transaction.atomic():
        OperationAttempt.objects.bulk_create(
            OperationAttempt(
                entry=attempt.entry,
                started_at=attempt.started_at,
                duration_ms=round(attempt.result.duration * 1000),
                outcome=attempt.result.outcome,
                status_code=attempt.result.status_code,
                error=attempt.result.error,
            )
            for attempt in sent
        )
        lane_update = {"lease_owner": "", "lease_expires_at": None} if stops else {"lease_expires_at": _lease_until()}
        if succeeded:
            lane_update |= {"last_pushed_sequence": succeeded[-1].sequence, "last_pushed_at": now}
        if not SyncLane.objects.filter(pk=lane, lease_owner=lease_token).update(**lane_update):
            return False  # superseded: whoever took the lane over goes on with it
        in_progress = OperationLog.objects.filter(status=Status.IN_PROGRESS)
        in_progress.filter(pk__in=[entry.pk for entry in succeeded]).update(
            status=Status.SUCCEEDED, pushed_at=now, next_attempt_at=None, last_error="", updated_at=now
        )
        for attempt in sent:
            if attempt.result.outcome == Outcome.PERMANENT:
                in_progress.filter(pk=attempt.entry.pk).update(
                    status=Status.FAILED, next_attempt_at=None, last_error=attempt.result.error, updated_at=now
                )
            elif attempt.result.outcome == Outcome.TRANSIENT:
                in_progress.filter(pk=attempt.entry.pk).update(
                    status=Status.PENDING,
                    next_attempt_at=now + timedelta(seconds=retry_in),
                    last_error=attempt.result.error,
                    updated_at=now,
                )
        # Claimed but not sent (the run stopped early): pending again, the claim's attempt undone.
        in_progress.filter(pk__in=unsent).update(status=Status.PENDING, attempts=F("attempts") - 1, updated_at=now)

    if retry_in is not None:
        _publish_dispatch(lane, countdown=retry_in)
        return False
    if stops:
        return False
    if unsent:
        _publish_dispatch(lane, lease_token)  # out of time: a fresh dispatch goes on under the same lease
        return False
    return True


def _publish_dispatch(lane: str, lease_token: str | None = None, countdown: float | None = None) -> None:
    """Schedule a dispatch of the lane; if the broker is down, free the lane for the sweep."""
    try:
        signature("sync.dispatch", args=(lane, lease_token) if lease_token else (lane,)).apply_async(
            countdown=countdown, retry=False
        )
    except PUBLISH_ERRORS:
        if lease_token:
            _release_lease(lane, lease_token)
        logger.warning("could not publish a dispatch for lane %s; the sweep will resume it", lane, exc_info=True)


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
    """Take a free or expired lease; entries left in progress by an expired owner become pending.

    A free lease has nothing in progress: a chain records its run in the commit that
    releases the lease, and the sweep reopens a dead chain's entries as it expires its lease.
    """
    lanes = SyncLane.objects.filter(pk=lane)
    lease = {"lease_owner": token, "lease_expires_at": _lease_until()}
    if lanes.filter(lease_owner="").update(**lease):
        return True
    if not lanes.filter(lease_expires_at__lte=timezone.now()).update(**lease):
        return False
    _reopen_in_progress(lane)
    return True


def _renew_lease(token: str) -> bool:
    """Extend the lease this token holds (tokens are unique, so it names its lane too)."""
    return bool(SyncLane.objects.filter(lease_owner=token).update(lease_expires_at=_lease_until()))


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


# --- Logging ----------------------------------------------------------------------------


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
