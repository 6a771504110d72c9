"""Importing a school's students, teachers and classes from a spreadsheet: preview, all-or-none, order, access."""

import io

import openpyxl
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from schools.imports import files, services
from schools.imports.models import ImportStatus, RecordImport
from schools.models import TEACHER_EMAIL_TAKEN, SchoolClass, SchoolMembership, Student, Teacher
from sync.models import EntryStatus, OperationLog
from tests.conftest import ALL_RECORD_PERMISSIONS
from tests.factories import (
    GradeFactory,
    SchoolClassFactory,
    SchoolFactory,
    StudentFactory,
    TeacherFactory,
    UserFactory,
)
from tests.helpers import api_client_for, lane_of

pytestmark = pytest.mark.django_db

URL = "/api/imports/"
STUDENT_HEADER = "student_number,first_name,last_name,grade,class\n"


def csv(text: str, name: str = "students.csv") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, text.encode(), content_type="text/csv")


@pytest.fixture
def school():
    school = SchoolFactory(name="Alder")
    grade = GradeFactory(school=school, level=4, name="Grade 4")
    SchoolClassFactory(grade=grade, name="4A")
    SchoolClassFactory(grade=grade, name="4B")
    return school


@pytest.fixture
def registrar(school):
    user = UserFactory(permissions=ALL_RECORD_PERMISSIONS)
    SchoolMembership.objects.create(user=user, school=school)
    return user


def post(client, upload, school, kind="students", dry_run=False):
    return client.post(URL, {"file": upload, "kind": kind, "school": school.pk, "dry_run": dry_run}, format="multipart")


def test_the_preview_shows_what_each_row_would_do_and_every_error(school, registrar):
    four_a = SchoolClass.objects.get(name="4A")
    StudentFactory(school_class=four_a, student_number="S1", first_name="Mia", last_name="Lee")
    StudentFactory(school_class=four_a, student_number="S2", first_name="Noah", last_name="Jones")
    other_school_class = SchoolClassFactory(grade__level=4, name="4Z")
    before = OperationLog.objects.count()
    text = (
        STUDENT_HEADER
        + "S1,Mia,Lee,4,4A\n"  # unchanged
        + "S2,Noah,Jonas,4,4B\n"  # changed: last name and class
        + "S3,Lena,García,4,4A\n"  # new
        + f"S4,Omar,Haddad,4,{other_school_class.name}\n"  # another school's class
        + "S3,Ada,Twice,4,4B\n"  # the same student number again
    )
    client = api_client_for(registrar)

    response = post(client, csv(text), school, dry_run=True)

    assert response.status_code == 200
    rows = response.json()["rows"]
    assert [(row["line"], row["action"]) for row in rows] == [
        (2, "unchanged"),
        (3, "update"),
        (4, "create"),
        (5, "error"),
        (6, "error"),
    ]
    assert list(rows[3]["errors"]) == ["class"]
    assert rows[4]["errors"] == {"student_number": ["Also on line 4: each row must be a different student."]}
    assert response.json()["counts"] == {"create": 1, "update": 1, "unchanged": 1, "error": 2}

    refused = post(client, csv(text), school)
    assert refused.status_code == 400
    assert refused.json()["counts"]["error"] == 2
    assert OperationLog.objects.count() == before
    assert not RecordImport.objects.exists()
    assert Student.objects.get(student_number="S2").last_name == "Jones"


