"""Scheduled changes: validated like immediate ones, run once when due, cancellable until then."""

from datetime import timedelta

import pytest
from django.db import OperationalError
from django.utils import timezone

from schools.models import ScheduledChange, ScheduledChangeStatus, SchoolClass, Student
from schools.scheduling import runner, services, validation, wakeups
from schools.services import record_delete
from sync.models import OperationLog
from tests.conftest import api_client_for
from tests.factories import SchoolClassFactory, SchoolFactory, StudentFactory, UserFactory

pytestmark = pytest.mark.django_db

URL = "/api/scheduled-changes/"


@pytest.fixture
def asked_wake_ups(monkeypatch):
    """Wake-up times the code asked for (publishing them is the broker's job)."""
    times = []
    monkeypatch.setattr(wakeups, "wake_at", lambda moments: times.extend(moments))
    return times


def in_seconds(seconds: float):
    return timezone.now() + timedelta(seconds=seconds)


def move_student(student: Student, school_class: SchoolClass, when=None, **extra) -> dict:
    return {
        "execute_at": (when or in_seconds(3600)).isoformat(),
        "resource": "students",
        "operation": "update",
        "target_id": student.pk,
        "data": {"school_class": school_class.pk},
        **extra,
    }


def make_due(*changes: ScheduledChange) -> None:
    past = timezone.now() - timedelta(seconds=1)
    ScheduledChange.objects.filter(pk__in=[c.pk for c in changes]).update(execute_at=past, due_at=past)


# --- Creating: validated exactly like the immediate request --------------------------


def test_schedule_a_student_move(editor_client, editor, asked_wake_ups):
    student, new_class = StudentFactory(), SchoolClassFactory()
    entries_before = OperationLog.objects.count()

    response = editor_client.post(URL, move_student(student, new_class))

    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["status"], body["attempts"], body["created_by"]) == ("scheduled", 0, editor.username)
    student.refresh_from_db()
    assert student.school_class_id != new_class.pk  # nothing happens before its time
    assert OperationLog.objects.count() == entries_before
    assert asked_wake_ups == []  # due in an hour: the sweep sends its wake-up when it comes near


def test_a_change_due_soon_gets_its_wake_up_at_once(editor_client, asked_wake_ups, django_capture_on_commit_callbacks):
    student, new_class = StudentFactory(), SchoolClassFactory()
    when = in_seconds(5)
    with django_capture_on_commit_callbacks(execute=True):
        assert editor_client.post(URL, move_student(student, new_class, when=when)).status_code == 201
    assert asked_wake_ups == [ScheduledChange.objects.get().due_at]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"resource": "students", "operation": "update", "target_id": 999999, "data": {"last_name": "X"}}, "target_id"),
        ({"resource": "students", "operation": "update", "data": {"last_name": "X"}}, "target_id"),
        ({"resource": "schools", "operation": "create", "target_id": 1, "data": {"name": "X"}}, "target_id"),
        ({"resource": "schools", "operation": "create", "data": {"name": ""}}, "data"),
        ({"resource": "grades", "operation": "create", "data": {"level": 13, "name": "X"}}, "data"),
        ({"resource": "planets", "operation": "create", "data": {}}, "resource"),
        ({"resource": "schools", "operation": "rename", "data": {}}, "operation"),
        ({"resource": "schools", "operation": "create", "data": ["not", "an", "object"]}, "data"),
    ],
)
def test_invalid_changes_are_refused_at_creation(editor_client, body, field):
    response = editor_client.post(URL, {"execute_at": in_seconds(60).isoformat(), **body})
    assert response.status_code == 400
    assert field in response.json()
    assert not ScheduledChange.objects.exists()


def test_model_rules_are_checked_at_creation_as_for_an_immediate_change(editor_client):
    taken = SchoolFactory(name="Taken")
    student = StudentFactory()
    other_school_teacher_class = SchoolClassFactory()
    response = editor_client.post(
        URL,
        {
            "execute_at": in_seconds(60).isoformat(),
            "resource": "schools",
            "operation": "create",
            "data": {"name": taken.name},
        },
    )
    assert response.status_code == 400
    assert "School with this Name already exists." in str(response.json()["data"])

    StudentFactory(school_class=other_school_teacher_class, student_number=student.student_number)
    response = editor_client.post(URL, move_student(student, other_school_teacher_class))
    assert response.status_code == 400
    assert "student number already exists at this school" in str(response.json()["data"])


