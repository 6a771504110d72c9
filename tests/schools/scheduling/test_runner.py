"""Running due changes: through the services, once, failed with a reason or retried later."""

from datetime import timedelta

import pytest
from django.db import OperationalError
from django.utils import timezone

from schools.scheduling import runner
from schools.scheduling.models import ScheduledChange, ScheduledChangeStatus
from schools.services import record_delete
from sync.models import OperationLog
from tests.factories import SchoolClassFactory, SchoolFactory, StudentFactory
from tests.helpers import in_seconds, make_due, schedule

pytestmark = pytest.mark.django_db


def test_a_due_change_runs_through_the_services_and_is_logged_then(asked_wake_ups):
    student, new_class = StudentFactory(), SchoolClassFactory()
    change = schedule(
        execute_at=in_seconds(3600),
        resource="students",
        operation="update",
        target_id=student.pk,
        data={"school_class": new_class.pk},
    )
    SchoolFactory(name="Written after scheduling, before running")
    not_due = schedule(execute_at=in_seconds(3600), resource="schools", operation="create", data={"name": "Not yet"})
    make_due(change)

    assert runner.run_due() == 1

    change.refresh_from_db()
    assert (change.status, change.attempt_count, change.result_object_id) == (ScheduledChangeStatus.DONE, 1, student.pk)
    assert change.started_at is not None
    assert change.finished_at >= change.started_at
    student.refresh_from_db()
    assert student.school_class_id == new_class.pk
    assert student.school_id == new_class.grade.school_id
    entry = OperationLog.objects.order_by("-sequence").first()
    assert (entry.operation, entry.resource, entry.object_id) == ("update", "students", student.pk)
    assert entry.payload["school_class"] == new_class.pk
    assert OperationLog.objects.filter(payload__name="Written after scheduling, before running").get().sequence < (
        entry.sequence
    )  # sequenced when it ran, not when it was scheduled
    assert ScheduledChange.objects.get(pk=not_due.pk).status == ScheduledChangeStatus.SCHEDULED


@pytest.mark.parametrize("operation", ["create", "delete"])
def test_creates_and_deletes_run_too(operation):
    school = SchoolFactory()
    change = schedule(
        execute_at=in_seconds(60),
        resource="schools",
        operation=operation,
        target_id=None if operation == "create" else school.pk,
        data={"name": "Opening in spring"} if operation == "create" else {},
    )
    make_due(change)
    runner.run_due()
    change.refresh_from_db()
    assert change.status == ScheduledChangeStatus.DONE
    assert OperationLog.objects.filter(
        operation=operation, resource="schools", object_id=change.result_object_id
    ).exists()


def test_a_change_no_longer_valid_when_due_fails_with_the_reason():
    student = StudentFactory()
    doomed_class = SchoolClassFactory()
    change = schedule(
        execute_at=in_seconds(60),
        resource="students",
        operation="update",
        target_id=student.pk,
        data={"school_class": doomed_class.pk},
    )
    record_delete(instance=doomed_class)
    make_due(change)
    entries = OperationLog.objects.count()

    runner.run_due()

    change.refresh_from_db()
    assert change.status == ScheduledChangeStatus.FAILED
    assert "school_class" in change.error
    assert "does not exist" in change.error
    assert OperationLog.objects.count() == entries


def test_a_refused_delete_when_due_fails_with_the_reason():
    school_class = SchoolClassFactory()
    change = schedule(execute_at=in_seconds(60), resource="classes", operation="delete", target_id=school_class.pk)
    StudentFactory(school_class=school_class)
    make_due(change)
    runner.run_due()
    change.refresh_from_db()
    assert change.status == ScheduledChangeStatus.FAILED
    assert "still referenced by 1 student" in change.error


def test_a_transient_error_rolls_back_and_retries_later(
    monkeypatch, asked_wake_ups, django_capture_on_commit_callbacks
):
    change = schedule(execute_at=in_seconds(60), resource="schools", operation="create", data={"name": "Flaky"})
    make_due(change)

    def database_went_away(**kwargs):
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(runner, "record_create", database_went_away)
    before = timezone.now()
    with django_capture_on_commit_callbacks(execute=True):
        runner.run_due()

    change.refresh_from_db()
    assert (change.status, change.attempt_count) == (ScheduledChangeStatus.SCHEDULED, 1)
    assert change.due_at > before
    assert "server closed the connection" in change.error
    assert asked_wake_ups == [change.due_at]
    assert not OperationLog.objects.filter(payload__name="Flaky").exists()

    monkeypatch.undo()
    make_due(change)
    runner.run_due()
    change.refresh_from_db()
    assert (change.status, change.attempt_count) == (ScheduledChangeStatus.DONE, 2)


def test_a_crash_mid_run_is_recovered_and_the_change_runs_once(asked_wake_ups):
    change = schedule(execute_at=in_seconds(60), resource="schools", operation="create", data={"name": "Survivor"})
    make_due(change)
    [claimed] = runner.claim_due(timezone.now())  # the worker dies here, before running it

    assert runner.run_due() == 0  # a live claim is left alone
    ScheduledChange.objects.filter(pk=change.pk).update(
        claimed_at=timezone.now() - timedelta(seconds=runner.CLAIM_LEASE_SECONDS + 1)
    )
    assert runner.sweep()["released"] == 1
    assert runner.run_due() == 1

    runner.execute_chunk([claimed])  # the old claim comes back to life: it must not apply again
    assert OperationLog.objects.filter(payload__name="Survivor").count() == 1
    change.refresh_from_db()
    assert (change.status, change.attempt_count) == (ScheduledChangeStatus.DONE, 1)  # the crashed claim never ran