@pytest.mark.parametrize("lanes", ["global", "school"])
def test_a_clean_file_writes_every_row_with_one_entry_each_in_file_order(school, registrar, settings, lanes):
    settings.SYNC_LANES = lanes
    rows = [f"N{n:03d},First{n},Last{n},4,{'4A' if n % 2 else '4B'}" for n in range(40)]
    client = api_client_for(registrar)

    response = post(client, csv(STUDENT_HEADER + "\n".join(rows) + "\n"), school)

    assert response.status_code == 202
    assert response.json()["status"] == "queued"
    import_id = response.json()["id"]
    services.import_run(import_id)
    services.import_run(import_id)  # a second delivery of the task writes nothing more

    record_import = RecordImport.objects.get(pk=import_id)
    assert (record_import.status, record_import.created, record_import.rows_done) == ("done", 40, 40)
    assert record_import.lane == (lane_of(school) if lanes == "school" else "global")
    entries = list(OperationLog.objects.filter(resource="students", lane=record_import.lane).order_by("sequence"))
    assert [entry.payload["student_number"] for entry in entries] == [f"N{n:03d}" for n in range(40)]
    sequences = [entry.sequence for entry in entries]
    assert sequences == list(range(record_import.first_sequence, record_import.last_sequence + 1))
    assert {entry.actor_id for entry in entries} == {registrar.pk}
    assert all(entry.school_id == school.pk for entry in entries)

    status = client.get(f"{URL}{import_id}/").json()
    assert (status["status"], status["rows_done"], status["delivery"]["entries"]) == ("done", 40, 40)
    assert status["delivery"]["delivered"] == 0


def test_teachers_and_classes_import_by_email_and_by_grade_and_name(school, registrar):
    client = api_client_for(registrar)
    teachers = "email,first_name,last_name\nada@alder.org,Ada,Lovelace\nALAN@alder.org,Alan,Turing\n"
    created = post(client, csv(teachers, "teachers.csv"), school, kind="teachers")
    services.import_run(created.json()["id"])
    assert set(Teacher.objects.filter(school=school).values_list("email", flat=True)) == {
        "ada@alder.org",
        "ALAN@alder.org",
    }

    classes = "grade,name,homeroom_teacher\n4,4A,alan@alder.org\n4,4C,ada@alder.org\n4,4D,nobody@alder.org\n9,9A,\n"
    preview = post(client, csv(classes, "classes.csv"), school, kind="classes", dry_run=True).json()
    assert [(row["action"], list(row["errors"])) for row in preview["rows"]] == [
        ("update", []),
        ("create", []),
        ("error", ["homeroom_teacher"]),
        ("error", ["grade"]),
    ]


def test_an_xlsx_file_and_the_export_round_trip(school, registrar):
    four_a = SchoolClass.objects.get(name="4A")
    StudentFactory(school_class=four_a, student_number="S1")
    client = api_client_for(registrar)

    exported = client.get(f"{URL}export/", {"school": school.pk, "kind": "students", "file_format": "xlsx"})
    assert exported.status_code == 200
    sheet = openpyxl.load_workbook(io.BytesIO(exported.content)).active
    assert [cell.value for cell in sheet[1]] == files.COLUMNS["students"]
    sheet.append(["S9", "New", "Student", 4, "4B"])
    edited = io.BytesIO()
    sheet.parent.save(edited)

    upload = SimpleUploadedFile("students.xlsx", edited.getvalue())
    preview = post(client, upload, school, dry_run=True).json()
    assert [row["action"] for row in preview["rows"]] == ["unchanged", "create"]

    exported_csv = client.get(f"{URL}export/", {"school": school.pk, "kind": "students"})
    assert exported_csv["Content-Type"] == "text/csv"
    assert exported_csv.content.decode("utf-8-sig").splitlines()[0] == ",".join(files.COLUMNS["students"])


def test_files_that_cannot_be_imported_are_refused_with_the_reason(school, registrar, settings):
    client = api_client_for(registrar)
    too_many = STUDENT_HEADER + "".join(f"N{n},A,B,4,4A\n" for n in range(files.MAX_IMPORT_ROWS + 1))
    response = post(client, csv(too_many), school, dry_run=True)
    assert response.status_code == 400
    assert f"at most {files.MAX_IMPORT_ROWS}" in response.json()["file"][0]
    assert post(client, csv("name\nx\n"), school, dry_run=True).json()["file"][0].startswith("The file has no column")
    assert post(client, csv("x", "students.txt"), school).json() == {"file": [files.UNKNOWN_FORMAT]}
    broken = SimpleUploadedFile("students.xlsx", b"not a spreadsheet")
    assert post(client, broken, school).status_code == 400


