"""Spreadsheets in and out (tablib, openpyxl underneath): the columns of each kind, parsing, export."""

from typing import Any

import tablib
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import UploadedFile
from django.db.models.functions import Lower

from schools.imports.models import ImportKind
from schools.models import School, SchoolClass, Student, Teacher

MAX_IMPORT_ROWS = 5000
MAX_IMPORT_FILE_BYTES = 10 * 1024 * 1024
FORMATS = {"csv": "text/csv", "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}

COLUMNS: dict[str, list[str]] = {
    ImportKind.STUDENTS: ["student_number", "first_name", "last_name", "grade", "class"],
    ImportKind.TEACHERS: ["email", "first_name", "last_name"],
    ImportKind.CLASSES: ["grade", "name", "homeroom_teacher"],
}
"""The columns of each kind, in export order. grade is a level (1 to 12); a homeroom teacher is an e-mail."""
REQUIRED = {kind: [column for column in columns if column != "homeroom_teacher"] for kind, columns in COLUMNS.items()}

UNKNOWN_FORMAT = "Upload a .csv or .xlsx file."
TOO_BIG = f"The file is larger than {MAX_IMPORT_FILE_BYTES // (1024 * 1024)} MB."
TOO_MANY_ROWS = "The file has {rows} rows; at most {limit} can be imported at once. Split it into smaller files."
UNREADABLE = "The file could not be read as {format}: {reason}"
MISSING_COLUMNS = "The file has no column {missing}; the first row must name the columns: {columns}."
EMPTY = "The file has no rows below its header."


def parse(upload: UploadedFile, kind: str) -> list[dict[str, str]]:
    """The file's rows as dicts of the kind's columns, values as text without surrounding spaces."""
    file_format = (upload.name or "").rsplit(".", 1)[-1].lower()
    if file_format not in FORMATS:
        raise ValidationError({"file": UNKNOWN_FORMAT})
    if upload.size is not None and upload.size > MAX_IMPORT_FILE_BYTES:
        raise ValidationError({"file": TOO_BIG})
    content: Any = upload.read()
    try:
        if file_format == "csv":
            content = content.decode("utf-8-sig")
        dataset = tablib.Dataset().load(content, format=file_format)
    except Exception as exc:  # tablib and openpyxl raise many kinds of errors for a broken file
        raise ValidationError({"file": UNREADABLE.format(format=file_format.upper(), reason=exc)}) from exc
    headers = [str(header or "").strip().lower() for header in (dataset.headers or [])]
    missing = [column for column in REQUIRED[kind] if column not in headers]
    if missing:
        raise ValidationError(
            {"file": MISSING_COLUMNS.format(missing=", ".join(missing), columns=", ".join(COLUMNS[kind]))}
        )
    if len(dataset) > MAX_IMPORT_ROWS:
        raise ValidationError({"file": TOO_MANY_ROWS.format(rows=len(dataset), limit=MAX_IMPORT_ROWS)})
    if not len(dataset):
        raise ValidationError({"file": EMPTY})
    wanted = [(index, header) for index, header in enumerate(headers) if header in COLUMNS[kind]]
    return [{header: _text(row[index]) for index, header in wanted} for row in dataset]


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # a spreadsheet's 7 comes back as 7.0
    return str(value).strip()


def export(school: School, kind: str, file_format: str) -> bytes:
    """The school's records of a kind in the import's columns, so a file goes out, is edited and comes back."""
    dataset = tablib.Dataset(headers=COLUMNS[kind])
    if kind == ImportKind.STUDENTS:
        students = Student.objects.filter(school=school).select_related("school_class__grade")
        for student in students.order_by("school_class__grade__level", "school_class__name", "student_number"):
            dataset.append(
                [
                    student.student_number,
                    student.first_name,
                    student.last_name,
                    student.school_class.grade.level,
                    student.school_class.name,
                ]
            )
    elif kind == ImportKind.TEACHERS:
        for teacher in Teacher.objects.filter(school=school).order_by(Lower("email")):
            dataset.append([teacher.email, teacher.first_name, teacher.last_name])
    else:
        classes = SchoolClass.objects.filter(grade__school=school).select_related("grade", "homeroom_teacher")
        for school_class in classes.order_by("grade__level", "name"):
            homeroom = school_class.homeroom_teacher
            dataset.append([school_class.grade.level, school_class.name, homeroom.email if homeroom else ""])
    exported = dataset.export(file_format)
    return exported.encode("utf-8") if isinstance(exported, str) else exported
