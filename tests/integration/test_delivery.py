"""The sync engine end to end: real worker, real broker, the simulator as the external system."""

import random
import threading
import time

import httpx
import pytest
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from knox.models import AuthToken

from schools.services import record_update, school_create
from sync.dispatcher import sweep
from sync.models import EntryStatus, OperationAttempt, OperationLog, SyncLane
from sync.runs import RUN_LENGTH
from tests.factories import UserFactory
from tests.helpers import (
    assert_applied_once_in_order,
    broker_is_filesystem,
    free_port,
    wait_for_delivery,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

WRITERS = 8
WRITES_PER_WRITER = 25


def write_concurrently(writers: int, writes_per_writer: int) -> None:
    errors = []

    def writer(index: int) -> None:
        rng = random.Random(index)
        try:
            for number in range(writes_per_writer):
                school = school_create(name=f"Writer {index} school {number}")
                if rng.random() < 0.3:
                    record_update(instance=school, data={"address": f"Road {number}"})
        except Exception as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=writer, args=(index,)) for index in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors


def test_concurrent_writes_reach_the_external_side_once_in_commit_order(simulator, start_sync_worker):
    start_sync_worker()
    write_concurrently(WRITERS, WRITES_PER_WRITER)

    wait_for_delivery()

    entries = OperationLog.objects.count()
    assert entries >= WRITERS * WRITES_PER_WRITER
    assert len(simulator.applied) == entries
    assert_applied_once_in_order(simulator)
    assert simulator.max_in_flight == 1
    assert SyncLane.objects.get().last_pushed_sequence == entries


def test_transient_failures_retry_with_the_same_key_and_hold_the_lane(simulator, start_sync_worker):
    # Entry 1: a 503, then a timeout (applied after the client gave up, so the next try gets
    # 409 until the first is done, then the stored response). Entry 2: applied, response lost.
    simulator.configure(script=["error", "timeout", "lost_response"], timeout_seconds=1.5, retry_after=0)
    start_sync_worker(SYNC_HTTP_TIMEOUT="1", SYNC_LEASE_SECONDS="4")
    for name in ("First", "Second", "Third"):
        school_create(name=name)

    wait_for_delivery()

    assert_applied_once_in_order(simulator)
    assert len(simulator.applied) == 3
    first, second, third = OperationLog.objects.order_by("sequence")
    assert first.attempt_count >= 3
    assert second.attempt_count >= 2
    assert third.attempt_count == 1
    # The lane did not move on while the first entry was failing.
    first_done = OperationAttempt.objects.get(entry=first, outcome="success").started_at
    assert OperationAttempt.objects.filter(entry=second).earliest("started_at").started_at >= first_done
    assert simulator.stats()["replayed"] >= 2


def fail_first_entry(simulator, start_sync_worker):
    simulator.configure(script=["reject"])
    start_sync_worker()
    school_create(name="Rejected")
    school_create(name="Waiting")
    first, second = OperationLog.objects.order_by("sequence")
    wait_until(
        lambda: OperationLog.objects.get(pk=first.pk).status == EntryStatus.FAILED,
        timeout=30,
        message="the first entry to fail",
    )
    return first, second


def test_a_permanent_failure_blocks_the_lane_until_an_operator_retries(simulator, start_sync_worker, operator_client):
    first, second = fail_first_entry(simulator, start_sync_worker)

    assert sweep() == []  # nothing is due behind a failed entry
    assert OperationLog.objects.get(pk=second.pk).status == EntryStatus.PENDING
    assert simulator.requests == 1

    assert operator_client.post(f"/api/sync/operations/{first.pk}/retry/").status_code == 200
    wait_for_delivery()
    assert [item["sequence"] for item in simulator.applied] == [first.sequence, second.sequence]
    assert_applied_once_in_order(simulator)


def test_cancelling_a_failed_entry_lets_the_lane_go_on(simulator, start_sync_worker, operator_client):
    first, second = fail_first_entry(simulator, start_sync_worker)

    assert operator_client.post(f"/api/sync/operations/{first.pk}/cancel/").status_code == 200
    wait_for_delivery()
    assert OperationLog.objects.get(pk=first.pk).status == EntryStatus.CANCELLED
    assert [item["sequence"] for item in simulator.applied] == [second.sequence]


def test_kill_9_in_the_middle_of_a_push_then_restart(simulator, start_sync_worker):
    simulator.configure(script=["timeout"], timeout_seconds=2)  # the first call takes 2 s
    worker = start_sync_worker("sync-crashing")
    for number in range(5):
        school_create(name=f"Crash {number}")
    wait_until(lambda: simulator.in_flight == 1, timeout=30, message="the first push to be in flight")

    worker.kill()
    first = OperationLog.objects.order_by("sequence").first()
    assert first.status == EntryStatus.IN_PROGRESS

    start_sync_worker("sync-restarted")
    wait_for_delivery(sweep=True)  # beat's sweep recovers once the dead chain's lease expires

    assert len(simulator.applied) == 5
    assert_applied_once_in_order(simulator)
    first.refresh_from_db()
    assert first.attempt_count == first.attempts.count()  # the send the kill cut short is not counted
    assert not OperationLog.objects.filter(status=EntryStatus.IN_PROGRESS).exists()