def test_imports_keep_to_the_users_schools_and_permissions(school, registrar):
    other = SchoolFactory(name="Birch")
    body = STUDENT_HEADER + "S1,A,B,4,4A\n"
    refused = post(api_client_for(registrar), csv(body), other)
    assert (refused.status_code, list(refused.json())) == (400, ["school"])
    assert post(api_client_for(None), csv(body), school).status_code == 401
    viewer = UserFactory(permissions=["schools.view_student"])
    SchoolMembership.objects.create(user=viewer, school=school)
    assert post(api_client_for(viewer), csv(body), school).status_code == 403
    assert api_client_for(viewer).get(f"{URL}export/", {"school": other.pk, "kind": "students"}).status_code == 400


def test_an_import_runs_with_the_rights_its_creator_has_when_it_runs(school, registrar):
    response = post(api_client_for(registrar), csv(STUDENT_HEADER + "S1,A,B,4,4A\n"), school)
    SchoolMembership.objects.filter(user=registrar).delete()

    services.import_run(response.json()["id"])

    record_import = RecordImport.objects.get()
    assert record_import.status == ImportStatus.FAILED
    assert "may no longer import" in record_import.errors[0]["errors"]["row"][0]
    assert not Student.objects.exists()


def test_rows_that_became_invalid_before_the_run_fail_the_whole_import(school, registrar):
    response = post(api_client_for(registrar), csv(STUDENT_HEADER + "S1,A,B,4,4A\nS2,C,D,4,4B\n"), school)
    SchoolClass.objects.filter(name="4B").delete()

    services.import_run(response.json()["id"])

    record_import = RecordImport.objects.get()
    assert record_import.status == ImportStatus.FAILED
    assert record_import.errors == [{"line": 3, "errors": {"class": [record_import.errors[0]["errors"]["class"][0]]}}]
    assert not Student.objects.exists()


def test_the_delivery_estimate_follows_the_lanes_push_rate(school, registrar):
    response = post(api_client_for(registrar), csv(STUDENT_HEADER + "S1,A,B,4,4A\nS2,C,D,4,4B\n"), school)
    services.import_run(response.json()["id"])
    record_import = RecordImport.objects.get()
    now = timezone.now()
    assert services.delivery(record_import, now)["eta_seconds"] is None  # nothing pushed yet: no rate

    lane_entries = OperationLog.objects.filter(lane=record_import.lane).order_by("sequence")
    before_import = lane_entries.filter(sequence__lt=record_import.first_sequence)
    before_import.update(status=EntryStatus.SUCCEEDED, pushed_at=now)
    figures = services.delivery(record_import, now)
    assert figures["to_send_before_done"] == 2
    rate = before_import.count() / services.RATE_WINDOW_SECONDS
    assert figures["eta_seconds"] == pytest.approx(2 / rate, rel=0.01)

    lane_entries.update(status=EntryStatus.SUCCEEDED, pushed_at=now)
    figures = services.delivery(record_import, now)
    assert (figures["delivered"], figures["eta_seconds"]) == (2, 0.0)


def test_imports_are_listed_only_for_their_schools_and_kinds(school, registrar):
    post(api_client_for(registrar), csv(STUDENT_HEADER + "S1,A,B,4,4A\n"), school)
    assert api_client_for(registrar).get(URL).json()["count"] == 1
    stranger = UserFactory(permissions=ALL_RECORD_PERMISSIONS)
    SchoolMembership.objects.create(user=stranger, school=SchoolFactory())
    assert api_client_for(stranger).get(URL).json()["count"] == 0
    teacher_reader = UserFactory(permissions=["schools.view_teacher"])
    SchoolMembership.objects.create(user=teacher_reader, school=school)
    assert api_client_for(teacher_reader).get(URL).json()["count"] == 0


def test_a_row_the_services_refuse_when_it_runs_fails_the_import_with_its_line(school, registrar):
    teachers = "email,first_name,last_name\nada@alder.org,Ada,Lovelace\nalan@alder.org,Alan,Turing\n"
    response = post(api_client_for(registrar), csv(teachers, "teachers.csv"), school, kind="teachers")
    TeacherFactory(school=SchoolFactory(name="Birch"), email="Alan@Alder.org")  # meanwhile, at another school

    services.import_run(response.json()["id"])

    record_import = RecordImport.objects.get()
    assert record_import.status == ImportStatus.FAILED
    assert record_import.errors == [{"line": 3, "errors": {"email": [TEACHER_EMAIL_TAKEN]}}]
    assert not Teacher.objects.filter(school=school).exists()  # the first row rolled back with it


