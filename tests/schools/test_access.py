"""Schools as tenants: a member of one school neither sees nor changes another school's records."""

from dataclasses import dataclass

import pytest

from config.permissions import RecordPermissions
from schools.models import School, SchoolClass, SchoolMembership, Student
from schools.scheduling import runner, validation
from schools.scheduling.models import ScheduledChange, ScheduledChangeStatus
from schools.scheduling.validation import CREATOR_INACTIVE, CREATOR_MAY_NOT, CREATOR_NOT_MEMBER, MAY_NOT
from schools.services import NOT_IN_YOUR_SCHOOLS, record_update
from tests.conftest import ALL_RECORD_PERMISSIONS, DISTRICT
from tests.factories import GradeFactory, SchoolClassFactory, SchoolFactory, StudentFactory, TeacherFactory, UserFactory
from tests.helpers import api_client_for, in_seconds, make_due, schedule

pytestmark = pytest.mark.django_db

SCHEDULING = ["schools.view_scheduledchange"]


@dataclass
class School_:
    """A school with one record of each kind."""

    school: School
    grade: object
    teacher: object
    school_class: SchoolClass
    student: object

    def record(self, resource: str):
        return {
            "schools": self.school,
            "grades": self.grade,
            "teachers": self.teacher,
            "classes": self.school_class,
            "students": self.student,
        }[resource]


def a_school(name: str) -> School_:
    school = SchoolFactory(name=name)
    grade = GradeFactory(school=school, level=1)
    teacher = TeacherFactory(school=school)
    school_class = SchoolClassFactory(grade=grade, homeroom_teacher=teacher)
    return School_(school, grade, teacher, school_class, StudentFactory(school_class=school_class))


@pytest.fixture
def schools():
    return a_school("Alder"), a_school("Birch")


def member_of(school: School, permissions=ALL_RECORD_PERMISSIONS, **fields):
    user = UserFactory(permissions=permissions, **fields)
    SchoolMembership.objects.create(user=user, school=school)
    return user


RESOURCES = ["schools", "grades", "teachers", "classes", "students"]


@pytest.mark.parametrize("resource", RESOURCES)
def test_another_schools_records_are_absent_for_a_member(schools, resource):
    mine, theirs = schools
    client = api_client_for(member_of(mine.school))

    listed = {item["id"] for item in client.get(f"/api/{resource}/").json()["results"]}
    assert listed == {mine.record(resource).pk}
    url = f"/api/{resource}/{theirs.record(resource).pk}/"
    assert client.get(url).status_code == 404
    assert client.patch(url, {}).status_code == 404
    assert client.delete(url).status_code == 404
    assert client.get(f"/api/{resource}/{mine.record(resource).pk}/").status_code == 200


@pytest.mark.parametrize("resource", RESOURCES)
def test_district_staff_see_every_school(schools, resource):
    client = api_client_for(UserFactory(permissions=[*ALL_RECORD_PERMISSIONS, DISTRICT]))
    listed = {item["id"] for item in client.get(f"/api/{resource}/").json()["results"]}
    assert listed == {school.record(resource).pk for school in schools}


@pytest.mark.parametrize("resource", RESOURCES)
def test_without_the_view_permission_a_member_reads_nothing(schools, resource):
    client = api_client_for(member_of(schools[0].school, permissions=[]))
    assert client.get(f"/api/{resource}/").status_code == 403
    assert client.get(f"/api/{resource}/{schools[0].record(resource).pk}/").status_code == 403


def test_a_member_cannot_reference_or_move_into_another_school(schools):
    mine, theirs = schools
    client = api_client_for(member_of(mine.school))

    refused = {
        "grades": ({"school": theirs.school.pk, "level": 2, "name": "Two"}, "school"),
        "teachers": ({"school": theirs.school.pk, "first_name": "A", "last_name": "B", "email": "a@b.org"}, "school"),
        "classes": ({"grade": theirs.grade.pk, "name": "1Z"}, "grade"),
        "students": (
            {"school_class": theirs.school_class.pk, "first_name": "A", "last_name": "B", "student_number": "9"},
            "school_class",
        ),
    }
    for resource, (body, field) in refused.items():
        created = client.post(f"/api/{resource}/", body)
        assert (created.status_code, list(created.json())) == (400, [field]), resource
        moved = client.patch(f"/api/{resource}/{mine.record(resource).pk}/", {field: body[field]})
        assert (moved.status_code, list(moved.json())) == (400, [field]), resource
    homeroom = client.patch(f"/api/classes/{mine.school_class.pk}/", {"homeroom_teacher": theirs.teacher.pk})
    assert (homeroom.status_code, list(homeroom.json())) == (400, ["homeroom_teacher"])
    mine.student.refresh_from_db()
    assert mine.student.school_id == mine.school.pk


