"""The admin's import pages: upload, preview, confirm all or none, follow the import, export; in one's schools only."""

import io

import openpyxl
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from schools.imports import files, services
from schools.imports.admin import MAY_IMPORT_NOTHING, UPLOAD_NOT_HELD
from schools.imports.models import ImportStatus, RecordImport
from schools.models import SchoolClass, SchoolMembership, Student
from sync.models import OperationLog
from tests.conftest import ALL_RECORD_PERMISSIONS, VIEW_RECORD_PERMISSIONS
from tests.factories import GradeFactory, SchoolClassFactory, SchoolFactory, StudentFactory, UserFactory

pytestmark = pytest.mark.django_db

STUDENT_HEADER = "student_number,first_name,last_name,grade,class\n"
CLEAN = STUDENT_HEADER + "S1,Mia,Lee,4,4A\nS2,Noah,Jones,4,4B\nS3,Lena,García,4,4A\n"


def a_school(name: str):
    school = SchoolFactory(name=name)
    grade = GradeFactory(school=school, level=4, name="Grade 4")
    SchoolClassFactory(grade=grade, name="4A")
    SchoolClassFactory(grade=grade, name="4B")
    return school


@pytest.fixture
def school():
    return a_school("Alder")


def member_of(school, permissions=ALL_RECORD_PERMISSIONS):
    user = UserFactory(permissions=permissions, is_staff=True)
    SchoolMembership.objects.create(user=user, school=school)
    return user


@pytest.fixture
def registrar(client, school):
    user = member_of(school)
    client.force_login(user)
    return user


def imports_url(school) -> str:
    return f"/admin/schools/school/{school.pk}/imports/"


def csv(text: str, name: str = "students.csv") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, text.encode(), content_type="text/csv")


def xlsx(text: str, name: str = "students.xlsx") -> SimpleUploadedFile:
    workbook = openpyxl.Workbook()
    for line in text.splitlines():
        workbook.active.append(line.split(","))
    content = io.BytesIO()
    workbook.save(content)
    return SimpleUploadedFile(name, content.getvalue())


def upload(client, school, file, kind="students"):
    return client.post(imports_url(school), {"kind": kind, "file": file})


def confirm(client, school, token):
    return client.post(f"{imports_url(school)}confirm/", {"token": token})


def test_the_school_page_links_to_its_import_page(client, school, registrar):
    change_page = client.get(f"/admin/schools/school/{school.pk}/change/")
    assert imports_url(school) in change_page.content.decode()

    page = client.get(imports_url(school))
    assert page.status_code == 200
    assert [value for value, _ in page.context["form"].fields["kind"].choices] == ["students", "teachers", "classes"]


def test_the_preview_shows_each_rows_action_and_errors_and_offers_no_import(client, school, registrar):
    four_a = SchoolClass.objects.get(name="4A")
    StudentFactory(school_class=four_a, student_number="S1", first_name="Mia", last_name="Li")
    text = STUDENT_HEADER + "S1,Mia,Lee,4,4B\nS2,Noah,Jones,4,4Z\nS3,Lena,,4,4B\nS4,Omar,Haddad,4,4B\n"
    before = OperationLog.objects.count()

    preview = upload(client, school, csv(text))

    assert preview.status_code == 200
    rows = preview.context["rows"]
    assert [(row.line, row.action) for row in rows] == [(2, "update"), (3, "error"), (4, "error"), (5, "create")]
    assert [(cell.value, cell.changed, cell.was) for cell in rows[0].cells] == [
        ("S1", False, None),
        ("Mia", False, None),
        ("Lee", True, "Li"),
        ("4", False, None),
        ("4B", True, None),
    ]
    assert (rows[1].cells[4].value, rows[1].cells[4].errors) == ("4Z", ["Alder has no class “4Z” in grade 4."])
    assert (rows[2].cells[2].value, rows[2].cells[2].errors) == ("", ["This column is required."])
    assert preview.context["counts"] == {"create": 1, "update": 1, "unchanged": 0, "error": 2}
    assert preview.context["token"] is None
    page = preview.content.decode()
    assert "Nothing was written." in page
    assert "lines 3, 4" in page
    assert "confirm/" not in page
    assert not RecordImport.objects.exists()
    assert OperationLog.objects.count() == before


def test_a_file_that_cannot_be_read_is_refused_on_the_upload_form(client, school, registrar):
    page = upload(client, school, csv("student_number,first_name\nS1,Mia\n"))

    assert page.status_code == 200
    assert page.context["form"].errors["file"] == [
        files.MISSING_COLUMNS.format(missing="last_name, grade, class", columns=", ".join(files.COLUMNS["students"]))
    ]
    assert upload(client, school, csv(CLEAN, "students.txt")).context["form"].errors["file"] == [files.UNKNOWN_FORMAT]


def test_a_confirm_without_a_held_file_writes_nothing(client, school, registrar):
    for token in ["", "0" * 32, "not a token"]:
        response = confirm(client, school, token)
        assert response.status_code == 302
        assert response.url == imports_url(school)
    assert UPLOAD_NOT_HELD in [str(message) for message in client.get(imports_url(school)).context["messages"]]
    assert not RecordImport.objects.exists()