def test_previewing_a_re_import_reads_one_reference_per_row_and_no_record(school, registrar):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    four_a = SchoolClass.objects.get(name="4A")
    client = api_client_for(registrar)

    def queries_for_preview() -> int:
        exported = client.get(f"{URL}export/", {"school": school.pk, "kind": "students"}).content.decode("utf-8-sig")
        with CaptureQueriesContext(connection) as captured:
            rows = post(client, csv(exported), school, dry_run=True).json()["rows"]
        assert {row["action"] for row in rows} == {"unchanged"}
        return len(captured)

    StudentFactory(school_class=four_a)
    few = queries_for_preview()
    for _ in range(10):
        StudentFactory(school_class=four_a)
    assert queries_for_preview() == few + 10  # the class each row names, checked as the API checks it


# --- Files as spreadsheets make them ------------------------------------------------------------


def test_exported_values_a_spreadsheet_would_run_as_formulas_stay_text_and_come_back(school, registrar):
    four_a = SchoolClass.objects.get(name="4A")
    StudentFactory(school_class=four_a, student_number="@SUM(1)", first_name='=HYPERLINK("x")', last_name="+1")
    client = api_client_for(registrar)

    exported = client.get(f"{URL}export/", {"school": school.pk, "kind": "students"}).content.decode("utf-8-sig")
    assert exported.splitlines()[1].startswith('\'@SUM(1),"\'=HYPERLINK(""x"")",\'+1,')
    workbook = client.get(f"{URL}export/", {"school": school.pk, "kind": "students", "file_format": "xlsx"})
    sheet = openpyxl.load_workbook(io.BytesIO(workbook.content)).active
    assert {cell.data_type for cell in sheet[2]} <= {"s", "n"}  # no formula cell

    preview = post(client, csv(exported), school, dry_run=True).json()
    assert [row["action"] for row in preview["rows"]] == ["unchanged"]


def test_blank_rows_are_left_out_and_lines_keep_their_numbers(school, registrar):
    text = STUDENT_HEADER + "S1,A,B,4,4A\n,,,,\nS2,C,D,4,4Z\n,,,,\n"
    rows = post(api_client_for(registrar), csv(text), school, dry_run=True).json()["rows"]
    assert [(row["line"], row["action"]) for row in rows] == [(2, "create"), (4, "error")]


def test_a_file_naming_a_column_twice_or_saved_by_windows_excel(school, registrar):
    client = api_client_for(registrar)
    doubled = post(client, csv("student_number,first_name,last_name,last_name,grade,class\n"), school, dry_run=True)
    assert doubled.json() == {"file": [files.DOUBLED_COLUMNS.format(columns="last_name")]}
    cp1252 = SimpleUploadedFile("students.csv", (STUDENT_HEADER + "S1,Léa,Müller,4,4A\n").encode("cp1252"))
    rows = post(client, cp1252, school, dry_run=True).json()["rows"]
    assert rows[0]["values"]["first_name"] == "Léa"


def test_a_classes_file_without_homeroom_teachers_leaves_them_as_they_are(school, registrar):
    teacher = TeacherFactory(school=school)
    SchoolClass.objects.filter(name="4A").update(homeroom_teacher=teacher)
    rows = post(api_client_for(registrar), csv("grade,name\n4,4A\n04,4C\n4,4C\n", "c.csv"), school, "classes", True)
    assert [(row["action"], list(row["errors"])) for row in rows.json()["rows"]] == [
        ("unchanged", []),
        ("create", []),
        ("error", ["name"]),  # 04 and 4 are one grade
    ]