def test_a_move_between_schools_needs_membership_of_both(schools):
    mine, theirs = schools
    of_both = member_of(mine.school)
    SchoolMembership.objects.create(user=of_both, school=theirs.school)
    client = api_client_for(of_both)
    StudentFactory(school_class=mine.school_class, student_number="N-moving")
    student = mine.school_class.students.get(student_number="N-moving")

    moved = client.patch(f"/api/students/{student.pk}/", {"school_class": theirs.school_class.pk})
    assert moved.status_code == 200
    student.refresh_from_db()
    assert student.school_id == theirs.school.pk
    # …and back out of it only by a member of the school it is in now.
    assert api_client_for(member_of(mine.school)).get(f"/api/students/{student.pk}/").status_code == 404


def test_only_district_staff_create_a_school(schools):
    member = api_client_for(member_of(schools[0].school))
    assert member.post("/api/schools/", {"name": "Cedar"}).status_code == 403
    district = api_client_for(UserFactory(permissions=["schools.add_school", DISTRICT]))
    assert district.post("/api/schools/", {"name": "Cedar"}).status_code == 201


def test_a_deactivated_member_is_refused(schools):
    client = api_client_for(member_of(schools[0].school, is_active=False))
    assert client.get("/api/students/").status_code in (401, 403)


# --- Scheduled changes ---------------------------------------------------------------------


URL = "/api/scheduled-changes/"


def rename(school_class: SchoolClass, name: str) -> dict:
    return {
        "execute_at": in_seconds(3600).isoformat(),
        "resource": "classes",
        "operation": "update",
        "target_id": school_class.pk,
        "data": {"name": name},
    }


def test_scheduled_changes_belong_to_their_schools(schools):
    mine, theirs = schools
    member = member_of(mine.school, permissions=[*ALL_RECORD_PERMISSIONS, *SCHEDULING])
    client = api_client_for(member)

    own = client.post(URL, rename(mine.school_class, "1Y"))
    assert own.status_code == 201
    assert ScheduledChange.objects.get(pk=own.json()["id"]).school_id == mine.school.pk
    other = schedule(**{**rename(theirs.school_class, "1X"), "execute_at": in_seconds(3600)})

    assert [item["id"] for item in client.get(URL).json()["results"]] == [own.json()["id"]]
    assert client.get(f"{URL}{other.pk}/").status_code == 404
    assert client.delete(f"{URL}{other.pk}/").status_code == 404
    refused = client.post(URL, rename(theirs.school_class, "1W"))
    assert (refused.status_code, list(refused.json())) == (400, ["target_id"])
    move = {**rename(mine.school_class, "1V"), "data": {"grade": theirs.grade.pk}}
    assert client.post(URL, move).status_code == 400
    new_student = {
        "execute_at": in_seconds(3600).isoformat(),
        "resource": "students",
        "operation": "create",
        "data": {"school_class": theirs.school_class.pk, "first_name": "A", "last_name": "B", "student_number": "1"},
    }
    assert client.post(URL, new_student).status_code == 400
    assert ScheduledChange.objects.count() == 2
    own_student = {**new_student, "data": {**new_student["data"], "school_class": mine.school_class.pk}}
    created = client.post(URL, own_student)
    assert ScheduledChange.objects.get(pk=created.json()["id"]).school_id == mine.school.pk  # its parent's school


