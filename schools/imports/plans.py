"""What each row of an import would do — create, update or leave alone a record — or why it cannot.

Rows are checked as the API would check the same change by the same user (the serializer,
scoped to the user's schools, then the model's validation), and against each other: a
record named twice in one file is an error on its second line.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import models
from rest_framework import serializers as drf_serializers

from schools.imports.files import REQUIRED as REQUIRED_COLUMNS
from schools.imports.models import ImportKind
from schools.models import MAX_GRADE_LEVEL, MIN_GRADE_LEVEL, School, SchoolClass, Student, Teacher
from schools.serializers import SchoolClassSerializer, StudentSerializer, TeacherSerializer

REQUIRED = "This column is required."
NOT_A_LEVEL = f"Must be a grade level from {MIN_GRADE_LEVEL} to {MAX_GRADE_LEVEL}."
NO_GRADE = "{school} has no grade {level}."
NO_CLASS = "{school} has no class “{name}” in grade {level}."
NO_TEACHER = "{school} has no teacher with the e-mail {email}."
DUPLICATE = "Also on line {line}: each row must be a different {what}."


class Action:
    CREATE = "create"
    UPDATE = "update"
    UNCHANGED = "unchanged"
    ERROR = "error"


@dataclass
class RowPlan:
    line: int
    values: dict[str, str]
    action: str = Action.ERROR
    errors: dict[str, list[str]] = field(default_factory=dict)
    record: models.Model | None = None
    data: dict[str, Any] = field(default_factory=dict)  # validated values for the services


@dataclass
class _Kind:
    model: type[models.Model]
    serializer: type[drf_serializers.ModelSerializer]
    key: str  # the column that names the record
    what: str
    columns: dict[str, str]  # model field -> file column, where they differ


KINDS = {
    ImportKind.STUDENTS: _Kind(Student, StudentSerializer, "student_number", "student", {"school_class": "class"}),
    ImportKind.TEACHERS: _Kind(Teacher, TeacherSerializer, "email", "teacher", {"school": "row"}),
    ImportKind.CLASSES: _Kind(SchoolClass, SchoolClassSerializer, "name", "class", {}),
}


class _School:
    """The school's grades, classes, teachers and students, read once for the whole file."""

    def __init__(self, school: School):
        self.school = school
        classes = SchoolClass.objects.filter(grade__school=school).select_related("grade")
        self.classes = {(c.grade.level, c.name): c for c in classes}
        self.grades = {grade.level: grade for grade in school.grades.all()}
        self.teachers = {t.email.lower(): t for t in Teacher.objects.filter(school=school)}
        self.students = {s.student_number: s for s in Student.objects.filter(school=school)}


def plan(
    kind: str, school: School, rows: Sequence[Sequence[Any]], user: User, *, check_models: bool = True
) -> list[RowPlan]:
    """A plan per row, in file order; writes nothing.

    Without ``check_models`` the model's own validation is left to the services that write
    the rows, which run it anyway (``check_row`` turns its refusal into the row's errors).
    """
    spec = KINDS[ImportKind(kind)]
    known = _School(school)
    serializer = spec.serializer(context={"user": user})
    seen: dict[Any, int] = {}
    plans = []
    for line, values in rows:  # (line, values) pairs, as files.parse() gives them
        row = RowPlan(line=line, values=values)
        plans.append(row)
        missing = {column: [REQUIRED] for column in REQUIRED_COLUMNS[kind] if not values.get(column)}
        if missing:
            row.errors = missing
            continue
        key = _key(kind, values)
        if key in seen:
            row.errors = {spec.key: [DUPLICATE.format(line=seen[key], what=spec.what)]}
            continue
        seen[key] = row.line
        try:
            data, row.record = _data(kind, values, known)
            row.data = _validated(serializer, data, row.record)
            if row.record is not None and _unchanged(row.record, row.data):
                row.action = Action.UNCHANGED
                continue
            if check_models:
                _check_model(spec.model, row.record, row.data)
        except ValidationError as exc:
            row.errors = _by_column(spec, exc)
            continue
        row.action = Action.UPDATE if row.record is not None else Action.CREATE
    return plans


