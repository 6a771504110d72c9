"""Services write the record and exactly one OperationLog entry together, or neither (I1)."""

import uuid

import pytest
from django.core.exceptions import ValidationError
from django.db import DatabaseError, transaction

from schools import models as school_models
from schools.models import Grade, School, SchoolClass, Student, Teacher
from schools.services import (
    RecordGoneError,
    RecordInUseError,
    grade_create,
    record_delete,
    record_update,
    school_class_create,
    school_create,
    snapshot,
    student_create,
    teacher_create,
)
from sync.models import DEFAULT_LANE, EntryStatus, OperationLog, SyncLane
from tests.factories import GradeFactory, SchoolClassFactory, SchoolFactory, StudentFactory, TeacherFactory

pytestmark = pytest.mark.django_db


def entries_after(entry_count: int) -> list[OperationLog]:
    return list(OperationLog.objects.order_by("sequence")[entry_count:])


def create_school():
    return school_create(name="Hillcrest", address="1 Hill Road")


def create_grade():
    return grade_create(school=SchoolFactory(), level=5, name="Grade 5")


def create_class():
    grade = GradeFactory()
    teacher = TeacherFactory(school=grade.school)
    return school_class_create(grade=grade, name="5B", homeroom_teacher=teacher)


def create_teacher():
    return teacher_create(school=SchoolFactory(), first_name="Ada", last_name="Lovelace", email="ada@example.org")


def create_student():
    return student_create(
        school_class=SchoolClassFactory(), first_name="Mia", last_name="Schmidt", student_number="S-0001"
    )


# (resource, creates the record through its typed service, a valid change for an update)
CASES = [
    ("schools", create_school, {"name": "Hillcrest Academy"}),
    ("grades", create_grade, {"name": "Fifth grade"}),
    ("classes", create_class, {"name": "5C", "homeroom_teacher": None}),
    ("teachers", create_teacher, {"email": "ada.lovelace@example.org"}),
    ("students", create_student, {"last_name": "Schmidt-Weber"}),
]
CASE_IDS = [case[0] for case in CASES]


@pytest.mark.parametrize(("resource", "create", "changes"), CASES, ids=CASE_IDS)
def test_create_writes_the_record_and_exactly_one_entry(resource, create, changes):
    lane = SyncLane.objects.get(pk=DEFAULT_LANE)
    next_sequence_before = lane.next_sequence
    instance = create()
    entries = OperationLog.objects.filter(resource=resource, object_id=instance.pk)

    assert entries.count() == 1
    entry = entries.get()
    assert entry.operation == "create"
    assert entry.lane_id == DEFAULT_LANE
    assert entry.status == EntryStatus.PENDING
    assert isinstance(entry.idempotency_key, uuid.UUID)
    assert entry.payload == snapshot(type(instance).objects.get(pk=instance.pk))
    assert entry.payload["id"] == instance.pk
    lane.refresh_from_db()
    assert entry.sequence == lane.next_sequence - 1 >= next_sequence_before  # the last one taken


@pytest.mark.parametrize(("resource", "create", "changes"), CASES, ids=CASE_IDS)
def test_update_writes_one_entry_with_the_state_after_the_change(resource, create, changes):
    instance = create()
    before = OperationLog.objects.count()

    record_update(instance=instance, data=changes)

    [entry] = entries_after(before)
    assert (entry.operation, entry.resource, entry.object_id) == ("update", resource, instance.pk)
    stored = type(instance).objects.get(pk=instance.pk)
    assert entry.payload == snapshot(stored)
    for field, value in changes.items():
        assert entry.payload[field] == value


@pytest.mark.parametrize(("resource", "create", "changes"), CASES, ids=CASE_IDS)
def test_delete_writes_one_entry_with_the_last_state(resource, create, changes):
    instance = create()
    model, pk, last_state = type(instance), instance.pk, snapshot(instance)
    before = OperationLog.objects.count()

    record_delete(instance=instance)

    assert not model.objects.filter(pk=pk).exists()
    [entry] = entries_after(before)
    assert (entry.operation, entry.resource, entry.object_id) == ("delete", resource, pk)
    assert entry.payload == last_state


