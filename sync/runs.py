"""Runs: a lane's consecutive entries claimed in one commit, sent in order, each recorded as it ends (I2, I4)."""

import enum
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from sync import client, lease, metrics, outage, selectors, throttle, wakeup
from sync.backoff import backoff_seconds
from sync.client import PushResult
from sync.models import EntryStatus, OperationAttempt, OperationLog, Outcome, SyncLane

logger = logging.getLogger(__name__)

RUN_LENGTH = 20
"""Entries per chain link. A link costs a Celery message and a claim, more than a push to
a fast external system, so it pushes a run of entries."""

MAX_RETRY_AFTER_SECONDS = 3600
"""Never wait longer than this for a Retry-After the external system asks for."""

MAX_DISPATCH_DELAY_SECONDS = 60
"""The longest countdown a retry's dispatch message gets. A broker holds a delayed message
unacknowledged on the worker (RabbitMQ closes the channel after its 30-minute consumer
timeout; Redis redelivers after its visibility timeout), so longer waits are left to the
sweep, which finds the entry due when its time comes."""


class RunResult(enum.StrEnum):
    """How a run ended; only SENT and NOTHING_TO_SEND let the chain's next link go on."""

    SENT = "sent"
    NOTHING_TO_SEND = "nothing to send"  # cancelled, already sent or purged meanwhile
    LEASE_LOST = "lease lost"  # another chain owns the lane now
    OUT_OF_ORDER = "an earlier entry is open"  # the lane starts over from its head
    RETRY_LATER = "retry later"  # a transient failure: the lane waits for the entry's next attempt
    BLOCKED = "blocked"  # a permanent failure: the lane waits for an operator
    HANDED_OVER = "handed over"  # out of time: a fresh dispatch goes on under the same lease
    ALREADY_RUNNING = "already running"  # a second delivery of this link: the first one sends
    PAUSED = "paused"  # an operator paused the lane: it waits for them to resume it
    HELD = "held"  # the external system fails across lanes: every lane waits for a probe to get through

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
    """Send a run of a lane's consecutive entries in order, recording each send as it ends.

    Each send's outcome commits before the next send starts, so a crash re-sends at most
    the one entry whose answer was not yet recorded, with its idempotency key (I4). The
    lease is kept alive while a call is in flight; a run starts no new send once it may
    have lost the lease, or after SYNC_RUN_SECONDS.
    """
    refusal, run = claim_run(entry_ids, lease_token)
    if refusal == RunResult.OUT_OF_ORDER:
        # Something before this run was reopened (retry, resend): start over from the head.
        lease.release(run[0].lane_id, lease_token)
        wakeup.kick(run[0].lane_id)
    if refusal is not None:
        return refusal

    results: list[PushResult] = []
    deadline = time.monotonic() + settings.SYNC_RUN_SECONDS
    outcome = RunResult.SENT
    with lease.Keeper(lease_token) as keeper:
        for index, entry in enumerate(run):
            unsent = [later.pk for later in run[index + 1 :]]
            out_of_time = index and (time.monotonic() > deadline or not keeper.holds())
            # A lane it holds a slot in may have been paused since the claim: it waits then.
            waits = index and entry.other_slots.all() and selectors.waits_for_other_lanes(entry.pk)
            if out_of_time or waits:
                outcome = hand_over(entry.lane_id, [entry.pk, *unsent], lease_token)
                break
            with throttle.call_slot(wait_until=deadline) as may_call:
                if not may_call:  # SYNC_MAX_IN_FLIGHT calls are under way: other lanes take their turn
                    outcome = hand_over(entry.lane_id, [entry.pk, *unsent], lease_token)
                    break
                started_at = timezone.now()
                sent = SentEntry(entry, send(entry), started_at)
            results.append(sent.result)
            outcome = record_send(sent, lease_token, unsent=unsent)
            if outcome != RunResult.SENT:
                break
    metrics.record_attempts(results)
    return outcome


