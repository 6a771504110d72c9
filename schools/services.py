"""Every write to school records: lock the lane, validate, save and record the entry, in one transaction (I1)."""

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from django.contrib.auth.models import User
from django.db import IntegrityError, models, transaction
from rest_framework import serializers

from config.errors import ConflictError
from schools import access
from schools.lanes import in_lanes, lane_of, opens_its_own_lane, reload_parents, require, unique_values
from schools.models import Grade, School, SchoolClass, Student, Teacher, school_id_of
from schools.serializers import (
    GradeSerializer,
    SchoolClassSerializer,
    SchoolSerializer,
    StudentSerializer,
    TeacherSerializer,
)
from sync import lanes as sync_lanes
from sync.models import Operation, Resource
from sync.recorder import entry_create

RecordT = TypeVar("RecordT", bound=models.Model)
Actor = User | None

DELETE_REFUSED = (
    "Cannot delete {kind} “{record}”: it is still referenced by {references}. Delete or reassign those first."
)
RECORD_GONE = "The {kind} “{record}” was deleted by someone else meanwhile; nothing was changed."
NOT_IN_YOUR_SCHOOLS = (
    "The records this change involves are no longer all in your schools (one was moved meanwhile); nothing was changed."
)

# Each record kind, the external API resource it maps to and its REST representation.
RESOURCES: dict[type[models.Model], tuple[Resource, type[serializers.ModelSerializer]]] = {
    School: (Resource.SCHOOLS, SchoolSerializer),
    Grade: (Resource.GRADES, GradeSerializer),
    SchoolClass: (Resource.CLASSES, SchoolClassSerializer),
    Teacher: (Resource.TEACHERS, TeacherSerializer),
    Student: (Resource.STUDENTS, StudentSerializer),
}


class RecordGoneError(ConflictError):
    """An update of a record that another request deleted meanwhile."""


class NotInUsersSchoolsError(ConflictError):
    """A record the change involves moved, meanwhile, to a school the actor may not act on."""


class RecordInUseError(ConflictError):
    """A delete refused because other records still reference the record."""


def snapshot(instance: models.Model) -> dict[str, Any]:
    """The record exactly as ``GET /api/{resource}/{id}/`` shows it."""
    _, serializer_class = RESOURCES[type(instance)]
    return dict(serializer_class(instance).data)


@transaction.atomic
def record_add(*, instance: RecordT, actor: Actor = None) -> RecordT:
    """Validate and insert a new record built by the caller, and record its create entry.

    The record's lane is locked first, so writes to it run one at a time and no check
    can race; the validation is ``full_clean()`` (field rules, constraints, the models'
    ``clean()``).
    """
    if not instance._state.adding:
        raise ValueError("record_add() inserts new records; change stored ones with record_update().")
    first_guess = [] if opens_its_own_lane(instance) else [lane_of(instance)]
    return in_lanes(lambda locked: _save(instance, Operation.CREATE, actor, locked), first_guess)


def record_create(*, model: type[RecordT], data: Mapping[str, Any], actor: Actor = None) -> RecordT:
    return record_add(instance=model(**data), actor=actor)


@transaction.atomic
def record_update(*, instance: RecordT, data: Mapping[str, Any], actor: Actor = None) -> RecordT:
    """Change the given fields of a stored record, and record its update entry.

    The record is read again under the lane lock and only ``data`` is applied to it, so a
    change another request committed meanwhile to other fields is kept, and the entry's
    snapshot is the row as committed. A move to another school locks both schools' lanes
    and holds a slot in each. Returns the updated record (not ``instance``).
    """

    def write(locked: frozenset[str]) -> RecordT:
        current = _current(instance)
        lane_before, held_before, school_before = lane_of(current), unique_values(current), school_id_of(current)
        require([lane_before], locked)
        _require_access(actor, school_before)
        for field, value in data.items():
            setattr(current, field, value)
        return _save(
            current,
            Operation.UPDATE,
            actor,
            locked,
            lane_before=lane_before,
            held_before=held_before,
            school_before=school_before,
        )

    return in_lanes(write, [lane_of(instance)])


def _require_access(actor: Actor, school_id: int | None) -> None:
    """The actor's schools, checked again under the lane lock: the view found the record (or
    the parent) in them, but it may have moved since. Writes without an actor are the system's."""
    if actor is not None and not access.may_access(actor, [school_id]):
        raise NotInUsersSchoolsError(NOT_IN_YOUR_SCHOOLS)


def _current(instance: RecordT) -> RecordT:
    """The record as committed now (call under the lane lock); RecordGoneError if it was deleted."""
    current = type(instance)._default_manager.filter(pk=instance.pk).first()
    if current is None:
        raise RecordGoneError(RECORD_GONE.format(kind=instance._meta.verbose_name, record=instance))
    return current