def test_sequences_follow_the_order_of_the_writes():
    school = school_create(name="Order")
    grade = grade_create(school=school, level=1, name="One")
    record_update(instance=school, data={"address": "Somewhere"})
    record_delete(instance=grade)

    entries = list(OperationLog.objects.order_by("sequence"))
    assert [(e.operation, e.resource) for e in entries] == [
        ("create", "schools"),
        ("create", "grades"),
        ("update", "schools"),
        ("delete", "grades"),
    ]
    sequences = [e.sequence for e in entries]
    assert sequences == list(range(sequences[0], sequences[0] + 4))


def test_entry_remembers_the_actor():
    from tests.factories import UserFactory

    user = UserFactory(permissions=["schools.access_all_schools"])
    school = school_create(name="Actor school", actor=user)
    assert OperationLog.objects.get(resource="schools", object_id=school.pk).actor == user


# --- Rejected writes leave neither record nor entry (I1) ---------------------------


def assert_nothing_written(counts_before):
    assert counts_before == current_counts()


def current_counts():
    return tuple(model.objects.count() for model in (School, Grade, SchoolClass, Teacher, Student, OperationLog))


def test_a_failure_after_the_entry_was_inserted_rolls_back_both(monkeypatch):
    counts = current_counts()
    original_save = OperationLog.save

    def save_then_fail(self, *args, **kwargs):
        original_save(self, *args, **kwargs)
        assert OperationLog.objects.filter(pk=self.pk).exists()  # the row really was inserted
        raise DatabaseError("connection lost after insert")

    monkeypatch.setattr(OperationLog, "save", save_then_fail)
    with pytest.raises(DatabaseError):
        school_create(name="Never")

    monkeypatch.undo()
    assert_nothing_written(counts)


def test_a_failure_later_in_the_enclosing_transaction_rolls_back_both():
    counts = current_counts()

    @transaction.atomic
    def create_then_fail():
        school_create(name="Half")
        raise RuntimeError("the admin's next inline failed")

    with pytest.raises(RuntimeError):
        create_then_fail()
    assert_nothing_written(counts)


def test_validation_error_writes_nothing():
    SchoolFactory(name="Taken")
    counts = current_counts()
    with pytest.raises(ValidationError) as excinfo:
        school_create(name="Taken")
    assert "name" in excinfo.value.message_dict
    assert_nothing_written(counts)


# --- Record rules -------------------------------------------------------------------


@pytest.mark.parametrize("level", [0, 13])
def test_grade_level_must_be_between_1_and_12(level):
    with pytest.raises(ValidationError) as excinfo:
        grade_create(school=SchoolFactory(), level=level, name="Out of range")
    assert "level" in excinfo.value.message_dict


def test_grade_level_is_unique_per_school_only():
    grade = GradeFactory(level=3)
    with pytest.raises(ValidationError, match="already has a grade at this level"):
        grade_create(school=grade.school, level=3, name="Again")
    assert grade_create(school=SchoolFactory(), level=3, name="Elsewhere").pk


def test_class_name_is_unique_per_grade():
    school_class = SchoolClassFactory(name="4A")
    with pytest.raises(ValidationError, match="already has a class with this name"):
        school_class_create(grade=school_class.grade, name="4A")
    other_grade = GradeFactory(school=school_class.grade.school, level=school_class.grade.level % 12 + 1)
    assert school_class_create(grade=other_grade, name="4A").pk


def test_homeroom_teacher_must_belong_to_the_class_school():
    grade = GradeFactory()
    outsider = TeacherFactory()
    with pytest.raises(ValidationError) as excinfo:
        school_class_create(grade=grade, name="X", homeroom_teacher=outsider)
    assert excinfo.value.message_dict == {"homeroom_teacher": [school_models.HOMEROOM_TEACHER_OF_OTHER_SCHOOL]}


