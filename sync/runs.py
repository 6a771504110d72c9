"""Runs: a lane's consecutive entries claimed in one commit, sent in order, recorded in one commit (I2, I4)."""

import enum
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from sync import lease, metrics, selectors, wakeup
from sync.backoff import backoff_seconds
from sync.client import PushResult, get_client
from sync.models import EntryStatus, OperationAttempt, OperationLog, Outcome, SyncLane

logger = logging.getLogger(__name__)

RUN_LENGTH = 20
"""Entries per chain link. A link costs a Celery message and two commits (claim and
record), more than a push to a fast external system, so it pushes a run of entries."""

MAX_RETRY_AFTER_SECONDS = 3600
"""Never wait longer than this for a Retry-After the external system asks for."""


class RunResult(enum.StrEnum):
    """How a run ended; only SENT and NOTHING_TO_SEND let the chain's next link go on."""

    SENT = "sent"
    NOTHING_TO_SEND = "nothing to send"  # cancelled, already sent or purged meanwhile
    LEASE_LOST = "lease lost"  # another chain owns the lane now
    OUT_OF_ORDER = "an earlier entry is open"  # the lane starts over from its head
    RETRY_LATER = "retry later"  # a transient failure: a dispatch is scheduled for then
    BLOCKED = "blocked"  # a permanent failure: the lane waits for an operator
    HANDED_OVER = "handed over"  # out of time: a fresh dispatch goes on under the same lease

    @property
    def chain_goes_on(self) -> bool:
        return self in (RunResult.SENT, RunResult.NOTHING_TO_SEND)


@dataclass(frozen=True)
class SentEntry:
    """One send of a run: the entry, what the external system answered, and when it started."""

    entry: OperationLog
    result: PushResult
    started_at: datetime


def push_run(entry_ids: list[int], lease_token: str) -> RunResult:
    """Send a run of a lane's consecutive entries in order and record what happened.

    After a crash between claim and record, the redelivered link re-claims the run (or,
    for a dispatch's first run, the lease expires and the sweep resumes the lane); its
    entries are sent again with the same idempotency keys, which the external system
    deduplicates (I4).
    """
    refusal, run = claim_run(entry_ids, lease_token)
    if refusal == RunResult.OUT_OF_ORDER:
        # Something before this run was reopened (retry, resend): start over from the head.
        lease.release(run[0].lane_id, lease_token)
        wakeup.kick(run[0].lane_id)
    if refusal is not None:
        return refusal
    sent = send_run(run)
    metrics.record_attempts(attempt.result for attempt in sent)
    return record_run(run, sent, lease_token)


@transaction.atomic
def claim_run(entry_ids: list[int], lease_token: str) -> tuple[RunResult | None, list[OperationLog]]:
    """Renew the lease and mark the run's open entries in progress, if nothing before them is open.

    Returns None and the claimed entries when they may be sent, otherwise the reason why
    not (with the open entries found, for OUT_OF_ORDER). The entries' rows stay
    locked until the commit, so an operator's cancel waits for the claim and then finds
    the entry in progress (only a pending or failed one can be cancelled).
    """
    # The lane row first, then the entries: the order lease.acquire and lease.expire lock them in.
    if not lease.renew(lease_token):
        return RunResult.LEASE_LOST, []
    entries = list(
        OperationLog.objects.select_for_update()
        .filter(pk__in=entry_ids, status__in=(EntryStatus.PENDING, EntryStatus.IN_PROGRESS))
        .order_by("sequence")
    )
    if not entries:
        return RunResult.NOTHING_TO_SEND, []
    run_ids = [entry.pk for entry in entries]
    # Anything open before the run's last entry that is not part of the run must go first.
    # (Literal bounds, not a subquery per entry: that one the planner turns into a table scan.)
    earlier_open = OperationLog.objects.filter(
        lane_id=entries[0].lane_id, sequence__lt=entries[-1].sequence, status__in=selectors.holding_statuses()
    ).exclude(pk__in=run_ids)
    if earlier_open.exists():
        return RunResult.OUT_OF_ORDER, entries
    OperationLog.objects.filter(pk__in=run_ids).update(
        status=EntryStatus.IN_PROGRESS, attempt_count=F("attempt_count") + 1, updated_at=timezone.now()
    )
    for entry in entries:
        entry.status, entry.attempt_count = EntryStatus.IN_PROGRESS, entry.attempt_count + 1
    return None, entries