def test_the_estimate_counts_cancelled_entries_as_settled(school, registrar):
    response = post(api_client_for(registrar), csv(STUDENT_HEADER + "S1,A,B,4,4A\nS2,C,D,4,4B\n"), school)
    services.import_run(response.json()["id"])
    record_import = RecordImport.objects.get()
    entries = OperationLog.objects.filter(lane=record_import.lane).order_by("sequence")
    entries.exclude(sequence=record_import.last_sequence).update(status=EntryStatus.SUCCEEDED, pushed_at=timezone.now())
    entries.filter(sequence=record_import.last_sequence).update(status=EntryStatus.CANCELLED)
    figures = services.delivery(record_import, timezone.now())
    assert (figures["delivered"], figures["cancelled"], figures["to_send_before_done"]) == (1, 1, 0)


def test_the_sweep_queues_a_waiting_import_again_once_and_never_a_running_one(school, registrar, monkeypatch):
    from datetime import timedelta

    queued = []
    monkeypatch.setattr(services, "_queue", queued.append)
    post(api_client_for(registrar), csv(STUDENT_HEADER + "S1,A,B,4,4A\n"), school)
    record_import = RecordImport.objects.get()
    later = timezone.now() + timedelta(seconds=services.STALLED_AFTER_SECONDS + 1)
    assert services.sweep(later) == 1
    assert services.sweep(later) == 0  # once a window
    assert queued == [record_import.pk]


@pytest.mark.django_db(transaction=True)
def test_the_sweep_passes_by_an_import_whose_run_holds_it(school, registrar, monkeypatch):
    import threading
    from datetime import timedelta

    from django.db import connection, transaction

    if connection.vendor != "postgresql":
        pytest.skip("row locks that other transactions skip are PostgreSQL's")
    monkeypatch.setattr(services, "_queue", lambda import_id: None)
    post(api_client_for(registrar), csv(STUDENT_HEADER + "S1,A,B,4,4A\n"), school)
    record_import = RecordImport.objects.get()
    later = timezone.now() + timedelta(seconds=services.STALLED_AFTER_SECONDS + 1)
    held, release = threading.Event(), threading.Event()

    def run_holding_the_row():
        with transaction.atomic():
            RecordImport.objects.select_for_update().get(pk=record_import.pk)
            held.set()
            release.wait(timeout=10)
        connection.close()

    running = threading.Thread(target=run_holding_the_row)
    running.start()
    try:
        assert held.wait(timeout=10)
        assert services.sweep(later) == 0
    finally:
        release.set()
        running.join()
    assert services.sweep(later) == 1


def test_an_import_is_written_when_the_cache_is_down(school, registrar, monkeypatch):
    response = post(api_client_for(registrar), csv(STUDENT_HEADER + "S1,A,B,4,4A\n"), school)

    def unavailable(*args, **kwargs):
        raise ConnectionError("cache down")

    monkeypatch.setattr(services.cache, "set", unavailable)
    monkeypatch.setattr(services.cache, "get", unavailable)
    monkeypatch.setattr(services.cache, "delete", unavailable)
    services.import_run(response.json()["id"])
    record_import = RecordImport.objects.get()
    assert services.progress(record_import) == ("done", 1)


def test_a_file_far_above_the_limit_is_refused_before_its_cells_are_read(school, registrar):
    rows = files.MAX_IMPORT_ROWS * 2 + 1
    sheet = openpyxl.Workbook()
    sheet.active.append(files.COLUMNS["students"])
    for n in range(rows):
        sheet.active.append([f"N{n}", "A", "B", 4, "4A"])
    content = io.BytesIO()
    sheet.save(content)
    upload = SimpleUploadedFile("students.xlsx", content.getvalue())
    response = post(api_client_for(registrar), upload, school, dry_run=True)
    assert response.json() == {
        "file": [files.TOO_MANY_ROWS.format(rows=f"about {rows:,}", limit=files.MAX_IMPORT_ROWS)]
    }


def test_the_list_of_imports_costs_the_same_for_one_import_or_ten(school, registrar):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client = api_client_for(registrar)

    def queries_for_list() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get(URL).status_code == 200
        return len(captured)

    def an_import(number: int) -> None:
        response = post(client, csv(STUDENT_HEADER + f"L{number},A,B,4,4A\n"), school)
        services.import_run(response.json()["id"])

    an_import(0)
    one = queries_for_list()
    for number in range(1, 10):
        an_import(number)
    assert queries_for_list() == one
    assert client.get(URL).json()["results"][0]["delivery"] is None