@transaction.atomic
def claim_run(entry_ids: list[int], lease_token: str) -> tuple[RunResult | None, list[OperationLog]]:
    """Renew the lease and mark the run's pending entries in progress, if nothing before them is open.

    Returns None and the claimed entries when they may be sent, otherwise the reason why
    not (with the open entries found, for OUT_OF_ORDER). The entries' rows stay locked
    until the commit, so an operator's cancel waits for the claim and then finds the entry
    in progress (only a pending or failed one can be cancelled).

    An entry of the run already in progress means this link was delivered twice (a broker
    redelivers a message it thinks unacknowledged) and the other delivery is sending it:
    this one stands back. Were that other one dead, the lease it no longer renews runs out
    and the sweep reopens its entries.
    """
    # The lane row first, then the entries: the order lease.acquire and lease.expire lock them in.
    if not lease.renew(lease_token):
        return RunResult.LEASE_LOST, []
    entries = list(
        OperationLog.objects.select_for_update(of=("self",))
        .filter(pk__in=entry_ids, status__in=(EntryStatus.PENDING, EntryStatus.IN_PROGRESS))
        .select_related("lane")
        .prefetch_related("other_slots")
        .order_by("sequence")
    )
    if not entries:
        return RunResult.NOTHING_TO_SEND, []
    if any(entry.status == EntryStatus.IN_PROGRESS for entry in entries):
        return RunResult.ALREADY_RUNNING, []  # before anything that releases the lease the other run holds
    if entries[0].lane.paused:
        lease.release(entries[0].lane_id, lease_token)
        return RunResult.PAUSED, []
    if not outage.may_send(entries[0].lane_id):
        lease.release(entries[0].lane_id, lease_token)  # the sweep wakes a lane for the probe
        return RunResult.HELD, []
    run_ids = [entry.pk for entry in entries]
    lane, last = entries[0].lane_id, entries[-1].sequence
    # Anything open before the run's last entry that is not part of the run must go first:
    # the lane's own entries and other lanes' entries holding a slot in it. (Literal
    # bounds, not a subquery per entry: that one the planner turns into a table scan.)
    earlier_open = OperationLog.objects.filter(
        lane_id=lane, sequence__lt=last, status__in=selectors.holding_statuses()
    ).exclude(pk__in=run_ids)
    if (
        earlier_open.exists()
        or selectors.open_slots(lane).filter(sequence__lt=last).exists()
        or any(entry.other_slots.all() and selectors.waits_for_other_lanes(entry.pk) for entry in entries)
    ):
        return RunResult.OUT_OF_ORDER, entries
    OperationLog.objects.filter(pk__in=run_ids).update(status=EntryStatus.IN_PROGRESS, updated_at=timezone.now())
    for entry in entries:
        entry.status = EntryStatus.IN_PROGRESS
    return None, entries


def send(entry: OperationLog) -> PushResult:
    """One call to the external system, logged with the entry's sequence, key and outcome."""
    result = client.send(entry)
    _log_push(entry, result)
    return result


