"""REST API for the school records: auth, permissions, CRUD, errors and their log entries."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from schools.models import HOMEROOM_TEACHER_OF_OTHER_SCHOOL, Grade, School, SchoolClass, Student, Teacher
from sync.models import OperationLog
from tests.conftest import DISTRICT
from tests.factories import (
    USER_PASSWORD,
    GradeFactory,
    SchoolClassFactory,
    SchoolFactory,
    StudentFactory,
    TeacherFactory,
    UserFactory,
    class_with_homeroom_teacher,
)
from tests.helpers import api_client_for

pytestmark = pytest.mark.django_db


def new_school():
    return {"name": "Hillcrest", "address": "1 Hill Road"}


def new_grade():
    return {"school": SchoolFactory().pk, "level": 4, "name": "Grade 4"}


def new_class():
    grade = GradeFactory()
    return {"grade": grade.pk, "name": "4A", "homeroom_teacher": TeacherFactory(school=grade.school).pk}


def new_teacher():
    return {"school": SchoolFactory().pk, "first_name": "Ada", "last_name": "Lovelace", "email": "ada@example.org"}


def new_student():
    return {"school_class": SchoolClassFactory().pk, "first_name": "Mia", "last_name": "Lee", "student_number": "7"}


# (resource, model, builds a valid create body, a valid partial change)
RESOURCES = [
    ("schools", School, new_school, {"address": "2 Hill Road"}),
    ("grades", Grade, new_grade, {"name": "Fourth grade"}),
    ("classes", SchoolClass, new_class, {"homeroom_teacher": None}),
    ("teachers", Teacher, new_teacher, {"last_name": "King"}),
    ("students", Student, new_student, {"student_number": "8"}),
]
IDS = [resource[0] for resource in RESOURCES]


def entry_count():
    return OperationLog.objects.count()


def latest_entry():
    return OperationLog.objects.order_by("-sequence").first()


# --- Authentication and permissions ---------------------------------------------------


@pytest.mark.parametrize("resource", IDS)
def test_anonymous_requests_are_refused_with_401(anon_client, resource):
    assert anon_client.get(f"/api/{resource}/").status_code == 401
    assert anon_client.post(f"/api/{resource}/", {}).status_code == 401


@pytest.mark.parametrize(("resource", "model", "build", "change"), RESOURCES, ids=IDS)
def test_reading_needs_the_view_permission_and_writing_its_own(reader_client, resource, model, build, change):
    body = build()
    before = entry_count()
    no_permission = api_client_for(UserFactory(permissions=[DISTRICT]))
    assert no_permission.get(f"/api/{resource}/").status_code == 403
    assert reader_client.get(f"/api/{resource}/").status_code == 200
    assert reader_client.post(f"/api/{resource}/", body).status_code == 403
    assert entry_count() == before


def test_each_write_needs_its_own_permission():
    school = SchoolFactory()
    client = api_client_for(UserFactory(permissions=["schools.add_school", DISTRICT]))
    assert client.post("/api/schools/", {"name": "Allowed"}).status_code == 201
    assert client.patch(f"/api/schools/{school.pk}/", {"name": "No"}).status_code == 403
    assert client.delete(f"/api/schools/{school.pk}/").status_code == 403


def test_token_authentication(anon_client):
    user = UserFactory(permissions=["schools.view_school"])
    response = anon_client.post("/api/auth/token/", {"username": user.username, "password": "wrong"})
    assert response.status_code == 400

    response = anon_client.post("/api/auth/token/", {"username": user.username, "password": USER_PASSWORD})
    assert response.status_code == 200
    token = response.json()["token"]

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert client.get("/api/schools/").status_code == 200


def test_token_endpoint_is_throttled(anon_client, settings):
    settings.AXES_ENABLED = False  # the rate limit on its own, without the lockout after failed sign-ins
    user = UserFactory()
    statuses = [
        anon_client.post("/api/auth/token/", {"username": user.username, "password": "guess"}).status_code
        for _ in range(25)
    ]
    assert statuses[:20] == [400] * 20
    assert statuses[-1] == 429


# --- CRUD, one entry per accepted write --------------------------------------------


@pytest.mark.parametrize(("resource", "model", "build", "change"), RESOURCES, ids=IDS)
def test_full_crud_records_one_entry_per_write(editor_client, resource, model, build, change):
    body = build()
    url = f"/api/{resource}/"

    before = entry_count()
    created = editor_client.post(url, body)
    assert created.status_code == 201, created.json()
    record = created.json()
    assert record == {"id": record["id"], **body}
    assert entry_count() == before + 1
    entry = latest_entry()
    assert (entry.operation, entry.resource, entry.object_id, entry.payload) == (
        "create",
        resource,
        record["id"],
        record,
    )

    detail = f"{url}{record['id']}/"
    assert editor_client.get(detail).json() == record
    assert record in editor_client.get(url).json()["results"]

    patched = editor_client.patch(detail, change)
    assert patched.status_code == 200, patched.json()
    assert patched.json() == {**record, **change}
    assert (latest_entry().operation, latest_entry().payload) == ("update", patched.json())

    put_body = {**body, **change}
    replaced = editor_client.put(detail, put_body)
    assert replaced.status_code == 200, replaced.json()
    assert replaced.json() == {"id": record["id"], **put_body}
    assert (latest_entry().operation, latest_entry().payload) == ("update", replaced.json())

    assert editor_client.delete(detail).status_code == 204
    assert not model.objects.filter(pk=record["id"]).exists()
    assert (latest_entry().operation, latest_entry().payload) == ("delete", replaced.json())
    assert editor_client.get(detail).status_code == 404
    assert entry_count() == before + 4


# --- Bad input: 400 per field, nothing written ---------------------------------------


@pytest.mark.parametrize(
    ("resource", "build_body", "field"),
    [
        ("schools", lambda: {"name": ""}, "name"),
        ("schools", lambda: {"name": SchoolFactory().name}, "name"),
        ("grades", lambda: {"school": SchoolFactory().pk, "level": 13, "name": "X"}, "level"),
        ("grades", lambda: {"school": 999999, "level": 1, "name": "X"}, "school"),
        ("classes", lambda: {"name": "no grade"}, "grade"),
        (
            "teachers",
            lambda: {"school": SchoolFactory().pk, "first_name": "A", "last_name": "B", "email": "x"},
            "email",
        ),
        (
            "students",
            lambda: {"school_class": "abc", "first_name": "A", "last_name": "B", "student_number": "1"},
            "school_class",
        ),
    ],
)
def test_invalid_input_is_a_400_naming_the_field_and_writes_nothing(editor_client, resource, build_body, field):
    body = build_body()
    before = entry_count()
    response = editor_client.post(f"/api/{resource}/", body, format="json")
    assert response.status_code == 400
    assert field in response.json()
    assert entry_count() == before


def test_cross_record_rules_are_400s_on_their_field(editor_client):
    grade = GradeFactory()
    outsider = TeacherFactory()
    before = entry_count()
    response = editor_client.post("/api/classes/", {"grade": grade.pk, "name": "X", "homeroom_teacher": outsider.pk})
    assert response.status_code == 400
    assert response.json() == {"homeroom_teacher": [HOMEROOM_TEACHER_OF_OTHER_SCHOOL]}
    assert entry_count() == before


def test_a_rejected_update_leaves_the_record_unchanged(editor_client):
    grade = GradeFactory(level=2)
    GradeFactory(school=grade.school, level=3)
    before = entry_count()
    response = editor_client.patch(f"/api/grades/{grade.pk}/", {"level": 3})
    assert response.status_code == 400
    assert "already has a grade at this level" in str(response.json())
    grade.refresh_from_db()
    assert grade.level == 2
    assert entry_count() == before


# --- Refused deletes: 409, nothing written -------------------------------------------


@pytest.mark.parametrize(
    ("resource", "make_referenced"),
    [
        ("schools", lambda: GradeFactory().school),
        ("grades", lambda: SchoolClassFactory().grade),
        ("classes", lambda: StudentFactory().school_class),
        ("teachers", lambda: class_with_homeroom_teacher().homeroom_teacher),
    ],
)
def test_deleting_a_referenced_record_is_a_409_and_writes_nothing(editor_client, resource, make_referenced):
    record = make_referenced()
    before = entry_count()
    response = editor_client.delete(f"/api/{resource}/{record.pk}/")
    assert response.status_code == 409
    assert "still referenced by" in response.json()["detail"]
    assert type(record).objects.filter(pk=record.pk).exists()
    assert entry_count() == before


# --- Lists: filters, search, ordering, bounded queries -------------------------------


def test_lists_filter_by_parent_ids(reader_client):
    school_class = SchoolClassFactory()
    grade, school = school_class.grade, school_class.grade.school
    student = StudentFactory(school_class=school_class)
    teacher = TeacherFactory(school=school)
    StudentFactory(), TeacherFactory(), SchoolClassFactory()  # noise in other schools

    def ids(url):
        return [item["id"] for item in reader_client.get(url).json()["results"]]

    assert ids(f"/api/grades/?school={school.pk}") == [grade.pk]
    assert ids(f"/api/classes/?school={school.pk}") == [school_class.pk]
    assert ids(f"/api/classes/?grade={grade.pk}") == [school_class.pk]
    assert ids(f"/api/teachers/?school={school.pk}") == [teacher.pk]
    assert ids(f"/api/students/?school={school.pk}") == [student.pk]
    assert ids(f"/api/students/?grade={grade.pk}") == [student.pk]
    assert ids(f"/api/students/?school_class={school_class.pk}") == [student.pk]


def test_lists_search_and_order(reader_client):
    for name in ("Beacon Hill", "Acorn Park", "Cedar Hill"):
        SchoolFactory(name=name, address="")
    names = [s["name"] for s in reader_client.get("/api/schools/?search=hill&ordering=-name").json()["results"]]
    assert names == ["Cedar Hill", "Beacon Hill"]


def test_lists_are_paginated(reader_client):
    for _ in range(3):
        SchoolFactory()
    page = reader_client.get("/api/schools/?page_size=2").json()
    assert page["count"] == 3
    assert len(page["results"]) == 2
    assert page["next"]


@pytest.mark.parametrize(
    ("resource", "factory"),
    [
        ("schools", SchoolFactory),
        ("grades", GradeFactory),
        ("classes", class_with_homeroom_teacher),
        ("teachers", TeacherFactory),
        ("students", StudentFactory),
    ],
)
def test_list_query_count_does_not_grow_with_the_page(reader_client, resource, factory):
    def queries_for_list():
        with CaptureQueriesContext(connection) as captured:
            assert reader_client.get(f"/api/{resource}/").status_code == 200
        return len(captured)

    queries_for_list()  # the user's permissions are read once, with the first request
    factory()
    few = queries_for_list()
    for _ in range(10):
        factory()
    assert queries_for_list() == few
    assert few <= 2  # count + page (+ nothing per row)


def test_put_replaces_the_record_and_clears_omitted_optional_fields(editor_client):
    school = SchoolFactory(address="Old road")
    school_class = class_with_homeroom_teacher()

    assert editor_client.put(f"/api/schools/{school.pk}/", {"name": school.name}).json()["address"] == ""
    response = editor_client.put(
        f"/api/classes/{school_class.pk}/", {"grade": school_class.grade_id, "name": school_class.name}
    )
    assert response.json()["homeroom_teacher"] is None


def test_patch_leaves_omitted_fields_alone(editor_client):
    school_class = class_with_homeroom_teacher()
    response = editor_client.patch(f"/api/classes/{school_class.pk}/", {"name": "Renamed"})
    assert response.json()["homeroom_teacher"] == school_class.homeroom_teacher_id


def test_put_needs_the_change_permission(reader_client):
    school = SchoolFactory()
    assert reader_client.put(f"/api/schools/{school.pk}/", {"name": "No"}).status_code == 403


def test_a_spoofed_forwarded_for_header_does_not_escape_the_token_throttle(anon_client, settings):
    settings.AXES_ENABLED = False  # the rate limit on its own, without the lockout after failed sign-ins
    user = UserFactory()
    statuses = [
        anon_client.post(
            "/api/auth/token/",
            {"username": user.username, "password": "guess"},
            HTTP_X_FORWARDED_FOR=f"10.0.0.{attempt}",
        ).status_code
        for attempt in range(21)
    ]
    assert statuses[-1] == 429
