"""SYNC_MAX_IN_FLIGHT: calls in flight across lanes never exceed the cap (PostgreSQL advisory locks)."""

import psycopg
import pytest
from django.db import connection

from sync import runs, throttle
from sync.models import EntryStatus, OperationLog
from sync.runs import RunResult
from tests.factories import SchoolFactory
from tests.helpers import database_url, lane_of, run_in_threads, take_lease

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _capped_school_lanes(settings):
    if connection.vendor != "postgresql":
        pytest.skip("the cap is kept with PostgreSQL advisory locks")
    settings.SYNC_LANES = "school"
    settings.SYNC_MAX_IN_FLIGHT = 1
    settings.SYNC_RUN_SECONDS = 0.3


def test_a_lane_waits_for_a_free_call_slot_and_hands_over_when_none_comes(simulator, published_dispatches):
    school = SchoolFactory()
    [entry] = OperationLog.objects.filter(lane_id=lane_of(school))
    token = take_lease(lane=lane_of(school))
    with psycopg.connect(database_url(), autocommit=True) as other_worker:
        other_worker.execute("SELECT pg_advisory_lock(%s, 0)", [throttle.ADVISORY_LOCK_SPACE])  # its call is in flight
        assert runs.push_run([entry.pk], token) == RunResult.HANDED_OVER
        assert simulator.requests == 0
        entry.refresh_from_db()
        assert (entry.status, entry.attempt_count) == (EntryStatus.PENDING, 0)  # no attempt spent
    # The other worker's connection ended (as a killed worker's would): its slot is free.
    assert runs.push_run([entry.pk], token) == RunResult.SENT
    assert simulator.requests == 1


def test_lanes_pushing_at_once_never_exceed_the_cap(simulator, settings):
    settings.SYNC_RUN_SECONDS = 5
    simulator.configure(latency_scale=0.01)  # 50 ms per school
    schools = [SchoolFactory() for _ in range(4)]

    def push(school):
        lane = lane_of(school)
        ids = list(OperationLog.objects.filter(lane_id=lane).values_list("pk", flat=True))
        assert runs.push_run(ids, take_lease(token=f"chain-{lane}", lane=lane)) == RunResult.SENT

    threads, errors = run_in_threads([lambda school=school: push(school) for school in schools])
    for thread in threads:
        thread.join(30)
    assert errors == []
    stats = simulator.stats()
    assert (stats["applied"], stats["max_in_flight"]) == (4, 1)
