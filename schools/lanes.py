"""The lanes a write to school records locks and holds slots in: its school's, and those it must follow."""

from collections.abc import Callable, Iterable
from typing import TypeVar

from django.db import models, transaction

from config.errors import ConflictError
from schools.models import Grade, School, SchoolClass, Student, Teacher, school_id_of
from sync import lanes
from sync.recorder import lock_lanes

T = TypeVar("T")

LANE_LOCK_ATTEMPTS = 5
"""How often a write may find it needs a lane it has not locked before it gives up."""
LANES_KEEP_CHANGING = (
    "The records this change involves kept changing schools meanwhile; nothing was changed. Try again."
)


class LanesMissing(Exception):
    """A write found it needs lanes it has not locked: it starts over with them."""

    def __init__(self, lanes: set[str]):
        super().__init__(", ".join(sorted(lanes)))
        self.lanes = lanes


def in_lanes(write: Callable[[frozenset[str]], T], first_guess: Iterable[str]) -> T:
    """Run ``write`` with the lanes it needs locked, in name order.

    ``write`` gets the lanes locked and raises LanesMissing (through ``require``) when it
    finds it needs more: a record moved meanwhile, a school it moves to, a lane that holds
    a value it takes. Its savepoint is then rolled back, which gives up its locks and
    writes, and it runs again with those lanes as well. Locking every lane up front in one
    order means two writes never wait for each other.
    """
    locked = set(first_guess)
    for _ in range(LANE_LOCK_ATTEMPTS):
        try:
            with transaction.atomic():
                lock_lanes(locked)
                return write(frozenset(locked))
        except LanesMissing as missing:
            locked |= missing.lanes
    raise ConflictError(LANES_KEEP_CHANGING)


def require(needed: Iterable[str], locked: frozenset[str]) -> None:
    missing = set(needed) - locked
    if missing:
        raise LanesMissing(missing)


def lane_of(instance: models.Model) -> str:
    """The lane of a record's school; for a student, its class's."""
    return lanes.lane_of_school(school_id_of(instance))


def reload_parents(instance: models.Model) -> None:
    """Read a student's class and grade, or a class's grade, as committed now (under the lane lock).

    The caller's copies may be older than a move of that class or grade to another school:
    the record's lane and a student's school come from these.
    """
    if isinstance(instance, Student) and instance.school_class_id:
        school_class = SchoolClass.objects.select_related("grade").filter(pk=instance.school_class_id).first()
        if school_class is not None:  # else validation reports the missing class
            instance.school_class = school_class
    elif isinstance(instance, SchoolClass) and instance.grade_id:
        grade = Grade.objects.filter(pk=instance.grade_id).first()
        if grade is not None:
            instance.grade = grade


def opens_its_own_lane(instance: models.Model) -> bool:
    """A school being created has a lane nobody else can know of yet: there is nothing to lock first."""
    return lanes.by_school() and isinstance(instance, School) and instance._state.adding


def unique_values(instance: models.Model) -> set[str]:
    """The values unique across schools the record holds, as ``<kind>.<field>=<value>``.

    Normalised as the database compares them: e-mails without case.
    """
    if isinstance(instance, School):
        return {f"school.name={instance.name}"}
    if isinstance(instance, Teacher):
        return {f"teacher.email={instance.email.lower()}"}
    return set()