def test_a_scheduled_change_is_cancelled_by_its_creator_or_who_may_delete_it(schools):
    mine, _ = schools
    creator = member_of(mine.school, permissions=["schools.change_schoolclass"])
    change = schedule(**{**rename(mine.school_class, "1Y"), "execute_at": in_seconds(3600)}, actor=creator)
    colleague = member_of(mine.school, permissions=["schools.change_schoolclass", *SCHEDULING])
    assert api_client_for(colleague).delete(f"{URL}{change.pk}/").status_code == 403
    elsewhere = member_of(SchoolFactory(), permissions=["schools.delete_scheduledchange", *SCHEDULING])
    assert api_client_for(elsewhere).delete(f"{URL}{change.pk}/").status_code == 404
    assert ScheduledChange.objects.get().status == ScheduledChangeStatus.SCHEDULED

    assert api_client_for(creator).delete(f"{URL}{change.pk}/").status_code == 204

    second = schedule(**{**rename(mine.school_class, "1X"), "execute_at": in_seconds(3600)}, actor=creator)
    head = member_of(mine.school, permissions=["schools.delete_scheduledchange", *SCHEDULING])
    assert api_client_for(head).delete(f"{URL}{second.pk}/").status_code == 204


def _due_rename(school_class: SchoolClass, creator) -> ScheduledChange:
    change = schedule(**{**rename(school_class, "Renamed"), "execute_at": in_seconds(3600)}, actor=creator)
    make_due(change)
    return change


@pytest.mark.parametrize("loses", ["nothing", "activity", "permission", "membership"])
def test_a_scheduled_change_runs_with_the_rights_its_creator_has_when_it_runs(schools, loses):
    mine, _ = schools
    creator = member_of(mine.school, permissions=["schools.change_schoolclass"])
    change = _due_rename(mine.school_class, creator)
    if loses == "activity":
        creator.is_active = False
        creator.save()
    elif loses == "permission":
        creator.user_permissions.clear()
    elif loses == "membership":
        SchoolMembership.objects.filter(user=creator).delete()

    runner.run_due()

    change.refresh_from_db()
    mine.school_class.refresh_from_db()
    reasons = {
        "activity": CREATOR_INACTIVE.format(user=creator.username),
        "permission": CREATOR_MAY_NOT.format(
            user=creator.username,
            reason=MAY_NOT.format(operation="update", resource="classes", permission="schools.change_schoolclass"),
        ),
        "membership": CREATOR_NOT_MEMBER.format(user=creator.username),
    }
    if loses == "nothing":
        assert (change.status, mine.school_class.name) == (ScheduledChangeStatus.DONE, "Renamed")
    else:
        assert (change.status, change.error) == (ScheduledChangeStatus.FAILED, reasons[loses])
        assert mine.school_class.name != "Renamed"


def test_a_scheduled_move_fails_when_its_creator_lost_the_school_it_moves_to(schools):
    mine, theirs = schools
    creator = member_of(mine.school, permissions=["schools.change_student"])
    SchoolMembership.objects.create(user=creator, school=theirs.school)
    change = schedule(
        execute_at=in_seconds(3600),
        resource="students",
        operation="update",
        target_id=mine.student.pk,
        data={"school_class": theirs.school_class.pk},
        actor=creator,
    )
    make_due(change)
    SchoolMembership.objects.filter(user=creator, school=theirs.school).delete()

    runner.run_due()

    change.refresh_from_db()
    assert change.status == ScheduledChangeStatus.FAILED
    assert "school_class" in change.error
    mine.student.refresh_from_db()
    assert mine.student.school_id == mine.school.pk


def test_scheduling_is_limited_per_user_per_minute_and_in_total(schools, settings):
    mine, _ = schools
    client = api_client_for(member_of(mine.school, permissions=["schools.change_schoolclass"]))
    settings.SCHEDULED_CHANGES_PER_MINUTE = 3
    assert client.post(URL, [rename(mine.school_class, f"1{n}") for n in range(3)]).status_code == 201
    refused = client.post(URL, rename(mine.school_class, "1Z"))
    assert refused.status_code == 429
    assert refused["Retry-After"] == "60"
    assert "SCHEDULED_CHANGES_PER_MINUTE" in refused.json()["detail"]

    settings.SCHEDULED_CHANGES_PER_MINUTE = 100
    settings.SCHEDULED_CHANGES_MAX_PENDING = 4
    assert client.post(URL, [rename(mine.school_class, "1Y"), rename(mine.school_class, "1X")]).status_code == 429
    assert client.post(URL, rename(mine.school_class, "1Y")).status_code == 201
    assert ScheduledChange.objects.count() == 4


# --- Memberships ------------------------------------------------------------------------------


