"""A write waits a bounded time for a lane an import holds, then is refused with a 409 that says so."""

import threading

import pytest
from django.db import connection, transaction

from schools import lanes
from schools.scheduling import runner
from schools.scheduling.models import ScheduledChangeStatus
from sync.recorder import lock_lanes
from tests.factories import SchoolClassFactory
from tests.helpers import api_client_for, district_staff, in_seconds, make_due, schedule

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _postgresql_only():
    if connection.vendor != "postgresql":
        pytest.skip("lock_timeout is PostgreSQL's")


@pytest.fixture
def lane_held_as_by_an_import(monkeypatch):
    monkeypatch.setattr(lanes, "LANE_WAIT_SECONDS", 0.5)
    held, release = threading.Event(), threading.Event()

    def hold(lane: str):
        def run():
            with transaction.atomic():
                lock_lanes([lane])
                held.set()
                release.wait(timeout=30)
            connection.close()

        thread = threading.Thread(target=run)
        thread.start()
        assert held.wait(timeout=10)
        return thread

    threads = []
    yield lambda lane: threads.append(hold(lane))
    release.set()
    for thread in threads:
        thread.join()


def test_a_write_behind_an_import_is_a_409_after_a_bounded_wait(lane_held_as_by_an_import):
    school_class = SchoolClassFactory()
    lane_held_as_by_an_import(lanes.lane_of(school_class))
    body = {"school_class": school_class.pk, "first_name": "A", "last_name": "B", "student_number": "1"}

    response = api_client_for(district_staff()).post("/api/students/", body)

    assert (response.status_code, response.json()) == (409, {"detail": lanes.LANES_BUSY})
    assert not school_class.students.exists()


def test_a_scheduled_change_behind_an_import_is_retried_later(lane_held_as_by_an_import, settings):
    settings.SYNC_LANES = "school"  # each change in a transaction of its own
    school_class = SchoolClassFactory()
    change = schedule(
        execute_at=in_seconds(60),
        resource="classes",
        operation="update",
        target_id=school_class.pk,
        data={"name": "Renamed"},
    )
    make_due(change)
    lane_held_as_by_an_import(lanes.lane_of(school_class))

    runner.run_due()

    change.refresh_from_db()
    assert (change.status, change.error) == (ScheduledChangeStatus.SCHEDULED, lanes.LANES_BUSY)