def test_a_change_in_the_past_is_refused(editor_client):
    response = editor_client.post(URL, move_student(StudentFactory(), SchoolClassFactory(), when=in_seconds(-3600)))
    assert response.status_code == 400
    assert response.json() == {"execute_at": [services.EXECUTE_AT_IN_THE_PAST]}


def test_a_delete_takes_no_data(editor_client):
    school = SchoolFactory()
    body = {
        "execute_at": in_seconds(60).isoformat(),
        "resource": "schools",
        "operation": "delete",
        "target_id": school.pk,
        "data": {"name": "x"},
    }
    assert editor_client.post(URL, body).json() == {"data": [validation.DELETE_TAKES_NO_DATA]}


def test_a_batch_is_created_all_or_none(editor_client):
    students, new_class = [StudentFactory() for _ in range(3)], SchoolClassFactory()
    batch = [move_student(student, new_class) for student in students]
    batch[1]["target_id"] = 999999

    response = editor_client.post(URL, batch)
    assert response.status_code == 400
    errors = response.json()
    assert errors[0] == errors[2] == {}
    assert "target_id" in errors[1]
    assert not ScheduledChange.objects.exists()

    batch[1]["target_id"] = students[1].pk
    response = editor_client.post(URL, batch)
    assert response.status_code == 201
    assert len(response.json()) == 3
    assert ScheduledChange.objects.count() == 3


def test_scheduling_needs_the_permission_the_change_needs(reader_client, anon_client):
    body = move_student(StudentFactory(), SchoolClassFactory())
    assert anon_client.post(URL, body).status_code == 401
    assert reader_client.post(URL, body).status_code == 403

    may_add_schools = api_client_for(UserFactory(permissions=["schools.add_school"]))
    assert may_add_schools.post(URL, body).status_code == 403
    new_school = {
        "execute_at": in_seconds(60).isoformat(),
        "resource": "schools",
        "operation": "create",
        "data": {"name": "Later"},
    }
    assert may_add_schools.post(URL, new_school).status_code == 201
    assert not ScheduledChange.objects.filter(resource="students").exists()


def test_list_filters(reader_client):
    soon = services.scheduled_change_create(
        execute_at=in_seconds(60), resource="schools", operation="create", data={"name": "Soon"}
    )
    later = services.scheduled_change_create(
        execute_at=in_seconds(7200), resource="schools", operation="create", data={"name": "Later"}
    )
    services.scheduled_change_cancel(change=later)

    def ids(query):
        return [item["id"] for item in reader_client.get(f"{URL}?{query}").json()["results"]]

    assert ids("status=scheduled") == [str(soon.pk)]
    assert ids("status=cancelled") == [str(later.pk)]
    cutoff = in_seconds(3600).isoformat().replace("+00:00", "Z")
    assert ids(f"due_before={cutoff}") == [str(soon.pk)]
    assert ids(f"due_after={cutoff}") == [str(later.pk)]
    assert ids("resource=students") == []
    assert reader_client.get(f"{URL}{soon.pk}/").json()["data"] == {"name": "Soon"}


# --- Cancelling ---------------------------------------------------------------------


def test_cancel_before_it_runs_and_it_never_runs(editor_client):
    student, new_class = StudentFactory(), SchoolClassFactory()
    change_id = editor_client.post(URL, move_student(student, new_class)).json()["id"]

    assert editor_client.delete(f"{URL}{change_id}/").status_code == 204
    change = ScheduledChange.objects.get(pk=change_id)
    assert change.status == ScheduledChangeStatus.CANCELLED

    make_due(change)
    assert runner.run_due() == 0
    student.refresh_from_db()
    assert student.school_class_id != new_class.pk