@pytest.mark.parametrize("spreadsheet", [csv, xlsx])
def test_a_clean_file_confirmed_is_queued_and_followed_on_its_status_page(client, school, registrar, spreadsheet):
    preview = upload(client, school, spreadsheet(CLEAN))
    assert [row.action for row in preview.context["rows"]] == ["create", "create", "create"]
    token = preview.context["token"]
    assert not RecordImport.objects.exists()

    confirmed = confirm(client, school, token)

    record_import = RecordImport.objects.get()
    status_url = f"{imports_url(school)}{record_import.pk}/"
    assert confirmed.status_code == 302
    assert confirmed.url == status_url
    assert (record_import.status, record_import.rows_total, record_import.created_by) == ("queued", 3, registrar)
    queued = client.get(status_url)
    assert (queued.context["status"], queued.context["rows_done"]) == ("queued", 0)
    assert f'data-api="/api/imports/{record_import.pk}/"' in queued.content.decode()

    assert confirm(client, school, token).url == imports_url(school)  # a second click imports nothing more
    services.import_run(record_import.pk)

    done = client.get(status_url)
    assert (done.context["status"], done.context["rows_done"], done.context["percent"]) == ("done", 3, 100)
    assert "Done: 3 created, 0 updated, 0 unchanged." in done.content.decode()
    assert set(Student.objects.filter(school=school).values_list("student_number", flat=True)) == {"S1", "S2", "S3"}
    assert [item for item, _ in client.get(imports_url(school)).context["recent"]] == [record_import]


def test_rows_that_changed_since_the_preview_refuse_the_confirm(client, school, registrar):
    token = upload(client, school, csv(CLEAN)).context["token"]
    SchoolClass.objects.filter(name="4B").delete()

    refused = confirm(client, school, token)

    assert refused.status_code == 200
    assert [row.action for row in refused.context["rows"]] == ["create", "error", "create"]
    assert "Nothing was written: rows changed since the preview" in refused.content.decode()
    assert not RecordImport.objects.exists()
    assert not Student.objects.exists()


def test_a_failed_import_shows_its_errors(client, school, registrar):
    token = upload(client, school, csv(CLEAN)).context["token"]
    confirm(client, school, token)
    record_import = RecordImport.objects.get()
    SchoolClass.objects.filter(name="4B").delete()

    services.import_run(record_import.pk)

    page = client.get(f"{imports_url(school)}{record_import.pk}/")
    assert page.context["status"] == ImportStatus.FAILED
    assert "Line 3: class: Alder has no class “4B” in grade 4." in page.content.decode()
    assert not Student.objects.exists()


def test_another_schools_import_pages_are_not_found(client, school, registrar):
    other = a_school("Birch")
    theirs = RecordImport.objects.create(kind="students", school=other, file_name="b.csv", rows=[], rows_total=1)
    ours = RecordImport.objects.create(kind="students", school=school, file_name="a.csv", rows=[], rows_total=1)

    assert client.get(imports_url(other)).status_code == 404
    assert upload(client, other, csv(CLEAN)).status_code == 404
    assert confirm(client, other, "0" * 32).status_code == 404
    assert client.get(f"{imports_url(other)}{theirs.pk}/").status_code == 404
    assert client.get(f"{imports_url(school)}{theirs.pk}/").status_code == 404
    assert client.get(f"{imports_url(other)}{ours.pk}/").status_code == 404
    assert client.get(f"{imports_url(school)}{ours.pk}/").status_code == 200


def test_a_held_file_is_confirmed_only_by_who_uploaded_it_into_that_school(client, school, registrar):
    token = upload(client, school, csv(CLEAN)).context["token"]
    client.force_login(member_of(school))

    assert confirm(client, school, token).url == imports_url(school)
    assert not RecordImport.objects.exists()


def test_importing_needs_the_add_and_change_permissions_of_the_kind(client, school):
    client.force_login(member_of(school, permissions=[*VIEW_RECORD_PERMISSIONS, "schools.add_student"]))

    assert upload(client, school, csv(CLEAN)).status_code == 403
    page = client.get(imports_url(school))
    assert page.context["form"] is None
    assert MAY_IMPORT_NOTHING in page.content.decode()
    assert not RecordImport.objects.exists()


def test_the_import_page_offers_the_schools_records_for_download(client, school, registrar):
    StudentFactory(school_class=SchoolClass.objects.get(name="4B"), student_number="S7", first_name="Ada")
    exports = dict(client.get(imports_url(school)).context["exports"])

    students_csv, students_xlsx = dict(exports["Students"])["CSV"], dict(exports["Students"])["XLSX"]
    downloaded = client.get(students_csv)
    assert downloaded.status_code == 200
    assert downloaded["Content-Type"] == "text/csv"
    lines = downloaded.content.decode("utf-8-sig").splitlines()
    assert lines[0] == STUDENT_HEADER.strip()
    assert lines[1].startswith("S7,Ada,")
    sheet = openpyxl.load_workbook(io.BytesIO(client.get(students_xlsx).content)).active
    assert sheet["A2"].value == "S7"
    assert set(exports) == {"Students", "Teachers", "Classes"}