def send_run(run: list[OperationLog]) -> list[SentEntry]:
    """Send claimed entries one after the other until one fails or the run is out of time."""
    sent: list[SentEntry] = []
    deadline = time.monotonic() + settings.SYNC_RUN_SECONDS
    for entry in run:
        if sent and time.monotonic() > deadline:
            break  # out of time: the rest goes to a fresh dispatch
        started_at = timezone.now()
        result = get_client().push(entry)
        _log_push(entry, result)
        sent.append(SentEntry(entry, result, started_at))
        if _stops_the_lane(result):
            break
    return sent


def record_run(run: list[OperationLog], sent: list[SentEntry], lease_token: str) -> RunResult:
    """Record every send of a run in one commit, and say how the run ended.

    The outcomes are applied only while the lease is still this chain's: a chain whose
    lease expired (a stalled worker) has had its entries reopened and taken over, and must
    not overwrite what happened since. The attempt rows are kept either way.
    """
    lane = run[0].lane_id
    now = timezone.now()
    last = sent[-1]  # a run sends at least its first entry
    succeeded = [attempt.entry for attempt in sent if attempt.result.ok]
    unsent = [entry.pk for entry in run[len(sent) :]]
    retry_in = None
    if last.result.outcome == Outcome.TRANSIENT:
        retry_in = retry_delay(last.entry.attempt_count, last.result.retry_after)
    stops = _stops_the_lane(last.result)

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
        lane_update: dict[str, Any] = (
            {"lease_token": "", "lease_expires_at": None} if stops else {"lease_expires_at": lease.expires_at()}
        )
        if succeeded:
            lane_update |= {"last_pushed_sequence": succeeded[-1].sequence, "last_pushed_at": now}
        if not SyncLane.objects.filter(pk=lane, lease_token=lease_token).update(**lane_update):
            return RunResult.LEASE_LOST  # superseded: whoever took the lane over goes on with it
        in_progress = OperationLog.objects.filter(status=EntryStatus.IN_PROGRESS)
        in_progress.filter(pk__in=[entry.pk for entry in succeeded]).update(
            status=EntryStatus.SUCCEEDED, pushed_at=now, next_attempt_at=None, last_error="", updated_at=now
        )
        for attempt in sent:
            if attempt.result.outcome == Outcome.PERMANENT:
                in_progress.filter(pk=attempt.entry.pk).update(
                    status=EntryStatus.FAILED, next_attempt_at=None, last_error=attempt.result.error, updated_at=now
                )
        if retry_in is not None:  # a transient failure always ends the run: it is the last send
            in_progress.filter(pk=last.entry.pk).update(
                status=EntryStatus.PENDING,
                next_attempt_at=now + timedelta(seconds=retry_in),
                last_error=last.result.error,
                updated_at=now,
            )
        # Claimed but not sent (the run stopped early): pending again, the claim's attempt undone.
        in_progress.filter(pk__in=unsent).update(
            status=EntryStatus.PENDING, attempt_count=F("attempt_count") - 1, updated_at=now
        )

    if retry_in is not None:
        wakeup.publish_dispatch(lane, countdown=retry_in)
        return RunResult.RETRY_LATER
    if stops:
        return RunResult.BLOCKED
    if unsent:
        wakeup.publish_dispatch(lane, lease_token)
        return RunResult.HANDED_OVER
    return RunResult.SENT


def retry_delay(attempt_count: int, retry_after: float | None) -> float:
    """The backoff after a transient failure, never sooner than Retry-After asks (within reason)."""
    delay = backoff_seconds(attempt_count, base=settings.SYNC_RETRY_BASE_SECONDS, cap=settings.SYNC_RETRY_MAX_SECONDS)
    if retry_after is not None:
        delay = max(delay, min(retry_after, MAX_RETRY_AFTER_SECONDS))
    return delay


def _stops_the_lane(result: PushResult) -> bool:
    """A transient failure always holds the lane; a permanent one only in block mode."""
    return result.outcome == Outcome.TRANSIENT or (
        result.outcome == Outcome.PERMANENT and selectors.blocks_on_failure()
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
        entry.attempt_count,
        result.outcome,
        result.status_code or "-",
        result.duration * 1000,
        f" error={result.error!r}" if result.error else "",
    )