def test_teacher_email_is_unique_ignoring_case():
    TeacherFactory(email="Grace.Hopper@example.org")
    with pytest.raises(ValidationError) as excinfo:
        teacher_create(school=SchoolFactory(), first_name="G", last_name="H", email="grace.hopper@EXAMPLE.org")
    assert excinfo.value.message_dict == {"email": [school_models.TEACHER_EMAIL_TAKEN]}


def test_student_number_is_unique_within_the_school_only():
    student = StudentFactory(student_number="2024-17")
    same_school_class = SchoolClassFactory(grade=student.school_class.grade)
    with pytest.raises(ValidationError) as excinfo:
        student_create(school_class=same_school_class, first_name="A", last_name="B", student_number="2024-17")
    assert excinfo.value.message_dict == {"student_number": [school_models.STUDENT_NUMBER_TAKEN]}

    elsewhere = student_create(
        school_class=SchoolClassFactory(), first_name="A", last_name="B", student_number="2024-17"
    )
    assert elsewhere.school_id != student.school_id


def test_a_student_moving_school_keeps_their_number_only_if_it_is_free_there():
    student = StudentFactory(student_number="S-1")
    other_school_class = SchoolClassFactory()
    StudentFactory(school_class=other_school_class, student_number="S-1")
    counts = current_counts()

    with pytest.raises(ValidationError) as excinfo:
        record_update(instance=student, data={"school_class": other_school_class})

    assert excinfo.value.message_dict == {"student_number": [school_models.STUDENT_NUMBER_TAKEN]}
    assert_nothing_written(counts)


def test_student_school_follows_its_class():
    student = StudentFactory()
    new_class = SchoolClassFactory()
    record_update(instance=student, data={"school_class": new_class})
    student.refresh_from_db()
    assert student.school_id == new_class.grade.school_id


def test_a_grade_moves_to_another_school_with_its_classes_and_students():
    grade = GradeFactory(level=3)
    school_class = SchoolClassFactory(grade=grade)
    student = StudentFactory(school_class=school_class)
    new_school = SchoolFactory()

    record_update(instance=grade, data={"school": new_school})

    student.refresh_from_db()
    assert student.school_id == new_school.pk
    entry = OperationLog.objects.latest("pk")
    assert (entry.resource, entry.operation, entry.payload["school"]) == ("grades", "update", new_school.pk)


def test_a_grade_whose_classes_keep_old_homeroom_teachers_or_clashing_numbers_cannot_move():
    grade = GradeFactory()
    teacher = TeacherFactory(school=grade.school)
    homeroom = SchoolClassFactory(grade=grade, homeroom_teacher=teacher, name="3B")
    StudentFactory(school_class=homeroom, student_number="S-1")
    new_school_class = SchoolClassFactory()
    StudentFactory(school_class=new_school_class, student_number="S-1")
    entries = OperationLog.objects.count()

    with pytest.raises(ValidationError) as excinfo:
        record_update(instance=grade, data={"school": new_school_class.grade.school})

    assert excinfo.value.message_dict == {
        "school": [
            school_models.GRADE_MOVE_HOMEROOM_TEACHERS.format(classes=f"“{homeroom}”"),
            school_models.MOVE_STUDENT_NUMBERS_TAKEN.format(numbers="S-1"),
        ]
    }
    assert OperationLog.objects.count() == entries  # nothing written


def test_a_class_moves_to_a_grade_of_another_school_with_its_students():
    school_class = SchoolClassFactory()
    student = StudentFactory(school_class=school_class)
    new_grade = GradeFactory()

    record_update(instance=school_class, data={"grade": new_grade})

    student.refresh_from_db()
    assert student.school_id == new_grade.school_id