def record_send(sent: SentEntry, lease_token: str, *, unsent: list[int]) -> RunResult:
    """Record one send in one commit, and say whether the run goes on.

    The attempt row is kept whatever happens. The outcome is applied only while the lease
    is still this chain's: a chain whose lease expired (a stalled worker) has had its
    entries reopened and taken over, and must not overwrite what happened since. When the
    send stops the lane, the run's unsent entries go back to pending and the lease is
    released in the same commit, so a free lease never has entries in progress.
    """
    entry, result = sent.entry, sent.result
    lane = entry.lane_id
    now = timezone.now()
    stops = _stops_the_lane(result)
    retry_in = retry_delay(entry.attempt_count + 1, result.retry_after) if result.outcome == Outcome.TRANSIENT else None

    with transaction.atomic():
        _commit_without_waiting_for_disk()
        OperationAttempt.objects.create(
            entry=entry,
            started_at=sent.started_at,
            duration_ms=round(result.duration * 1000),
            outcome=result.outcome,
            status_code=result.status_code,
            error=result.error,
        )
        paused = lease.hold(lane, lease_token)
        if paused is None:
            # Superseded: whoever took the lane over goes on with it. The send still happened,
            # and may have been applied, whoever owns the entry now.
            sent_anyway: dict[str, Any] = {"attempt_count": F("attempt_count") + 1}
            if result.ok or result.maybe_applied:
                sent_anyway["maybe_applied"] = True
            OperationLog.objects.filter(pk=entry.pk).update(**sent_anyway)
            return RunResult.LEASE_LOST
        closes = not stops  # the entry no longer holds its lanes
        held, outage_ended = outage.note(lane, result)
        stops = stops or paused or held
        lane_update: dict[str, Any] = dict(lease.RELEASED) if stops else {"lease_expires_at": lease.held_until()}
        if result.ok:
            lane_update |= {"last_pushed_sequence": entry.sequence, "last_pushed_at": now}
        SyncLane.objects.filter(pk=lane).update(**lane_update)
        outcome: dict[str, Any] = {"attempt_count": F("attempt_count") + 1, "updated_at": now}
        if result.maybe_applied:
            outcome["maybe_applied"] = True
        if result.ok:
            outcome |= {"status": EntryStatus.SUCCEEDED, "pushed_at": now, "next_attempt_at": None, "last_error": ""}
        elif retry_in is not None:
            next_attempt_at = now + timedelta(seconds=retry_in)
            outcome |= {"status": EntryStatus.PENDING, "next_attempt_at": next_attempt_at, "last_error": result.error}
        else:
            outcome |= {"status": EntryStatus.FAILED, "next_attempt_at": None, "last_error": result.error}
        OperationLog.objects.filter(pk=entry.pk, status=EntryStatus.IN_PROGRESS).update(**outcome)
        if stops:
            _return_to_pending(unsent, now)
        if outage_ended:
            transaction.on_commit(outage.after_outage, robust=True)
        if closes:
            # The lanes this entry holds a slot in were waiting for it.
            for slot in entry.other_slots.all():
                transaction.on_commit(partial(wakeup.kick, slot.lane_id), robust=True)

    if retry_in is not None:
        # A long wait is left to the sweep: a broker must not hold the message that long.
        if retry_in <= MAX_DISPATCH_DELAY_SECONDS:
            wakeup.publish_dispatch(lane, countdown=retry_in)
        return RunResult.RETRY_LATER
    if paused:
        return RunResult.PAUSED
    if held:
        return RunResult.HELD
    return RunResult.BLOCKED if stops else RunResult.SENT


def hand_over(lane: str, unsent: list[int], lease_token: str) -> RunResult:
    """Out of time: the unsent entries go back to pending and a fresh dispatch goes on under the same lease."""
    with transaction.atomic():
        if lease.hold(lane, lease_token) is None:
            return RunResult.LEASE_LOST
        _return_to_pending(unsent, timezone.now())
    wakeup.publish_dispatch(lane, lease_token)
    return RunResult.HANDED_OVER


def retry_delay(attempt_count: int, retry_after: float | None) -> float:
    """The backoff after the n-th send failed transiently, never sooner than Retry-After asks (within reason)."""
    delay = backoff_seconds(attempt_count, base=settings.SYNC_RETRY_BASE_SECONDS, cap=settings.SYNC_RETRY_MAX_SECONDS)
    if retry_after is not None:
        delay = max(delay, min(retry_after, MAX_RETRY_AFTER_SECONDS))
    return delay


def _commit_without_waiting_for_disk() -> None:
    """Let this transaction's commit return before PostgreSQL has flushed it to disk.

    A send's record is one commit per external call, and waiting for the disk is most of
    its cost. What a database crash can lose is the last fraction of a second of records:
    those entries are sent again with their idempotency keys, which the external system
    deduplicates (I4). A worker's crash loses nothing: the commit itself is not weakened.
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit TO OFF")


def _return_to_pending(entry_ids: list[int], now: datetime) -> None:
    OperationLog.objects.filter(pk__in=entry_ids, status=EntryStatus.IN_PROGRESS).update(
        status=EntryStatus.PENDING, updated_at=now
    )


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
        entry.attempt_count + 1,
        result.outcome,
        result.status_code or "-",
        result.duration * 1000,
        f" error={result.error!r}" if result.error else "",
    )
