"""Creating and cancelling scheduled changes: validated as the immediate request, all or none."""

import pytest
from django.utils import timezone

from schools.scheduling import runner, services, validation
from schools.scheduling.models import ScheduledChange, ScheduledChangeStatus
from sync.models import OperationLog
from tests.conftest import DISTRICT
from tests.factories import SchoolClassFactory, SchoolFactory, StudentFactory, UserFactory
from tests.helpers import api_client_for, in_seconds, make_due, move_student, schedule

pytestmark = pytest.mark.django_db


URL = "/api/scheduled-changes/"


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

    may_add_schools = api_client_for(UserFactory(permissions=["schools.add_school", DISTRICT]))
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
    soon = schedule(execute_at=in_seconds(60), resource="schools", operation="create", data={"name": "Soon"})
    later = schedule(execute_at=in_seconds(7200), resource="schools", operation="create", data={"name": "Later"})
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
def test_cancel_after_it_started_is_a_409(editor, editor_client, status):
    change = schedule(
        execute_at=in_seconds(60), resource="schools", operation="create", data={"name": "Started"}, actor=editor
    )
    ScheduledChange.objects.filter(pk=change.pk).update(status=status)
    response = editor_client.delete(f"{URL}{change.pk}/")
    assert response.status_code == 409
    assert response.json()["detail"] == services.NOT_CANCELLABLE.format(status=status.label.lower())
    assert ScheduledChange.objects.get(pk=change.pk).status == status


def test_cancel_needs_the_permission_of_the_change(reader_client):
    change = schedule(execute_at=in_seconds(60), resource="schools", operation="create", data={"name": "Mine"})
    assert reader_client.delete(f"{URL}{change.pk}/").status_code == 403
    assert ScheduledChange.objects.get().status == ScheduledChangeStatus.SCHEDULED


def test_cancel_and_claim_cannot_both_win():
    claimed_first = schedule(execute_at=in_seconds(60), resource="schools", operation="create", data={"name": "A"})
    cancelled_first = schedule(execute_at=in_seconds(60), resource="schools", operation="create", data={"name": "B"})
    make_due(claimed_first)
    [claim] = runner.claim_due(timezone.now())
    with pytest.raises(services.NotCancellableError):
        services.scheduled_change_cancel(change=claimed_first)

    services.scheduled_change_cancel(change=cancelled_first)
    make_due(cancelled_first)
    assert runner.claim_due(timezone.now()) == []
    assert claim.pk == claimed_first.pk


def test_batch_cancel_takes_the_changes_the_user_may_cancel():
    creator = UserFactory(permissions=["schools.add_school", DISTRICT])
    pending, started, someone_elses = (
        schedule(
            execute_at=in_seconds(60),
            resource="schools",
            operation="create",
            data={"name": name},
            actor=creator if name != "Someone else's" else None,
        )
        for name in ("Pending", "Started", "Someone else's")
    )
    ScheduledChange.objects.filter(pk=started.pk).update(status=ScheduledChangeStatus.RUNNING)
    missing = "00000000-0000-0000-0000-000000000000"

    response = api_client_for(creator).post(
        f"{URL}cancel/", {"ids": [str(pending.pk), str(started.pk), str(someone_elses.pk), missing]}
    )

    assert response.status_code == 200
    assert response.json() == {
        "cancelled": [str(pending.pk)],
        "not_cancellable": [str(started.pk)],
        "not_found": sorted([str(someone_elses.pk), missing]),
    }
    statuses = dict(ScheduledChange.objects.values_list("pk", "status"))
    assert statuses == {
        pending.pk: ScheduledChangeStatus.CANCELLED,
        started.pk: ScheduledChangeStatus.RUNNING,
        someone_elses.pk: ScheduledChangeStatus.SCHEDULED,
    }
    assert api_client_for(creator).post(f"{URL}cancel/", {"ids": []}).status_code == 400


def test_data_takes_only_the_fields_the_record_kind_can_be_given(editor_client):
    school = SchoolFactory()
    change = {
        "execute_at": in_seconds(3600).isoformat(),
        "resource": "schools",
        "operation": "update",
        "target_id": school.pk,
        "data": {"name": "New", "colour": "red", "id": 5},
    }
    response = editor_client.post(URL, change, format="json")
    assert response.status_code == 400
    [message] = response.json()["data"]
    assert message.startswith("colour, id: not a field schools can be given")
    assert not ScheduledChange.objects.exists()


def test_execute_at_is_at_most_the_horizon_ahead(editor_client, settings):
    settings.SCHEDULED_CHANGES_HORIZON_DAYS = 30
    school = SchoolFactory()
    change = {"resource": "schools", "operation": "update", "target_id": school.pk, "data": {"name": "Later"}}
    too_far = editor_client.post(URL, {**change, "execute_at": in_seconds(31 * 86400).isoformat()}, format="json")
    assert too_far.status_code == 400
    assert "more than 30 days ahead" in too_far.json()["execute_at"][0]
    within = editor_client.post(URL, {**change, "execute_at": in_seconds(29 * 86400).isoformat()}, format="json")
    assert within.status_code == 201
