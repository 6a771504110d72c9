"""Runs: claim, send in order, record; the outcomes of a push and the order guard (I2, I4, I8)."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from sync import dispatcher, lease, runs, selectors
from sync.models import DEFAULT_LANE, EntryStatus, OperationAttempt, OperationLog, Outcome, SyncLane
from sync.runs import RunResult
from tests.helpers import school_entries, take_lease

pytestmark = pytest.mark.django_db


def test_push_sends_the_entry_and_records_success(simulator):
    [entry] = school_entries()
    assert runs.push_run([entry.pk], take_lease()) == RunResult.SENT

    entry.refresh_from_db()
    assert (entry.status, entry.attempt_count, entry.last_error) == (EntryStatus.SUCCEEDED, 1, "")
    assert entry.pushed_at is not None
    [attempt] = entry.attempts.all()
    assert (attempt.outcome, attempt.status_code) == (Outcome.SUCCESS, 201)
    lane = SyncLane.objects.get(pk=DEFAULT_LANE)
    assert (lane.last_pushed_sequence, lane.lease_token) == (entry.sequence, "chain-1")
    assert simulator.applied[0]["key"] == str(entry.idempotency_key)


def test_push_without_the_lease_sends_nothing(simulator):
    [entry] = school_entries()
    take_lease("someone-else")
    assert runs.push_run([entry.pk], "chain-1") == RunResult.LEASE_LOST
    assert simulator.requests == 0
    entry.refresh_from_db()
    assert (entry.status, entry.attempt_count) == (EntryStatus.PENDING, 0)


@pytest.mark.parametrize("earlier_status", [EntryStatus.PENDING, EntryStatus.IN_PROGRESS, EntryStatus.FAILED])
def test_push_never_overtakes_an_open_earlier_entry(simulator, kicks, earlier_status):
    first, second = school_entries(2)
    token = take_lease()
    OperationLog.objects.filter(pk=first.pk).update(status=earlier_status)

    assert runs.push_run([second.pk], token) == RunResult.OUT_OF_ORDER
    assert simulator.requests == 0
    assert SyncLane.objects.get(pk=DEFAULT_LANE).lease_token == ""
    assert kicks == [DEFAULT_LANE]


def test_a_run_never_overtakes_an_open_entry_between_its_own(simulator, kicks):
    first, second, third = school_entries(3)
    OperationLog.objects.filter(pk=second.pk).update(status=EntryStatus.FAILED)  # e.g. reopened by a resend

    assert runs.push_run([first.pk, third.pk], take_lease()) == RunResult.OUT_OF_ORDER
    assert simulator.requests == 0
    assert set(OperationLog.objects.filter(pk__in=[first.pk, third.pk]).values_list("status", flat=True)) == {
        EntryStatus.PENDING
    }
    assert kicks == [DEFAULT_LANE]


@pytest.mark.parametrize("earlier_status", [EntryStatus.SUCCEEDED, EntryStatus.CANCELLED])
def test_push_goes_on_after_a_succeeded_or_cancelled_entry(simulator, earlier_status):
    first, second = school_entries(2)
    OperationLog.objects.filter(pk=first.pk).update(status=earlier_status)
    assert runs.push_run([second.pk], take_lease()) == RunResult.SENT
    assert [a["key"] for a in simulator.applied] == [str(second.idempotency_key)]


def test_a_cancelled_entry_is_skipped_and_the_chain_goes_on(simulator):
    [entry] = school_entries()
    OperationLog.objects.filter(pk=entry.pk).update(status=EntryStatus.CANCELLED)
    assert runs.push_run([entry.pk], take_lease()) == RunResult.NOTHING_TO_SEND
    assert simulator.requests == 0


def test_a_transient_failure_backs_off_frees_the_lane_and_schedules_a_dispatch(simulator, published_dispatches):
    [entry] = school_entries()
    simulator.configure(script=["error"], retry_after=30)
    before = timezone.now()

    assert runs.push_run([entry.pk], take_lease()) == RunResult.RETRY_LATER

    entry.refresh_from_db()
    assert entry.status == EntryStatus.PENDING
    assert entry.attempt_count == 1
    assert entry.next_attempt_at >= before + timedelta(seconds=30)  # Retry-After honoured
    assert entry.last_error.startswith("HTTP 503")
    assert SyncLane.objects.get(pk=DEFAULT_LANE).lease_token == ""
    [(args, countdown)] = published_dispatches
    assert args == (DEFAULT_LANE,)  # a fresh dispatch: the lease was released
    assert countdown >= 30
    assert entry.attempts.get().outcome == Outcome.TRANSIENT


def test_a_long_retry_after_is_left_to_the_sweep_not_held_by_the_broker(simulator, published_dispatches, kicks):
    # A dispatch delayed for an hour would sit unacknowledged on the worker past RabbitMQ's
    # consumer timeout (30 min), which closes the channel and kills the push in flight.
    [entry] = school_entries()
    simulator.configure(script=["error"], retry_after=3600)
    before = timezone.now()

    assert runs.push_run([entry.pk], take_lease()) == RunResult.RETRY_LATER

    entry.refresh_from_db()
    assert entry.next_attempt_at >= before + timedelta(seconds=3600)
    assert published_dispatches == []  # no message waits an hour in the broker
    assert all(countdown <= runs.MAX_DISPATCH_DELAY_SECONDS for _, countdown in published_dispatches)
    assert dispatcher.sweep() == []  # not due yet
    OperationLog.objects.filter(pk=entry.pk).update(next_attempt_at=timezone.now() - timedelta(seconds=1))
    assert dispatcher.sweep() == [DEFAULT_LANE]  # due: the sweep wakes the lane
    assert kicks == [DEFAULT_LANE]


def test_a_permanent_failure_blocks_the_lane_by_default(simulator):
    first, _ = school_entries(2)
    simulator.configure(script=["reject"])

    assert runs.push_run([first.pk], take_lease()) == RunResult.BLOCKED

    first.refresh_from_db()
    assert (first.status, first.last_error[:8]) == (EntryStatus.FAILED, "HTTP 400")
    assert SyncLane.objects.get(pk=DEFAULT_LANE).lease_token == ""
    assert not selectors.has_due_work(DEFAULT_LANE, timezone.now())


def test_a_permanent_failure_can_be_skipped_by_setting(simulator, settings):
    settings.SYNC_ON_PERMANENT_FAILURE = "skip"
    first, second = school_entries(2)
    simulator.configure(script=["reject"])
    token = take_lease()
    assert runs.push_run([first.pk], token) == RunResult.SENT
    assert runs.push_run([second.pk], token) == RunResult.SENT
    assert [a["key"] for a in simulator.applied] == [str(second.idempotency_key)]


@pytest.mark.parametrize("attempts", [1, 2, 5, 20])
def test_retry_delay_grows_exponentially_with_jitter_and_a_cap(settings, attempts):
    settings.SYNC_RETRY_BASE_SECONDS = 1
    settings.SYNC_RETRY_MAX_SECONDS = 60
    ceiling = min(60, 2 ** (attempts - 1))
    delays = {runs.retry_delay(attempts, None) for _ in range(50)}
    assert all(ceiling / 2 <= delay <= ceiling for delay in delays)
    assert len(delays) > 1  # jittered


def test_retry_delay_honours_retry_after_up_to_an_hour(settings):
    settings.SYNC_RETRY_BASE_SECONDS = 1
    assert runs.retry_delay(1, 30) == 30
    assert runs.retry_delay(1, 10**6) == runs.MAX_RETRY_AFTER_SECONDS


def test_each_attempt_is_kept(simulator, published_dispatches):
    [entry] = school_entries()
    simulator.configure(script=["error"])
    runs.push_run([entry.pk], take_lease("a"))
    OperationLog.objects.filter(pk=entry.pk).update(next_attempt_at=None)
    runs.push_run([entry.pk], take_lease("b"))
    outcomes = list(OperationAttempt.objects.filter(entry=entry).values_list("outcome", flat=True))
    assert outcomes == [Outcome.TRANSIENT, Outcome.SUCCESS]


def test_every_push_is_logged_with_its_sequence_key_and_outcome(simulator, published_dispatches, caplog):
    [entry] = school_entries()
    simulator.configure(script=["error"])
    with caplog.at_level("INFO", logger="sync.runs"):
        runs.push_run([entry.pk], take_lease("a"))
        OperationLog.objects.filter(pk=entry.pk).update(next_attempt_at=None)
        runs.push_run([entry.pk], take_lease("b"))
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("push ")]
    assert len(lines) == 2
    for line, outcome in zip(lines, ("transient", "success"), strict=True):
        assert f"sequence={entry.sequence}" in line
        assert f"key={entry.idempotency_key}" in line
        assert f"outcome={outcome}" in line


def test_a_run_sends_its_entries_in_order_with_one_claim_and_one_record_per_send(simulator):
    single, *run = school_entries(4)
    token = take_lease()
    with CaptureQueriesContext(connection) as one:
        assert runs.push_run([single.pk], token) == RunResult.SENT
    with CaptureQueriesContext(connection) as three:
        assert runs.push_run([entry.pk for entry in run], token) == RunResult.SENT
    per_send = (len(three) - len(one)) / 2
    assert per_send == int(per_send) <= 8  # one commit per send, the same for every send
    assert len(one) - per_send <= 12  # and one claim per run

    assert [a["key"] for a in simulator.applied] == [str(entry.idempotency_key) for entry in [single, *run]]
    assert set(OperationLog.objects.values_list("status", "attempt_count")) == {(EntryStatus.SUCCEEDED, 1)}
    assert OperationAttempt.objects.filter(outcome=Outcome.SUCCESS).count() == 4
    lane = SyncLane.objects.get(pk=DEFAULT_LANE)
    assert (lane.last_pushed_sequence, lane.lease_token) == (run[-1].sequence, token)


def test_a_link_delivered_twice_sends_its_run_once(simulator):
    # A broker may deliver a chain link twice (it redelivers what it thinks unacknowledged).
    # Before, the second delivery claimed the entries the first was sending, under the same
    # lease, and both sent them: two calls in flight on one lane.
    run = school_entries(3)
    run_ids = [entry.pk for entry in run]
    token = take_lease()
    refusal, claimed = runs.claim_run(run_ids, token)  # the first delivery claims the run
    assert (refusal, len(claimed)) == (None, 3)

    assert runs.push_run(run_ids, token) == RunResult.ALREADY_RUNNING  # the second stands back
    assert not RunResult.ALREADY_RUNNING.chain_goes_on  # and its copy of the chain ends there
    assert simulator.applied == []
    assert set(OperationLog.objects.values_list("status", flat=True)) == {EntryStatus.IN_PROGRESS}


def test_a_transient_failure_ends_the_run_and_returns_the_rest_to_pending(simulator, published_dispatches):
    first, second, third = school_entries(3)
    simulator.configure(script=["ok", "error"])

    assert runs.push_run([first.pk, second.pk, third.pk], take_lease()) == RunResult.RETRY_LATER

    statuses = dict(OperationLog.objects.values_list("pk", "status"))
    assert statuses == {first.pk: EntryStatus.SUCCEEDED, second.pk: EntryStatus.PENDING, third.pk: EntryStatus.PENDING}
    third.refresh_from_db()
    assert (third.attempt_count, third.next_attempt_at) == (0, None)  # never sent: its claim is undone
    assert OperationLog.objects.get(pk=second.pk).next_attempt_at is not None
    assert [a["key"] for a in simulator.applied] == [str(first.idempotency_key)]
    assert SyncLane.objects.get(pk=DEFAULT_LANE).lease_token == ""
    assert [args for args, _ in published_dispatches] == [(DEFAULT_LANE,)]


def test_a_run_out_of_time_hands_the_rest_to_a_dispatch_under_the_same_lease(simulator, published_dispatches, settings):
    settings.SYNC_RUN_SECONDS = 0
    first, second = school_entries(2)
    token = take_lease()

    assert runs.push_run([first.pk, second.pk], token) == RunResult.HANDED_OVER

    assert [a["key"] for a in simulator.applied] == [str(first.idempotency_key)]
    second.refresh_from_db()
    assert (second.status, second.attempt_count) == (EntryStatus.PENDING, 0)
    assert SyncLane.objects.get(pk=DEFAULT_LANE).lease_token == token
    assert published_dispatches == [((DEFAULT_LANE, token), None)]  # the same lease goes on


def test_a_skipped_permanent_failure_lets_the_run_go_on(simulator, settings):
    settings.SYNC_ON_PERMANENT_FAILURE = "skip"
    first, second = school_entries(2)
    simulator.configure(script=["reject"])
    assert runs.push_run([first.pk, second.pk], take_lease()) == RunResult.SENT
    assert dict(OperationLog.objects.values_list("pk", "status")) == {
        first.pk: EntryStatus.FAILED,
        second.pk: EntryStatus.SUCCEEDED,
    }


def test_a_late_run_does_not_overwrite_what_happened_since(simulator, published_dispatches):
    from sync.client import PushResult

    [entry] = school_entries()
    token = take_lease("chain-a")
    refusal, run = runs.claim_run([entry.pk], token)  # chain A claims the entry and sends attempt 1
    assert refusal is None

    # Meanwhile A stalled past its lease; chain B took the lane over, claimed the entry again
    # and is sending it.
    SyncLane.objects.filter(pk=DEFAULT_LANE).update(lease_expires_at=timezone.now())
    assert lease.acquire(DEFAULT_LANE, "chain-b")
    assert runs.claim_run([entry.pk], "chain-b")[0] is None
    for sends, result in enumerate(
        (
            PushResult(Outcome.SUCCESS, status_code=201),
            PushResult(Outcome.TRANSIENT, error="timed out", maybe_applied=True),
            PushResult(Outcome.PERMANENT, status_code=400, error="HTTP 400"),
        ),
        start=1,
    ):
        sent = runs.SentEntry(run[0], result, timezone.now())
        assert runs.record_send(sent, token, unsent=[]) == RunResult.LEASE_LOST
        entry.refresh_from_db()
        assert entry.status == EntryStatus.IN_PROGRESS  # B's claim stands
        assert entry.attempt_count == sends  # A's sends happened all the same
        assert entry.maybe_applied  # A's first send was applied
        assert SyncLane.objects.get(pk=DEFAULT_LANE).lease_token == "chain-b"
    assert published_dispatches == []
    assert OperationAttempt.objects.filter(entry=entry).count() == 3  # A's attempts are still on record


def test_a_send_that_fails_in_a_way_nobody_foresaw_is_recorded_and_frees_the_lane(simulator, settings):
    # Before, an exception the client did not classify escaped between claim and record:
    # no attempt row, the run left in progress, and the next chain hit the same error.
    [entry] = school_entries()
    settings.SYNC_API_TOKEN = "tökén"  # a header value that cannot be encoded

    assert runs.push_run([entry.pk], take_lease()) == RunResult.BLOCKED

    entry.refresh_from_db()
    assert (entry.status, entry.attempt_count) == (EntryStatus.FAILED, 1)
    assert entry.last_error.startswith("could not send: UnicodeEncodeError")
    [attempt] = entry.attempts.all()
    assert (attempt.outcome, attempt.error) == (Outcome.PERMANENT, entry.last_error)
    assert SyncLane.objects.get(pk=DEFAULT_LANE).lease_token == ""


def test_a_send_without_a_clear_answer_marks_the_entry_as_maybe_applied(simulator, published_dispatches, settings):
    settings.SYNC_HTTP_TIMEOUT = 0.3
    timed_out, refused = school_entries(2)
    simulator.configure(script=["timeout"], timeout_seconds=1)
    assert runs.push_run([timed_out.pk], take_lease("a")) == RunResult.RETRY_LATER
    simulator.configure(script=["reject"])
    assert runs.push_run([refused.pk], take_lease("b")) == RunResult.OUT_OF_ORDER  # the first is still open
    OperationLog.objects.filter(pk=timed_out.pk).update(status=EntryStatus.CANCELLED)
    assert runs.push_run([refused.pk], take_lease("c")) == RunResult.BLOCKED

    timed_out.refresh_from_db()
    refused.refresh_from_db()
    assert (timed_out.maybe_applied, refused.maybe_applied) == (True, False)
