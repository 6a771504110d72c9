"""Recovery with real workers and kill -9: lanes resume in seconds, a crash re-sends at most one entry,
attempts count sends, and a stopped worker's lane gets one wake-up however many writes kick it."""

import time

import pytest
from django.db import transaction

from config.celery import app as celery_app
from schools.services import school_create
from sync import dispatcher
from sync.models import DEFAULT_LANE, EntryStatus, OperationLog, SyncLane
from tests.helpers import as_beat_would, assert_applied_once_in_order, wait_for_delivery, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

SYNC_SWEEP_SECONDS = 5  # as beat runs it (sync migration 0009)
PRODUCTION_LEASE = {"SYNC_HTTP_TIMEOUT": "30", "SYNC_LEASE_SECONDS": "6"}  # the defaults


def first_request_after(simulator, requests_before: int, timeout: float, every=None) -> float:
    """Seconds until the simulator sees a request beyond ``requests_before``."""
    started = time.monotonic()
    wait_until(lambda: simulator.requests > requests_before, timeout=timeout, message="the next push", every=every)
    return time.monotonic() - started


def test_a_restarted_worker_resumes_its_lanes_at_once(simulator, start_sync_worker):
    simulator.configure(script=["timeout"], timeout_seconds=20)  # the first call hangs
    worker = start_sync_worker("sync-1", **PRODUCTION_LEASE)
    for number in range(3):
        school_create(name=f"Restart {number}")
    wait_until(lambda: simulator.in_flight == 1, timeout=30, message="the first push to be in flight")
    worker.kill()
    requests_before = simulator.requests

    start_sync_worker("sync-1", **PRODUCTION_LEASE)  # the same worker, back after a crash

    assert first_request_after(simulator, requests_before, timeout=30) <= 5  # not the lease's 6 s + a sweep
    wait_for_delivery(sweep=True)
    assert_applied_once_in_order(simulator)


def test_another_worker_resumes_a_killed_workers_lane_within_seconds(simulator, start_sync_worker):
    simulator.configure(script=["timeout"], timeout_seconds=20)  # in flight well past the kill
    workers = {name: start_sync_worker(name, **PRODUCTION_LEASE) for name in ("sync-a", "sync-b")}
    for number in range(3):
        school_create(name=f"Takeover {number}")
    wait_until(lambda: simulator.in_flight == 1, timeout=30, message="the first push to be in flight")
    holder = SyncLane.objects.get(pk=DEFAULT_LANE).lease_holder.split("@")[0]
    workers[holder].kill()
    requests_before = simulator.requests

    took = first_request_after(
        simulator, requests_before, timeout=30, every=as_beat_would(dispatcher.sweep, SYNC_SWEEP_SECONDS)
    )

    assert took <= 15  # whatever the HTTP timeout (30 s here)
    wait_for_delivery(sweep=True)
    assert_applied_once_in_order(simulator)


def test_a_kill_re_sends_at_most_the_entry_in_flight_and_attempts_count_sends(simulator, start_sync_worker):
    simulator.configure(latency_scale=0.06)  # 0.3 s per school
    worker = start_sync_worker("sync-1")
    with transaction.atomic():  # one kick: the whole backlog goes out as runs of consecutive entries
        for number in range(12):
            school_create(name=f"Durable {number}")
    wait_until(lambda: len(simulator.applied) >= 4, timeout=30, message="a few pushes")
    worker.kill()
    assert len(simulator.applied) < 12, "the worker finished before the crash; nothing was tested"

    start_sync_worker("sync-1")
    wait_for_delivery(sweep=True)

    assert_applied_once_in_order(simulator)
    assert simulator.stats()["resent_keys"] <= 1  # only the one whose answer was not recorded
    for entry in OperationLog.objects.all():
        assert entry.status == EntryStatus.SUCCEEDED
        assert entry.attempt_count == entry.attempts.count()  # sends, not claims or crashes
    assert set(OperationLog.objects.values_list("attempt_count", flat=True)) <= {1, 2}


def test_a_stopped_worker_gets_one_wake_up_however_many_writes_kick_its_lane(simulator, start_sync_worker):
    for number in range(30):
        school_create(name=f"Queued {number}")  # 30 commits, 30 kicks, no worker

    with celery_app.connection_for_write() as connection:
        queued = connection.default_channel.queue_declare(queue="sync", passive=True).message_count
    assert queued == 1

    requests_before = simulator.requests
    start_sync_worker()
    assert first_request_after(simulator, requests_before, timeout=30) <= 5
    wait_for_delivery()
    assert_applied_once_in_order(simulator)
