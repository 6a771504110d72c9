"""School lanes with real workers: schools delivered in parallel, each lane and every move in order,
the cap on calls in flight kept, and a kill -9 losing and doubling nothing."""

import random

import pytest

from schools.models import SchoolClass, Student
from schools.services import record_update
from sync import dispatcher
from sync.models import EntryStatus, OperationLog
from tests.factories import SchoolClassFactory, StudentFactory
from tests.helpers import as_beat_would, wait_for_delivery, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

SCHOOLS = 4
STUDENTS_PER_SCHOOL = 6
MOVES = 6
SCHOOL_LANES = {"SYNC_LANES": "school"}


@pytest.fixture
def school_lanes(settings, simulator):
    settings.SYNC_LANES = "school"  # this process writes as the web process would
    simulator.configure(latency_scale=0.05)  # 50 ms per student, 250 ms per school
    return simulator


def write_schools_and_moves(seed: int = 1) -> None:
    rng = random.Random(seed)
    classes = [SchoolClassFactory() for _ in range(SCHOOLS)]
    students = [StudentFactory(school_class=c) for c in classes for _ in range(STUDENTS_PER_SCHOOL)]
    for student in rng.sample(students, MOVES):
        current = Student.objects.get(pk=student.pk)
        target = rng.choice([c for c in classes if c.pk != current.school_class_id])
        record_update(instance=current, data={"school_class": SchoolClass.objects.get(pk=target.pk)})


def assert_each_lane_in_order_and_applied_once(simulator) -> None:
    assert not OperationLog.objects.exclude(status=EntryStatus.SUCCEEDED).exists()
    stats = simulator.stats()
    assert stats["out_of_order"] == 0, stats["out_of_order_lanes"]  # every lane, over every slot
    assert stats["max_in_flight_per_lane"] == 1  # one pusher per lane (I8)
    applied = sorted(item["key"] for item in simulator.applied_in_order())
    assert applied == sorted(str(key) for key in OperationLog.objects.values_list("idempotency_key", flat=True))
    moves = [item for item in simulator.applied_in_order() if len(item["slots"]) == 2]
    assert len(moves) == MOVES


def test_schools_are_delivered_in_parallel_within_the_cap(school_lanes, start_sync_worker):
    start_sync_worker("sync-1", concurrency=3, SYNC_MAX_IN_FLIGHT="2", **SCHOOL_LANES)
    write_schools_and_moves()

    wait_for_delivery(timeout=120, sweep=True)

    assert_each_lane_in_order_and_applied_once(school_lanes)
    assert school_lanes.stats()["max_in_flight"] == 2  # lanes in parallel, never beyond the cap


def test_a_killed_worker_loses_and_doubles_nothing_with_school_lanes(school_lanes, start_sync_worker):
    workers = [start_sync_worker(name, concurrency=2, **SCHOOL_LANES) for name in ("sync-a", "sync-b")]
    write_schools_and_moves(seed=2)
    wait_until(lambda: len(school_lanes.applied) >= 10, timeout=60, message="delivery to be under way")
    workers[0].kill()

    wait_until(
        lambda: not OperationLog.objects.exclude(status=EntryStatus.SUCCEEDED).exists(),
        timeout=120,
        message="every entry to be delivered",
        every=as_beat_would(dispatcher.sweep, 5),  # the sweep ends the dead worker's leases
    )
    assert_each_lane_in_order_and_applied_once(school_lanes)