@pytest.mark.parametrize(
    "status", [ScheduledChangeStatus.RUNNING, ScheduledChangeStatus.DONE, ScheduledChangeStatus.FAILED]
)
def test_cancel_after_it_started_is_a_409(editor_client, status):
    change = services.scheduled_change_create(
        execute_at=in_seconds(60), resource="schools", operation="create", data={"name": "Started"}
    )
    ScheduledChange.objects.filter(pk=change.pk).update(status=status)
    response = editor_client.delete(f"{URL}{change.pk}/")
    assert response.status_code == 409
    assert response.json()["detail"] == services.NOT_CANCELLABLE.format(status=status.label.lower())
    assert ScheduledChange.objects.get(pk=change.pk).status == status


def test_cancel_needs_the_permission_of_the_change(reader_client):
    change = services.scheduled_change_create(
        execute_at=in_seconds(60), resource="schools", operation="create", data={"name": "Mine"}
    )
    assert reader_client.delete(f"{URL}{change.pk}/").status_code == 403
    assert ScheduledChange.objects.get().status == ScheduledChangeStatus.SCHEDULED


def test_cancel_and_claim_cannot_both_win():
    claimed_first = services.scheduled_change_create(
        execute_at=in_seconds(60), resource="schools", operation="create", data={"name": "A"}
    )
    cancelled_first = services.scheduled_change_create(
        execute_at=in_seconds(60), resource="schools", operation="create", data={"name": "B"}
    )
    make_due(claimed_first)
    [claim] = runner.claim_due(timezone.now())
    with pytest.raises(services.NotCancellableError):
        services.scheduled_change_cancel(change=claimed_first)

    services.scheduled_change_cancel(change=cancelled_first)
    make_due(cancelled_first)
    assert runner.claim_due(timezone.now()) == []
    assert claim.pk == claimed_first.pk


# --- Running ------------------------------------------------------------------------