def test_two_sync_workers_still_push_one_at_a_time_in_order(simulator, start_sync_worker):
    simulator.configure(latency_scale=0.004)  # 20 ms per school: room for overlap if it could happen
    start_sync_worker("sync-a")
    start_sync_worker("sync-b")
    write_concurrently(writers=4, writes_per_writer=15)

    wait_for_delivery()

    assert simulator.max_in_flight == 1
    assert len(simulator.applied) == OperationLog.objects.count()
    assert_applied_once_in_order(simulator)


@pytest.mark.skipif(broker_is_filesystem(), reason="the filesystem transport cannot be down")
def test_writes_succeed_while_the_broker_is_down_and_the_sweep_delivers_later(
    simulator, start_sync_worker, processes, settings
):
    start_sync_worker()
    scheme = settings.CELERY_BROKER_URL.split("://", 1)[0]
    dead_broker = f"{scheme}://{'guest:guest@' if scheme == 'amqp' else ''}127.0.0.1:1/"
    port = free_port()
    processes(
        ["manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
        "web-without-broker",
        "Quit the server with",
        CELERY_BROKER_URL=dead_broker,
    )
    _, token = AuthToken.objects.create(user=UserFactory(is_superuser=True))

    durations = []
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Token {token}"}) as web:
        for number in range(10):
            started = time.monotonic()
            response = web.post("/api/schools/", json={"name": f"Offline {number}"})
            durations.append(time.monotonic() - started)
            assert response.status_code == 201, response.text

    assert max(durations) < 1.0  # no waiting on the broker (I6)
    assert OperationLog.objects.filter(status=EntryStatus.PENDING).count() == 10
    assert simulator.requests == 0  # no kick got through

    wait_for_delivery(sweep=True)
    assert len(simulator.applied) == 10
    assert_applied_once_in_order(simulator)


def test_sigterm_during_a_slow_push_stops_within_the_http_timeout(simulator, start_sync_worker):
    http_timeout = 2
    simulator.configure(script=["timeout"], timeout_seconds=4)
    worker = start_sync_worker("sync-redeployed", SYNC_HTTP_TIMEOUT=str(http_timeout), SYNC_LEASE_SECONDS="5")
    school_create(name="Slow")
    wait_until(lambda: simulator.in_flight == 1, timeout=30, message="the push to be in flight")

    assert worker.terminate(timeout=30) <= http_timeout + 5  # I7
    entry = OperationLog.objects.get()
    assert entry.status == EntryStatus.PENDING  # the timed-out try was recorded, nothing left in progress
    assert entry.next_attempt_at is not None
    assert SyncLane.objects.get().lease_token == ""

    start_sync_worker("sync-after-redeploy")
    wait_for_delivery(sweep=True)
    assert len(simulator.applied) == 1
    assert_applied_once_in_order(simulator)
    assert OperationLog.objects.get().pushed_at <= timezone.now()


def test_sigterm_during_a_long_run_stops_after_the_run_budget_not_the_whole_run(simulator, start_sync_worker):
    http_timeout = 2
    simulator.configure(latency_scale=0.2)  # 1 s per school: a whole run would take RUN_LENGTH seconds
    worker = start_sync_worker("sync-long-run", SYNC_HTTP_TIMEOUT=str(http_timeout))
    with transaction.atomic():  # one commit, one kick: the dispatch takes all of them as its first run
        for number in range(RUN_LENGTH):
            school_create(name=f"Run {number}")
    wait_until(lambda: simulator.in_flight == 1, timeout=30, message="the first push to be in flight")

    assert worker.terminate(timeout=60) <= settings.SYNC_RUN_SECONDS + http_timeout + 5  # I7, well under RUN_LENGTH s
    statuses = list(OperationLog.objects.order_by("sequence").values_list("status", flat=True))
    sent = statuses.count(EntryStatus.SUCCEEDED)
    assert 1 <= sent < RUN_LENGTH
    assert statuses == [EntryStatus.SUCCEEDED] * sent + [EntryStatus.PENDING] * (
        RUN_LENGTH - sent
    )  # nothing in progress

    simulator.configure(latency_scale=0)
    start_sync_worker("sync-after-long-run")
    wait_for_delivery(sweep=True)
    assert len(simulator.applied) == RUN_LENGTH
    assert_applied_once_in_order(simulator)