def members_url(school: School) -> str:
    return f"/api/schools/{school.pk}/members/"


def test_memberships_are_managed_per_school(schools):
    mine, theirs = schools
    manager = member_of(mine.school, permissions=["schools.change_schoolmembership"])
    client = api_client_for(manager)
    newcomer = UserFactory()

    added = client.post(members_url(mine.school), {"user": newcomer.pk})
    assert (added.status_code, added.json()) == (201, {"user": newcomer.pk, "username": newcomer.username})
    assert client.post(members_url(mine.school), {"user": newcomer.pk}).status_code == 200
    listed = client.get(members_url(mine.school)).json()
    assert {item["username"] for item in listed["results"]} == {manager.username, newcomer.username}
    assert api_client_for(newcomer).get("/api/schools/").status_code == 403  # a member, with no permission yet

    assert client.delete(f"{members_url(mine.school)}{newcomer.pk}/").status_code == 204
    assert not SchoolMembership.objects.filter(user=newcomer).exists()
    assert client.delete(f"{members_url(mine.school)}{newcomer.pk}/").status_code == 404
    assert client.post(members_url(mine.school), {"user": 999999}).status_code == 400

    assert client.get(members_url(theirs.school)).status_code == 404
    assert client.post(members_url(theirs.school), {"user": newcomer.pk}).status_code == 404
    without_permission = api_client_for(member_of(mine.school, permissions=[]))
    assert without_permission.get(members_url(mine.school)).status_code == 403
    assert api_client_for(UserFactory()).get(members_url(mine.school)).status_code == 403


# --- Admin ------------------------------------------------------------------------------------


@pytest.fixture
def member_admin(client, schools):
    client.force_login(member_of(schools[0].school, permissions=[*ALL_RECORD_PERMISSIONS, *SCHEDULING], is_staff=True))
    return client


def test_the_admin_lists_and_opens_only_the_members_schools(member_admin, schools):
    mine, theirs = schools
    for model, resource in [("student", "students"), ("teacher", "teachers"), ("schoolclass", "classes")]:
        changelist = member_admin.get(f"/admin/schools/{model}/")
        assert {row.pk for row in changelist.context["cl"].result_list} == {mine.record(resource).pk}, model
        assert member_admin.get(f"/admin/schools/{model}/{theirs.record(resource).pk}/change/").status_code == 302
    schedule(**{**rename(theirs.school_class, "1X"), "execute_at": in_seconds(3600)})
    assert list(member_admin.get("/admin/schools/scheduledchange/").context["cl"].result_list) == []


def test_admin_choices_autocomplete_and_forms_keep_to_the_members_schools(member_admin, schools):
    mine, theirs = schools
    form = member_admin.get("/admin/schools/teacher/add/").context["adminform"].form
    assert list(form.fields["school"].queryset) == [mine.school]
    found = member_admin.get(
        "/admin/autocomplete/",
        {"app_label": "schools", "model_name": "student", "field_name": "school_class", "term": ""},
    ).json()
    assert [item["id"] for item in found["results"]] == [str(mine.school_class.pk)]

    response = member_admin.post(
        "/admin/schools/student/add/",
        {"school_class": theirs.school_class.pk, "first_name": "A", "last_name": "B", "student_number": "77"},
    )
    assert response.status_code == 200
    assert "school_class" in response.context["adminform"].form.errors
    assert not SchoolClass.objects.get(pk=theirs.school_class.pk).students.filter(student_number="77").exists()


def test_admin_actions_touch_only_the_members_schools(member_admin, schools):
    mine, theirs = schools
    extra = StudentFactory(school_class=mine.school_class)
    member_admin.post(
        "/admin/schools/student/",
        {"action": "delete_selected", "_selected_action": [extra.pk, theirs.student.pk], "post": "yes"},
    )
    assert not type(extra).objects.filter(pk=extra.pk).exists()
    assert type(extra).objects.filter(pk=theirs.student.pk).exists()


def test_only_district_staff_add_schools_in_the_admin(member_admin):
    assert member_admin.get("/admin/schools/school/add/").status_code == 403


