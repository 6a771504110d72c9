"""Admin writes go through the services: every save and delete records its entry."""

import pytest

from schools.models import (
    HOMEROOM_TEACHER_OF_OTHER_SCHOOL,
    Grade,
    ScheduledChange,
    ScheduledChangeStatus,
    School,
    Student,
)
from schools.services import record_update
from sync.models import OperationLog
from tests.factories import GradeFactory, SchoolClassFactory, SchoolFactory, StudentFactory, TeacherFactory
from tests.helpers import in_seconds, schedule

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client, superuser):
    client.force_login(superuser)
    return client


def inline_management(prefix: str, total: int, initial: int = 0) -> dict[str, int]:
    return {
        f"{prefix}-TOTAL_FORMS": total,
        f"{prefix}-INITIAL_FORMS": initial,
        f"{prefix}-MIN_NUM_FORMS": 0,
        f"{prefix}-MAX_NUM_FORMS": 1000,
    }


def new_entries(before: int) -> list[tuple[str, str]]:
    return [(e.operation, e.resource) for e in OperationLog.objects.order_by("sequence")[before:]]


def test_adding_a_school_with_an_inline_grade_records_both(admin_client, superuser):
    response = admin_client.post(
        "/admin/schools/school/add/",
        {
            "name": "Admin school",
            "address": "",
            **inline_management("grades", total=1),
            **inline_management("memberships", total=0),
            "grades-0-level": 1,
            "grades-0-name": "First",
        },
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    school = School.objects.get(name="Admin school")
    assert school.grades.get().name == "First"
    assert new_entries(0) == [("create", "schools"), ("create", "grades")]
    assert set(OperationLog.objects.values_list("actor", flat=True)) == {superuser.pk}


def test_changing_a_school_and_its_inlines_records_each_change(admin_client):
    school = SchoolFactory(name="Before")
    kept = GradeFactory(school=school, level=1)
    removed = GradeFactory(school=school, level=2)
    before = OperationLog.objects.count()

    response = admin_client.post(
        f"/admin/schools/school/{school.pk}/change/",
        {
            "name": "After",
            "address": "",
            **inline_management("grades", total=2, initial=2),
            **inline_management("memberships", total=0),
            "grades-0-id": kept.pk,
            "grades-0-school": school.pk,
            "grades-0-level": 1,
            "grades-0-name": "Renamed",
            "grades-1-id": removed.pk,
            "grades-1-school": school.pk,
            "grades-1-level": 2,
            "grades-1-name": removed.name,
            "grades-1-DELETE": "on",
        },
    )

    assert response.status_code == 302
    assert new_entries(before) == [("update", "schools"), ("delete", "grades"), ("update", "grades")]
    kept.refresh_from_db()
    assert kept.name == "Renamed"
    assert not Grade.objects.filter(pk=removed.pk).exists()


def test_adding_a_student_derives_the_school_and_records_it(admin_client):
    school_class = SchoolClassFactory()
    before = OperationLog.objects.count()
    response = admin_client.post(
        "/admin/schools/student/add/",
        {"school_class": school_class.pk, "first_name": "Mia", "last_name": "Lee", "student_number": "A-1"},
    )
    assert response.status_code == 302
    student = Student.objects.get(student_number="A-1")
    assert student.school == school_class.grade.school
    assert new_entries(before) == [("create", "students")]


def test_an_invalid_admin_form_shows_the_rule_and_writes_nothing(admin_client):
    grade = GradeFactory()
    outsider = TeacherFactory()
    before = OperationLog.objects.count()
    response = admin_client.post(
        "/admin/schools/schoolclass/add/", {"grade": grade.pk, "name": "X", "homeroom_teacher": outsider.pk}
    )
    assert response.status_code == 200
    assert response.context["adminform"].form.errors == {"homeroom_teacher": [HOMEROOM_TEACHER_OF_OTHER_SCHOOL]}
    assert OperationLog.objects.count() == before


def test_a_duplicate_student_number_in_the_admin_is_a_form_error(admin_client):
    student = StudentFactory()
    before = OperationLog.objects.count()
    response = admin_client.post(
        "/admin/schools/student/add/",
        {
            "school_class": student.school_class.pk,
            "first_name": "Other",
            "last_name": "Person",
            "student_number": student.student_number,
        },
    )
    assert response.status_code == 200
    assert "student_number" in response.context["adminform"].form.errors
    assert OperationLog.objects.count() == before


def test_single_delete_records_a_delete_entry(admin_client):
    school = SchoolFactory()
    before = OperationLog.objects.count()
    response = admin_client.post(f"/admin/schools/school/{school.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not School.objects.filter(pk=school.pk).exists()
    assert new_entries(before) == [("delete", "schools")]


def test_a_protected_delete_is_refused_and_writes_nothing(admin_client):
    school = GradeFactory().school
    before = OperationLog.objects.count()
    response = admin_client.post(f"/admin/schools/school/{school.pk}/delete/", {"post": "yes"})
    assert response.status_code == 200
    assert "would require deleting the following protected related objects" in response.content.decode()
    assert School.objects.filter(pk=school.pk).exists()
    assert OperationLog.objects.count() == before


def test_bulk_delete_action_records_one_entry_per_record(admin_client):
    students = [StudentFactory() for _ in range(3)]
    before = OperationLog.objects.count()
    response = admin_client.post(
        "/admin/schools/student/",
        {"action": "delete_selected", "_selected_action": [s.pk for s in students], "post": "yes"},
    )
    assert response.status_code == 302
    assert not Student.objects.filter(pk__in=[s.pk for s in students]).exists()
    entries = list(OperationLog.objects.order_by("sequence")[before:])
    assert [(e.operation, e.resource) for e in entries] == [("delete", "students")] * 3
    assert sorted(e.object_id for e in entries) == sorted(s.pk for s in students)


@pytest.mark.parametrize("page", ["school", "grade", "schoolclass", "teacher", "student"])
def test_record_admin_pages_render(admin_client, page):
    class_with_teacher = SchoolClassFactory()
    StudentFactory(school_class=class_with_teacher)
    TeacherFactory()
    assert admin_client.get(f"/admin/schools/{page}/").status_code == 200
    assert admin_client.get(f"/admin/schools/{page}/add/").status_code == 200
    assert admin_client.get(f"/admin/schools/{page}/?q=a").status_code == 200


def test_autocomplete_finds_classes_by_school_name(admin_client):
    school_class = SchoolClassFactory(grade=GradeFactory(school=SchoolFactory(name="Lakeside")))
    response = admin_client.get(
        "/admin/autocomplete/",
        {"app_label": "schools", "model_name": "student", "field_name": "school_class", "term": "Lakeside"},
    )
    assert response.status_code == 200
    assert [r["id"] for r in response.json()["results"]] == [str(school_class.pk)]


def test_a_new_grade_with_an_inline_class_taught_from_another_school_is_a_form_error(admin_client):
    school = SchoolFactory()
    outsider = TeacherFactory()
    before = OperationLog.objects.count()
    response = admin_client.post(
        "/admin/schools/grade/add/",
        {
            "school": school.pk,
            "level": 3,
            "name": "Third",
            **inline_management("classes", total=1),
            "classes-0-name": "3A",
            "classes-0-homeroom_teacher": outsider.pk,
        },
    )
    assert response.status_code == 200
    [inline] = response.context["inline_admin_formsets"]
    assert inline.formset.errors == [{"homeroom_teacher": [HOMEROOM_TEACHER_OF_OTHER_SCHOOL]}]
    assert OperationLog.objects.count() == before
    assert not Grade.objects.filter(school=school).exists()


def test_a_clash_only_the_service_sees_is_shown_as_a_message_and_saves_nothing(admin_client):
    grade = GradeFactory()
    first = SchoolClassFactory(grade=grade, name="A")
    second = SchoolClassFactory(grade=grade, name="B")
    before = OperationLog.objects.count()

    response = admin_client.post(
        f"/admin/schools/grade/{grade.pk}/change/",
        {
            "school": grade.school.pk,
            "level": grade.level,
            "name": grade.name,
            **inline_management("classes", total=2, initial=2),
            "classes-0-id": first.pk,
            "classes-0-grade": grade.pk,
            "classes-0-name": "B",
            "classes-1-id": second.pk,
            "classes-1-grade": grade.pk,
            "classes-1-name": "A",
        },
        follow=True,
    )

    assert response.status_code == 200
    assert "Nothing was saved: This grade already has a class with this name." in response.content.decode()
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.name, second.name) == ("A", "B")
    assert OperationLog.objects.count() == before


def test_admin_cancel_action(client, superuser):
    change = schedule(execute_at=in_seconds(60), resource="schools", operation="create", data={"name": "Admin"})
    client.force_login(superuser)
    assert client.get("/admin/schools/scheduledchange/").status_code == 200
    client.post("/admin/schools/scheduledchange/", {"action": "cancel_changes", "_selected_action": [change.pk]})
    assert ScheduledChange.objects.get().status == ScheduledChangeStatus.CANCELLED


def form_as_shown(page) -> dict:
    """The POST a browser sends for an admin change page as it was rendered (inlines included)."""
    data = {}
    forms = [page.context["adminform"].form]
    for inline in page.context["inline_admin_formsets"]:
        formset = inline.formset
        data.update({f"{formset.prefix}-{name}": value for name, value in formset.management_form.initial.items()})
        forms += list(formset.forms)
    for form in forms:
        for field in form:
            if field.value() is not None:
                data[field.html_name] = field.value()
            if field.field.show_hidden_initial and field.initial is not None:
                data[field.html_initial_name] = field.initial
    return data


def test_saving_an_admin_form_keeps_what_someone_else_changed_meanwhile(admin_client):
    school = SchoolFactory(name="Old name", address="Old road")
    url = f"/admin/schools/school/{school.pk}/change/"
    shown = form_as_shown(admin_client.get(url))  # user A opens the page
    record_update(instance=school, data={"address": "New road"})  # user B changes the address

    response = admin_client.post(url, {**shown, "name": "New name"})  # A saves a new name

    assert response.status_code == 302
    school.refresh_from_db()
    assert (school.name, school.address) == ("New name", "New road")
    entry = OperationLog.objects.filter(resource="schools", object_id=school.pk).latest("sequence")
    assert (entry.payload["name"], entry.payload["address"]) == ("New name", "New road")