def _key(kind: str, values: dict[str, str]) -> Any:
    if kind == ImportKind.STUDENTS:
        return values["student_number"]
    if kind == ImportKind.TEACHERS:
        return values["email"].lower()
    return (values["grade"].lstrip("0"), values["name"])  # a level, as 04 and 4 name the same grade


def _level(values: dict[str, str]) -> int:
    try:
        level = int(values["grade"])
    except ValueError:
        level = 0
    if not MIN_GRADE_LEVEL <= level <= MAX_GRADE_LEVEL:
        raise ValidationError({"grade": NOT_A_LEVEL})
    return level


def _data(kind: str, values: dict[str, str], known: _School) -> tuple[dict[str, Any], models.Model | None]:
    """The row as the API's request body, and the record it matches in the school (None: a new one)."""
    school = known.school
    if kind == ImportKind.STUDENTS:
        level = _level(values)
        school_class = known.classes.get((level, values["class"]))
        if school_class is None:
            raise ValidationError({"class": NO_CLASS.format(school=school, name=values["class"], level=level)})
        data = {key: values[key] for key in ("student_number", "first_name", "last_name")}
        return {**data, "school_class": school_class.pk}, known.students.get(values["student_number"])
    if kind == ImportKind.TEACHERS:
        data = {key: values[key] for key in ("email", "first_name", "last_name")}
        return {**data, "school": school.pk}, known.teachers.get(values["email"].lower())
    level = _level(values)
    grade = known.grades.get(level)
    if grade is None:
        raise ValidationError({"grade": NO_GRADE.format(school=school, level=level)})
    class_data: dict[str, Any] = {"grade": grade.pk, "name": values["name"]}
    if "homeroom_teacher" in values:  # a file without the column leaves homeroom teachers as they are
        email = values["homeroom_teacher"]
        teacher = known.teachers.get(email.lower()) if email else None
        if email and teacher is None:
            raise ValidationError({"homeroom_teacher": NO_TEACHER.format(school=school, email=email)})
        class_data["homeroom_teacher"] = teacher.pk if teacher else None
    return class_data, known.classes.get((level, values["name"]))


def _validated(serializer: drf_serializers.ModelSerializer, data: dict[str, Any], record) -> dict[str, Any]:
    """The serializer's checks, as for the user's API request (references only within their schools)."""
    serializer.instance = record
    serializer.partial = record is not None
    try:
        return serializer.run_validation(data)
    except drf_serializers.ValidationError as exc:
        detail = exc.detail if isinstance(exc.detail, dict) else {"__all__": exc.detail}
        errors = {name: [str(message) for message in messages] for name, messages in detail.items()}
        raise ValidationError(errors) from exc


def _unchanged(record: models.Model, data: dict[str, Any]) -> bool:
    """Whether the row leaves the record as it is; references compared by id, without reading them."""
    for name, value in data.items():
        field = record._meta.get_field(name)
        if isinstance(field, models.ForeignKey):
            if getattr(record, field.attname) != (value.pk if value is not None else None):
                return False
        elif getattr(record, name) != value:
            return False
    return True


def _check_model(model: type[models.Model], record: models.Model | None, data: dict[str, Any]) -> None:
    """The model's own validation (uniqueness, cross-record rules) on the record as the row would leave it."""
    if record is None:
        candidate = model(**data)
    else:
        names = [f.attname for f in model._meta.concrete_fields]
        candidate = model.from_db(record._state.db, names, [getattr(record, name) for name in names])
        for name, value in data.items():
            setattr(candidate, name, value)
    candidate.full_clean()


def row_errors(kind: str, exc: ValidationError) -> dict[str, list[str]]:
    """A refusal of a row's write, by the file's columns."""
    return _by_column(KINDS[ImportKind(kind)], exc)


def _by_column(spec: _Kind, exc: ValidationError) -> dict[str, list[str]]:
    errors = exc.message_dict if hasattr(exc, "error_dict") else {"__all__": exc.messages}
    return {
        ("row" if name in ("__all__", "non_field_errors") else spec.columns.get(name, name)): messages
        for name, messages in errors.items()
    }