def test_memberships_are_managed_on_the_school_page(client, schools):
    mine, _ = schools
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    newcomer = UserFactory()
    page = client.get(f"/admin/schools/school/{mine.school.pk}/change/")
    assert "memberships-TOTAL_FORMS" in page.content.decode()
    response = client.post(
        f"/admin/schools/school/{mine.school.pk}/change/",
        {
            "name": mine.school.name,
            "address": mine.school.address,
            "grades-TOTAL_FORMS": 0,
            "grades-INITIAL_FORMS": 0,
            "memberships-TOTAL_FORMS": 1,
            "memberships-INITIAL_FORMS": 0,
            "memberships-0-user": newcomer.pk,
        },
    )
    assert response.status_code == 302
    assert SchoolMembership.objects.filter(user=newcomer, school=mine.school).exists()


def test_filtering_by_another_schools_record_is_refused_like_an_unknown_one(schools):
    mine, theirs = schools
    client = api_client_for(member_of(mine.school))
    assert client.get("/api/grades/", {"school": mine.school.pk}).json()["count"] == 1
    for resource, field, record in [
        ("grades", "school", theirs.school),
        ("teachers", "school", theirs.school),
        ("classes", "grade", theirs.grade),
        ("students", "school_class", theirs.school_class),
    ]:
        other, unknown = (client.get(f"/api/{resource}/", {field: pk}) for pk in (record.pk, 999999))
        assert (other.status_code, other.json()) == (unknown.status_code, unknown.json()) == (400, other.json())
        assert list(other.json()) == [field]


# --- Races: a record that moves between the check and the write -------------------------------


@pytest.mark.parametrize("method", ["patch", "delete"])
def test_a_record_moved_to_another_school_after_the_check_is_not_written(schools, monkeypatch, method):
    mine, theirs = schools
    client = api_client_for(member_of(mine.school))
    checked = RecordPermissions.has_object_permission

    def check_then_move_away(self, request, view, obj):
        allowed = checked(self, request, view, obj)
        record_update(instance=mine.student, data={"school_class": theirs.school_class})  # district staff, meanwhile
        return allowed

    monkeypatch.setattr(RecordPermissions, "has_object_permission", check_then_move_away)
    response = getattr(client, method)(f"/api/students/{mine.student.pk}/", {"first_name": "Changed"})

    assert response.status_code == 409
    assert response.json()["detail"] == NOT_IN_YOUR_SCHOOLS
    student = Student.objects.get(pk=mine.student.pk)
    assert (student.school_id, student.first_name) == (theirs.school.pk, mine.student.first_name)


def test_a_scheduled_change_whose_record_moves_away_after_its_check_fails(schools, monkeypatch):
    mine, theirs = schools
    creator = member_of(mine.school, permissions=["schools.change_student"])
    change = schedule(
        execute_at=in_seconds(3600),
        resource="students",
        operation="update",
        target_id=mine.student.pk,
        data={"first_name": "Changed"},
        actor=creator,
    )
    make_due(change)
    refusal = validation.creator_refusal

    def check_then_move_away(change, target):
        reason = refusal(change, target)
        record_update(instance=mine.student, data={"school_class": theirs.school_class})
        return reason

    monkeypatch.setattr(runner, "creator_refusal", check_then_move_away)
    runner.run_due()

    change.refresh_from_db()
    assert (change.status, change.error) == (ScheduledChangeStatus.FAILED, NOT_IN_YOUR_SCHOOLS)
    assert Student.objects.get(pk=mine.student.pk).first_name == mine.student.first_name


def test_admin_list_filters_name_only_the_members_schools(member_admin, schools):
    mine, theirs = schools
    for model in ["grade", "teacher", "student", "schoolclass"]:
        page = member_admin.get(f"/admin/schools/{model}/").content.decode()
        assert mine.school.name in page, model
        assert theirs.school.name not in page, model


def test_the_members_inline_does_not_list_every_user(client, schools):
    mine, _ = schools
    school_admin = member_of(
        mine.school,
        permissions=[
            "schools.view_school",
            "schools.change_school",
            "schools.view_schoolmembership",
            "schools.add_schoolmembership",
        ],
        is_staff=True,
    )
    stranger = UserFactory(username="someone-of-another-school")
    client.force_login(school_admin)
    page = client.get(f"/admin/schools/school/{mine.school.pk}/change/").content.decode()
    assert "memberships-TOTAL_FORMS" in page
    assert stranger.username not in page