def _save(
    instance: RecordT,
    operation: Operation,
    actor: Actor,
    locked: frozenset[str],
    *,
    lane_before: str | None = None,
    held_before: frozenset[str] | set[str] = frozenset(),
    school_before: int | None = None,
) -> RecordT:
    """Validate, save and record a created or updated record, holding a slot in every lane it must follow."""
    own_lane_is_new = opens_its_own_lane(instance)
    reload_parents(instance)
    _require_access(actor, school_id_of(instance))
    instance.full_clean()
    if sync_lanes.by_school():
        # Writes to different schools run side by side, and a value unique across schools
        # can be taken by another school between the check and the save: in a savepoint,
        # so that the validation can run again and report it on its field.
        try:
            with transaction.atomic():
                _insert_or_update(instance, moved=lane_before is not None)
        except IntegrityError:
            instance.full_clean()  # now sees the committed row: a field error
            raise
    else:
        _insert_or_update(instance, moved=lane_before is not None)  # one lane lock: no check can race
    lane = lane_of(instance)
    held = unique_values(instance)
    # Found after the save: a write that gave up a value this one takes has committed by now.
    others = sync_lanes.releasing(held - held_before) | sync_lanes.switched_from(lane)
    if lane_before is not None:
        others.add(lane_before)
    require(others if own_lane_is_new else {lane, *others}, locked)
    _record(
        instance,
        operation,
        object_id=instance.pk,
        payload=snapshot(instance),
        actor=actor,
        lane=lane,
        other_lanes=others,
        releases=held_before - held,
        schools=(school_id_of(instance), school_before),
    )
    return instance


def _insert_or_update(instance: models.Model, *, moved: bool) -> None:
    instance.save()
    if moved and isinstance(instance, Grade | SchoolClass):
        instance.carry_along()  # a grade or class moved to another school takes its students


@transaction.atomic
def record_delete(*, instance: models.Model, actor: Actor = None) -> None:
    """Delete a record nothing references any more and record its delete entry.

    The record is read again under the lane lock, so a record another request deleted
    meanwhile is refused instead of being recorded as deleted twice, and the entry's
    snapshot is its last committed state.
    """

    def write(locked: frozenset[str]) -> None:
        current = _current(instance)
        lane = lane_of(current)
        others = sync_lanes.switched_from(lane)
        require({lane, *others}, locked)
        _require_access(actor, school_id_of(current))
        payload = snapshot(current)
        object_id, school_id = current.pk, school_id_of(current)  # a deleted school has no pk
        try:
            current.delete()
        except models.ProtectedError as exc:
            raise RecordInUseError(_delete_refused_message(current, exc.protected_objects)) from exc
        _record(
            current,
            Operation.DELETE,
            object_id=object_id,
            payload=payload,
            actor=actor,
            lane=lane,
            other_lanes=others,
            releases=unique_values(current),
            schools=(school_id, None),
        )

    in_lanes(write, [lane_of(instance)])


def _record(
    instance: models.Model,
    operation: Operation,
    *,
    object_id: int,
    payload: dict[str, Any],
    actor: Actor,
    lane: str,
    other_lanes: Iterable[str],
    releases: Iterable[str],
    schools: tuple[int | None, int | None],
) -> None:
    resource, _ = RESOURCES[type(instance)]
    entry_create(
        operation=operation,
        resource=resource,
        object_id=object_id,
        payload=payload,
        actor=actor,
        lane=lane,
        other_lanes=other_lanes,
        releases=releases,
        school_id=schools[0],
        other_school_id=schools[1],
    )


def _delete_refused_message(instance: models.Model, protected: Any) -> str:
    counts = Counter(type(obj) for obj in protected)
    references = ", ".join(
        f"{count} {model._meta.verbose_name if count == 1 else model._meta.verbose_name_plural}"
        for model, count in sorted(counts.items(), key=lambda item: item[0]._meta.verbose_name)
    )
    return DELETE_REFUSED.format(kind=instance._meta.verbose_name, record=instance, references=references)


# Typed entry points for code that creates records directly (demo data, scheduled changes).


def school_create(*, name: str, address: str = "", actor: Actor = None) -> School:
    return record_add(instance=School(name=name, address=address), actor=actor)


def grade_create(*, school: School, level: int, name: str, actor: Actor = None) -> Grade:
    return record_add(instance=Grade(school=school, level=level, name=name), actor=actor)


def school_class_create(
    *, grade: Grade, name: str, homeroom_teacher: Teacher | None = None, actor: Actor = None
) -> SchoolClass:
    return record_add(instance=SchoolClass(grade=grade, name=name, homeroom_teacher=homeroom_teacher), actor=actor)


def teacher_create(*, school: School, first_name: str, last_name: str, email: str, actor: Actor = None) -> Teacher:
    return record_add(
        instance=Teacher(school=school, first_name=first_name, last_name=last_name, email=email), actor=actor
    )


def student_create(
    *, school_class: SchoolClass, first_name: str, last_name: str, student_number: str, actor: Actor = None
) -> Student:
    return record_add(
        instance=Student(
            school_class=school_class, first_name=first_name, last_name=last_name, student_number=student_number
        ),
        actor=actor,
    )
