"""Spreadsheets in and out (tablib, openpyxl underneath): the columns of each kind, parsing, export."""

import io
from typing import Any

import openpyxl
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
DOUBLED_COLUMNS = "The file names the column {columns} more than once."
FIRST_DATA_LINE = 2
"""Line numbers as a spreadsheet shows them: the header is line 1."""
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def parse(upload: UploadedFile, kind: str) -> list[tuple[int, dict[str, str]]]:
    """The file's rows with their line numbers, as dicts of the kind's columns the file has.

    Values are text without surrounding spaces; rows with nothing in those columns are left out.
    """
    file_format = (upload.name or "").rsplit(".", 1)[-1].lower()
    if file_format not in FORMATS:
        raise ValidationError({"file": UNKNOWN_FORMAT})
    if upload.size is not None and upload.size > MAX_IMPORT_FILE_BYTES:
        raise ValidationError({"file": TOO_BIG})
    content: Any = upload.read()
    try:
        if file_format == "csv":
            content = _decoded(content)
            _refuse_far_too_many_rows(content.count("\n"))
        else:
            _refuse_far_too_many_rows(_sheet_rows(content))
        dataset = tablib.Dataset().load(content, format=file_format)
    except ValidationError:
        raise
    except Exception as exc:  # tablib and openpyxl raise many kinds of errors for a broken file
        reason = str(exc) or type(exc).__name__
        raise ValidationError({"file": UNREADABLE.format(format=file_format.upper(), reason=reason)}) from exc
    headers = [str(header or "").strip().lower() for header in (dataset.headers or [])]
    doubled = sorted({header for header in headers if header and headers.count(header) > 1})
    if doubled:
        raise ValidationError({"file": DOUBLED_COLUMNS.format(columns=", ".join(doubled))})
    missing = [column for column in REQUIRED[kind] if column not in headers]
    if missing:
        raise ValidationError(
            {"file": MISSING_COLUMNS.format(missing=", ".join(missing), columns=", ".join(COLUMNS[kind]))}
        )
    wanted = [(index, header) for index, header in enumerate(headers) if header in COLUMNS[kind]]
    rows = []
    for number, row in enumerate(dataset, start=FIRST_DATA_LINE):
        values = {header: _text(row[index]) for index, header in wanted}
        if any(values.values()):
            rows.append((number, values))
    if len(rows) > MAX_IMPORT_ROWS:
        raise ValidationError({"file": TOO_MANY_ROWS.format(rows=len(rows), limit=MAX_IMPORT_ROWS)})
    if not rows:
        raise ValidationError({"file": EMPTY})
    return rows


def _decoded(content: bytes) -> str:
    """CSV text as spreadsheets save it: UTF-8 (with or without a byte-order mark), UTF-16, or Windows' cp1252."""
    if content.startswith((b"\xff\xfe", b"\xfe\xff")):
        return content.decode("utf-16")
    try:
        return content.decode("utf-8-sig")
    except UnicodeDecodeError:
        return content.decode("cp1252", errors="replace")


def _sheet_rows(content: bytes) -> int:
    """The rows the workbook's first sheet says it has, read without loading its cells."""
    workbook = openpyxl.load_workbook(io.BytesIO(content), read_only=True)
    try:
        return max((workbook.worksheets[0].max_row or 1) - 1, 0) if workbook.worksheets else 0
    finally:
        workbook.close()


def _refuse_far_too_many_rows(rows: int) -> None:
    """Refuse a file far above the limit before parsing every cell of it (blank rows get some leeway)."""
    if rows > MAX_IMPORT_ROWS * 2:
        raise ValidationError({"file": TOO_MANY_ROWS.format(rows=f"about {rows:,}", limit=MAX_IMPORT_ROWS)})


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # a spreadsheet's 7 comes back as 7.0
    text = str(value).strip()
    if text.startswith("'") and text[1:2] in FORMULA_STARTS:
        return text[1:]  # escaped by the export (or by hand) so that a spreadsheet shows it as text
    return text


def _escaped(value: Any) -> Any:
    """A value a spreadsheet would run as a formula, quoted so that it shows as text."""
    if isinstance(value, str) and value[:1] in FORMULA_STARTS:
        return "'" + value
    return value


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
    safe = tablib.Dataset(*[[_escaped(value) for value in row] for row in dataset], headers=dataset.headers)
    exported = safe.export(file_format)
    # With a byte-order mark, Excel opens the CSV as UTF-8.
    return exported.encode("utf-8-sig") if isinstance(exported, str) else exported
