"""Scheduled changes with real default workers: on time, once with two workers, and after a crash."""

from collections import Counter
from datetime import timedelta

import pytest
from django.utils import timezone

from schools.scheduling import runner, services
from schools.scheduling.models import ScheduledChange, ScheduledChangeStatus
from sync.models import OperationLog
from tests.factories import SchoolFactory
from tests.helpers import as_beat_would, district_staff, schedule, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

ON_TIME_SECONDS = 1.0
SCHEDULED_SWEEP_SECONDS = 5  # as beat runs it (schools migration 0003)
RECOVERY_SECONDS = 10


@pytest.fixture
def start_default_worker(processes):
    def start(name: str = "default-1"):
        command = ["-m", "celery", "-A", "config", "worker", "-Q", "default", "--concurrency", "1"]
        command += ["-n", f"{name}@%h", "-l", "INFO", "--without-mingle", "--without-gossip"]
        return processes(command, name, "ready.")

    return start


def schedule_address_changes(schools, per_school: int, execute_at):
    """Each change gives a school a distinct address, so its log entries can be counted."""
    return services.scheduled_changes_create(
        [
            {
                "execute_at": execute_at,
                "resource": "schools",
                "operation": "update",
                "target_id": school.pk,
                "data": {"address": f"{school.pk}-{number}"},
            }
            for school in schools
            for number in range(per_school)
        ],
        actor=district_staff(),
    )


def applied_counts(changes) -> Counter:
    addresses = {change.data["address"] for change in changes}
    return Counter(
        address
        for address in OperationLog.objects.filter(operation="update", resource="schools").values_list(
            "payload__address", flat=True
        )
        if address in addresses
    )


def all_done(count: int) -> bool:
    return ScheduledChange.objects.filter(status=ScheduledChangeStatus.DONE).count() == count


def test_changes_run_within_a_second_of_their_time(start_default_worker):
    start_default_worker()
    schools = [SchoolFactory() for _ in range(5)]
    start = timezone.now()
    changes = [
        schedule(
            execute_at=start + timedelta(seconds=2 + index * 0.7),
            resource="schools",
            operation="update",
            target_id=school.pk,
            data={"address": f"on time {index}"},
        )
        for index, school in enumerate(schools)
    ]

    wait_until(lambda: all_done(len(changes)), timeout=30, message="the changes to run")

    for change in ScheduledChange.objects.all():
        assert change.finished_at >= change.execute_at  # never early
        assert (change.finished_at - change.execute_at).total_seconds() < ON_TIME_SECONDS
    assert sum(applied_counts(changes).values()) == len(changes)


def test_two_workers_run_each_change_exactly_once(start_default_worker):
    start_default_worker("default-a")
    start_default_worker("default-b")
    schools = [SchoolFactory() for _ in range(50)]
    changes = schedule_address_changes(schools, per_school=6, execute_at=timezone.now() + timedelta(seconds=2))

    wait_until(lambda: all_done(len(changes)), timeout=60, message="every change to run")

    counts = applied_counts(changes)
    assert len(counts) == len(changes)
    assert set(counts.values()) == {1}


def test_a_worker_killed_mid_batch_loses_nothing_repeats_nothing_and_recovers_in_seconds(start_default_worker):
    schools = [SchoolFactory() for _ in range(100)]
    changes = schedule_address_changes(schools, per_school=15, execute_at=timezone.now() + timedelta(seconds=1))
    worker = start_default_worker("default-crashing")
    wait_until(
        lambda: ScheduledChange.objects.filter(status=ScheduledChangeStatus.DONE).exists(),
        timeout=30,
        message="the first changes to run",
    )
    worker.kill()
    done_at_crash = ScheduledChange.objects.filter(status=ScheduledChangeStatus.DONE).count()
    assert done_at_crash < len(changes), "the worker finished before the crash; nothing was tested"
    assert ScheduledChange.objects.filter(status=ScheduledChangeStatus.RUNNING).exists()  # its claimed batch

    claimed_by_the_dead_worker = list(
        ScheduledChange.objects.filter(status=ScheduledChangeStatus.RUNNING).values_list("pk", flat=True)
    )
    start_default_worker("default-restarted")
    restarted_at = timezone.now()
    wait_until(
        lambda: all_done(len(changes)),
        timeout=120,
        message="every change to run after the crash",
        every=as_beat_would(runner.sweep, every_seconds=SCHEDULED_SWEEP_SECONDS),
    )

    counts = applied_counts(changes)
    assert len(counts) == len(changes)
    assert set(counts.values()) == {1}
    # What the dead worker had claimed ran within seconds of the restart, not after minutes.
    finished = ScheduledChange.objects.filter(pk__in=claimed_by_the_dead_worker).values_list("finished_at", flat=True)
    assert (max(finished) - restarted_at).total_seconds() <= RECOVERY_SECONDS