def test_a_due_change_runs_through_the_services_and_is_logged_then(asked_wake_ups):
    student, new_class = StudentFactory(), SchoolClassFactory()
    change = services.scheduled_change_create(
        execute_at=in_seconds(3600),
        resource="students",
        operation="update",
        target_id=student.pk,
        data={"school_class": new_class.pk},
    )
    SchoolFactory(name="Written after scheduling, before running")
    not_due = services.scheduled_change_create(
        execute_at=in_seconds(3600), resource="schools", operation="create", data={"name": "Not yet"}
    )
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
    change = services.scheduled_change_create(
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
    change = services.scheduled_change_create(
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
    change = services.scheduled_change_create(
        execute_at=in_seconds(60), resource="classes", operation="delete", target_id=school_class.pk
    )
    StudentFactory(school_class=school_class)
    make_due(change)
    runner.run_due()
    change.refresh_from_db()
    assert change.status == ScheduledChangeStatus.FAILED
    assert "still referenced by 1 student" in change.error


def test_a_transient_error_rolls_back_and_retries_later(
    monkeypatch, asked_wake_ups, django_capture_on_commit_callbacks
):
    change = services.scheduled_change_create(
        execute_at=in_seconds(60), resource="schools", operation="create", data={"name": "Flaky"}
    )
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
    change = services.scheduled_change_create(
        execute_at=in_seconds(60), resource="schools", operation="create", data={"name": "Survivor"}
    )
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
    assert (change.status, change.attempt_count) == (ScheduledChangeStatus.DONE, 2)


def test_the_sweep_sends_wake_ups_for_changes_coming_due(asked_wake_ups):
    soon = services.scheduled_change_create(
        execute_at=in_seconds(30), resource="schools", operation="create", data={"name": "Soon"}
    )
    services.scheduled_change_create(
        execute_at=in_seconds(3600), resource="schools", operation="create", data={"name": "Later"}
    )
    asked_wake_ups.clear()
    runner.sweep()
    assert asked_wake_ups == [soon.due_at]


def test_one_wake_up_per_slot(monkeypatch):
    sent = []

    class Signature:
        def apply_async(self, eta=None, **options):
            sent.append(eta)

    monkeypatch.setattr(wakeups, "signature", lambda name: Signature())
    start = in_seconds(10).replace(microsecond=0)
    wakeups.wake_at([start + timedelta(milliseconds=ms) for ms in (10, 20, 90, 150, 160)])
    wakeups.wake_at([start + timedelta(milliseconds=30)])  # another writer, same slot
    assert sent == [start + timedelta(milliseconds=100), start + timedelta(milliseconds=200)]


def test_admin_cancel_action(client, superuser):
    change = services.scheduled_change_create(
        execute_at=in_seconds(60), resource="schools", operation="create", data={"name": "Admin"}
    )
    client.force_login(superuser)
    assert client.get("/admin/schools/scheduledchange/").status_code == 200
    client.post("/admin/schools/scheduledchange/", {"action": "cancel_changes", "_selected_action": [change.pk]})
    assert ScheduledChange.objects.get().status == ScheduledChangeStatus.CANCELLED


def test_batch_cancel(editor_client):
    pending, started, other_kind = (
        services.scheduled_change_create(
            execute_at=in_seconds(60), resource="schools", operation="create", data={"name": name}
        )
        for name in ("Pending", "Started", "Other")
    )
    ScheduledChange.objects.filter(pk=started.pk).update(status=ScheduledChangeStatus.RUNNING)
    may_only_add_schools = api_client_for(UserFactory(permissions=["schools.add_school"]))
    ScheduledChange.objects.filter(pk=other_kind.pk).update(resource="students", operation="update", target_id=1)
    missing = "00000000-0000-0000-0000-000000000000"

    response = may_only_add_schools.post(
        f"{URL}cancel/", {"ids": [str(pending.pk), str(started.pk), str(other_kind.pk), missing]}
    )

    assert response.status_code == 200
    assert response.json() == {
        "cancelled": [str(pending.pk)],
        "not_cancellable": [str(started.pk)],
        "not_found": sorted([str(other_kind.pk), missing]),
    }
    statuses = dict(ScheduledChange.objects.values_list("pk", "status"))
    assert statuses == {
        pending.pk: ScheduledChangeStatus.CANCELLED,
        started.pk: ScheduledChangeStatus.RUNNING,
        other_kind.pk: ScheduledChangeStatus.SCHEDULED,
    }
    assert editor_client.post(f"{URL}cancel/", {"ids": []}).status_code == 400


def test_the_sweep_runs_every_five_seconds_from_beat():
    from django_celery_beat.models import PeriodicTask

    job = PeriodicTask.objects.get(task="schools.sweep_scheduled_changes")
    assert (job.interval.every, job.interval.period, job.expire_seconds, job.enabled) == (5, "seconds", 5, True)


def test_in_a_chunk_an_invalid_change_fails_alone():
    schools = [SchoolFactory() for _ in range(3)]
    changes = [
        services.scheduled_change_create(
            execute_at=in_seconds(60),
            resource="schools",
            operation="update",
            target_id=school.pk,
            data={"address": f"Chunk {index}"},
        )
        for index, school in enumerate(schools)
    ]
    taken = SchoolFactory(name="Taken name")
    ScheduledChange.objects.filter(pk=changes[1].pk).update(data={"name": taken.name})
    make_due(*changes)

    assert runner.run_due() == 3

    statuses = [ScheduledChange.objects.get(pk=change.pk).status for change in changes]
    assert statuses == [ScheduledChangeStatus.DONE, ScheduledChangeStatus.FAILED, ScheduledChangeStatus.DONE]
    assert "already exists" in ScheduledChange.objects.get(pk=changes[1].pk).error
    assert OperationLog.objects.filter(payload__address__startswith="Chunk").count() == 2


def test_a_transient_error_in_a_chunk_retries_the_whole_chunk(monkeypatch, asked_wake_ups):
    schools = [SchoolFactory() for _ in range(3)]
    changes = [
        services.scheduled_change_create(
            execute_at=in_seconds(60),
            resource="schools",
            operation="update",
            target_id=school.pk,
            data={"address": f"Retry {index}"},
        )
        for index, school in enumerate(schools)
    ]
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
