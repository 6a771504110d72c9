"""The lane lease: one holder at a time until it expires (I8)."""

import threading
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone

from sync import dispatcher, lease, runs
from sync.clock import DatabaseNow
from sync.models import DEFAULT_LANE, EntryStatus, SyncLane
from sync.recorder import lock_lane
from tests.helpers import running_simulator, school_entries, take_lease

pytestmark = pytest.mark.django_db


def test_only_one_lease_at_a_time_until_it_expires(settings):
    SyncLane.objects.get_or_create(pk=DEFAULT_LANE)
    assert lease.acquire(DEFAULT_LANE, "a")
    assert not lease.acquire(DEFAULT_LANE, "b")
    assert lease.renew("a")
    assert not lease.renew("b")

    SyncLane.objects.filter(pk=DEFAULT_LANE).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    assert lease.acquire(DEFAULT_LANE, "b")
    assert not lease.renew("a")


@pytest.mark.django_db(transaction=True)
def test_a_renewal_that_waited_for_the_lane_lock_longer_than_the_lease_still_holds_it(settings):
    # A writer holds the lane's row (as every write does) for longer than the lease lasts.
    if connection.vendor != "postgresql":
        pytest.skip("needs two connections and row locks (PostgreSQL)")
    settings.SYNC_LEASE_SECONDS = 1
    SyncLane.objects.get_or_create(pk=DEFAULT_LANE)
    assert lease.acquire(DEFAULT_LANE, "chain-a")
    locked, release = threading.Event(), threading.Event()

    def slow_writer() -> None:
        try:
            with transaction.atomic():
                lock_lane(DEFAULT_LANE)
                locked.set()
                release.wait(timeout=10)
        finally:
            connection.close()

    writer = threading.Thread(target=slow_writer)
    writer.start()
    assert locked.wait(timeout=10)
    threading.Timer(1.5, release.set).start()  # the writer commits after more than a lease
    renewed = lease.renew("chain-a")  # waits for the writer's lock
    writer.join(timeout=10)

    lane = SyncLane.objects.annotate(db_now=DatabaseNow()).get(pk=DEFAULT_LANE)
    assert renewed
    assert lane.lease_expires_at > lane.db_now  # not an expiry computed before the wait, now past
    assert dispatcher.sweep() == []  # so the sweep cannot take the lane from a live chain


def test_a_sweep_on_a_host_whose_clock_runs_ahead_leaves_a_live_lease_alone(monkeypatch, kicks):
    [entry] = school_entries()
    token = take_lease()
    assert runs.claim_run([entry.pk], token)[0] is None  # in progress: being sent

    real_now = timezone.now
    monkeypatch.setattr(timezone, "now", lambda: real_now() + timedelta(minutes=5))
    assert dispatcher.sweep() == []

    entry.refresh_from_db()
    assert entry.status == EntryStatus.IN_PROGRESS
    assert SyncLane.objects.get(pk=DEFAULT_LANE).lease_token == token


@pytest.mark.django_db(transaction=True)
def test_a_call_longer_than_the_lease_keeps_the_lease(settings):
    # The lease is short (a dead worker's lane resumes quickly); a live chain keeps it renewed.
    settings.SYNC_LEASE_SECONDS = 3
    settings.SYNC_HTTP_TIMEOUT = 10
    intruder: list[bool] = []

    def another_chain_tries_to_take_the_lane() -> None:
        try:
            intruder.append(lease.acquire(DEFAULT_LANE, "intruder"))
        finally:
            connection.close()

    with running_simulator() as (simulator, url):
        simulator.configure(latency_scale=0.9)  # a school takes 4.5 s
        settings.SYNC_API_URL = url
        [entry] = school_entries()
        token = take_lease()
        threading.Timer(4, another_chain_tries_to_take_the_lane).start()  # past the lease's 3 s
        assert runs.push_run([entry.pk], token) == runs.RunResult.SENT

    assert intruder == [False]
    assert SyncLane.objects.get(pk=DEFAULT_LANE).lease_token == token


def test_reopening_a_dead_chains_run_marks_the_entry_it_was_sending_as_maybe_applied(kicks):
    sending, waiting = school_entries(2)
    token = take_lease()
    runs.claim_run([sending.pk, waiting.pk], token)  # the chain dies during the first call
    SyncLane.objects.filter(pk=DEFAULT_LANE).update(lease_expires_at=timezone.now() - timedelta(seconds=1))

    assert lease.expire(DEFAULT_LANE)

    sending.refresh_from_db()
    waiting.refresh_from_db()
    assert (sending.status, waiting.status) == (EntryStatus.PENDING, EntryStatus.PENDING)
    assert (sending.maybe_applied, waiting.maybe_applied) == (True, False)


@pytest.fixture
def worker_name():
    before = lease.holder()
    lease.name_holder("sync-1@host [sync]")
    yield lease.holder()
    lease.name_holder(before)


def test_a_restarted_worker_frees_the_leases_its_dead_predecessor_held_and_only_those(worker_name, settings):
    settings.SYNC_LEASE_SECONDS = 6
    [entry] = school_entries()
    token = take_lease()
    runs.claim_run([entry.pk], token)
    lane = SyncLane.objects.filter(pk=DEFAULT_LANE)
    assert lane.get().lease_holder == worker_name

    assert lease.release_held_by(worker_name) == []  # renewed just now: a live chain of that name
    lane.update(lease_expires_at=timezone.now() + timedelta(seconds=3))  # last renewed 3 s ago
    assert lease.release_held_by("sync-2@host [sync]") == []  # another worker's restart
    assert lease.release_held_by(worker_name) == [DEFAULT_LANE]

    entry.refresh_from_db()
    assert (lane.get().lease_token, entry.status, entry.maybe_applied) == ("", EntryStatus.PENDING, True)


def test_the_holder_is_whoever_renewed_the_lease_last(worker_name):
    token = take_lease()  # acquired here, by sync-1
    lease.name_holder("sync-2@host [sync]")  # the chain's next link runs on sync-2
    assert lease.renew(token)
    assert SyncLane.objects.get(pk=DEFAULT_LANE).lease_holder == "sync-2@host [sync]"