def test_the_sweep_sends_wake_ups_for_changes_coming_due(asked_wake_ups):
    soon = schedule(execute_at=in_seconds(30), resource="schools", operation="create", data={"name": "Soon"})
    schedule(execute_at=in_seconds(3600), resource="schools", operation="create", data={"name": "Later"})
    asked_wake_ups.clear()
    runner.sweep()
    assert asked_wake_ups == [soon.due_at]


def address_updates(label: str, count: int = 3) -> list[ScheduledChange]:
    """Scheduled address changes of new schools, one each: "<label> 0", "<label> 1", …"""
    return [
        schedule(
            execute_at=in_seconds(60),
            resource="schools",
            operation="update",
            target_id=SchoolFactory().pk,
            data={"address": f"{label} {index}"},
        )
        for index in range(count)
    ]


def test_in_a_chunk_an_invalid_change_fails_alone():
    changes = address_updates("Chunk")
    taken = SchoolFactory(name="Taken name")
    ScheduledChange.objects.filter(pk=changes[1].pk).update(data={"name": taken.name})
    make_due(*changes)

    assert runner.run_due() == 3

    statuses = [ScheduledChange.objects.get(pk=change.pk).status for change in changes]
    assert statuses == [ScheduledChangeStatus.DONE, ScheduledChangeStatus.FAILED, ScheduledChangeStatus.DONE]
    assert "already exists" in ScheduledChange.objects.get(pk=changes[1].pk).error
    assert OperationLog.objects.filter(payload__address__startswith="Chunk").count() == 2


def test_a_transient_error_in_a_chunk_retries_the_whole_chunk(monkeypatch, asked_wake_ups):
    changes = address_updates("Retry")
    make_due(*changes)
    original = runner.record_update
    calls = []

    def fail_on_the_second(**kwargs):
        calls.append(kwargs)
        if len(calls) == 2:
            raise OperationalError("deadlock detected")
        return original(**kwargs)

    monkeypatch.setattr(runner, "record_update", fail_on_the_second)
    runner.run_due()

    assert {ScheduledChange.objects.get(pk=c.pk).status for c in changes} == {ScheduledChangeStatus.SCHEDULED}
    assert not OperationLog.objects.filter(payload__address__startswith="Retry").exists()  # the first rolled back too


def rename_student(student, first_name: str, execute_at) -> ScheduledChange:
    return schedule(
        execute_at=execute_at,
        resource="students",
        operation="update",
        target_id=student.pk,
        data={"first_name": first_name},
    )


def test_changes_to_one_record_run_in_execute_at_order_even_after_a_retry(monkeypatch, asked_wake_ups):
    student = StudentFactory(first_name="v0")
    first = rename_student(student, "v1", in_seconds(-50))
    second = rename_student(student, "v2", in_seconds(-40))
    ScheduledChange.objects.filter(pk=second.pk).update(due_at=in_seconds(3600))  # not yet

    def database_went_away(**kwargs):
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(runner, "record_update", database_went_away)
    runner.run_due()  # the first change fails transiently: it is due again after a backoff
    monkeypatch.undo()
    ScheduledChange.objects.filter(pk=second.pk).update(due_at=in_seconds(-1))

    assert runner.run_due() == 0  # the second waits for the first, although it is due
    ScheduledChange.objects.filter(pk=first.pk).update(due_at=in_seconds(-1))
    assert runner.run_due() == 2

    student.refresh_from_db()
    assert student.first_name == "v2"  # the last one scheduled wins, here and there
    renames = OperationLog.objects.filter(resource="students", object_id=student.pk, operation="update")
    assert [entry.payload["first_name"] for entry in renames.order_by("sequence")] == ["v1", "v2"]


def test_two_workers_never_hold_changes_of_the_same_record_at_once():
    student, other = StudentFactory(), StudentFactory()
    changes = [rename_student(student, f"v{index}", in_seconds(60)) for index in range(1, 4)]
    elsewhere = rename_student(other, "other", in_seconds(60))
    make_due(*changes, elsewhere)

    first_worker = runner.claim_due(timezone.now())
    second_worker = runner.claim_due(timezone.now())

    assert {change.pk for change in first_worker} == {changes[0].pk, elsewhere.pk}  # ties: creation order
    assert second_worker == []  # v2 and v3 wait until v1 is done


def test_a_long_batch_keeps_its_later_chunks_claimed(monkeypatch):
    # Each chunk renews the whole claim, not only itself: chunks waiting their turn are not
    # released to another worker while the first ones run.
    schools = [SchoolFactory() for _ in range(runner.EXECUTE_CHUNK_SIZE + 1)]
    changes = [
        schedule(
            execute_at=in_seconds(60),
            resource="schools",
            operation="update",
            target_id=school.pk,
            data={"address": "x"},
        )
        for school in schools
    ]
    make_due(*changes)
    claimed = runner.claim_due(timezone.now())
    ScheduledChange.objects.filter(pk__in=[change.pk for change in changes]).update(
        claimed_at=timezone.now() - timedelta(seconds=runner.CLAIM_LEASE_SECONDS + 1)
    )
    runner.renew_claim(claimed[0].claim_token)  # before the first chunk
    assert runner.sweep()["released"] == 0