def test_a_class_cannot_take_students_to_a_school_where_their_numbers_are_taken():
    school_class = SchoolClassFactory()
    StudentFactory(school_class=school_class, student_number="S-9")
    new_grade = GradeFactory()
    StudentFactory(school_class=SchoolClassFactory(grade=new_grade), student_number="S-9")
    with pytest.raises(ValidationError) as excinfo:
        record_update(instance=school_class, data={"grade": new_grade})
    assert excinfo.value.message_dict == {"grade": [school_models.MOVE_STUDENT_NUMBERS_TAKEN.format(numbers="S-9")]}


def test_a_homeroom_teacher_cannot_move_to_another_school():
    grade = GradeFactory()
    teacher = TeacherFactory(school=grade.school)
    homeroom = SchoolClassFactory(grade=grade, homeroom_teacher=teacher)
    with pytest.raises(ValidationError) as excinfo:
        record_update(instance=teacher, data={"school": SchoolFactory()})
    assert excinfo.value.message_dict == {
        "school": [school_models.TEACHER_HOMEROOM_IN_OLD_SCHOOL.format(classes=f"“{homeroom}”")]
    }


# --- Deletes of referenced records are refused, never cascaded ------------------------


@pytest.mark.parametrize(
    ("make_referenced", "expected"),
    [
        (lambda: GradeFactory().school, "1 grade"),
        (lambda: TeacherFactory().school, "1 teacher"),
        (lambda: SchoolClassFactory().grade, "1 class"),
        (lambda: StudentFactory().school_class, "1 student"),
    ],
    ids=["school-with-grade", "school-with-teacher", "grade-with-class", "class-with-student"],
)
def test_deleting_a_referenced_record_is_refused_and_writes_nothing(make_referenced, expected):
    record = make_referenced()
    counts = current_counts()

    with pytest.raises(RecordInUseError, match=f"still referenced by {expected}"):
        record_delete(instance=record)

    assert_nothing_written(counts)


def test_deleting_a_homeroom_teacher_is_refused():
    grade = GradeFactory()
    teacher = TeacherFactory(school=grade.school)
    SchoolClassFactory(grade=grade, homeroom_teacher=teacher)
    with pytest.raises(RecordInUseError, match="1 class"):
        record_delete(instance=teacher)
    assert Teacher.objects.filter(pk=teacher.pk).exists()


def test_concurrent_updates_of_different_fields_both_stay():
    # Two requests read the student; the second commits a change to another field first.
    student = StudentFactory(first_name="Ann", last_name="Lee")
    read_by_first_request = Student.objects.get(pk=student.pk)
    record_update(instance=Student.objects.get(pk=student.pk), data={"last_name": "Park"})

    updated = record_update(instance=read_by_first_request, data={"first_name": "Anna"})

    student.refresh_from_db()
    assert (student.first_name, student.last_name) == ("Anna", "Park")
    entry = OperationLog.objects.filter(resource="students", object_id=student.pk).latest("sequence")
    assert (entry.payload["first_name"], entry.payload["last_name"]) == ("Anna", "Park")  # the committed row
    assert (updated.first_name, updated.last_name) == ("Anna", "Park")


def test_updating_a_record_deleted_meanwhile_is_a_conflict():
    school = SchoolFactory()
    read_before_the_delete = School.objects.get(pk=school.pk)
    record_delete(instance=school)
    with pytest.raises(RecordGoneError):
        record_update(instance=read_before_the_delete, data={"address": "Elsewhere"})


def test_deleting_a_record_twice_records_one_delete():
    # Two requests read the school; the second's delete waits for the first's lane lock.
    school = SchoolFactory()
    first_request, second_request = School.objects.get(pk=school.pk), School.objects.get(pk=school.pk)
    record_delete(instance=first_request)

    with pytest.raises(RecordGoneError):
        record_delete(instance=second_request)
    assert OperationLog.objects.filter(resource="schools", object_id=school.pk, operation="delete").count() == 1
