"""The lanes a write to school records locks and holds slots in: its school's, and those it must follow."""

from collections.abc import Callable, Iterable
from typing import TypeVar

from django.db import OperationalError, connection, models, transaction

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
LANE_WAIT_SECONDS = 20
"""How long a write waits for its lanes — behind an import, which holds its school's lane
while it writes — before it is refused; below the web server's 30 s timeout."""
LANES_BUSY = (
    "The school's records are being written by a long operation (an import); nothing was changed. "
    "Try again in a minute."
)
LOCK_NOT_AVAILABLE = "55P03"  # PostgreSQL's lock_timeout


class LanesBusyError(ConflictError):
    """A write waited LANE_WAIT_SECONDS for its lanes and gave up."""


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
                _wait_at_most(LANE_WAIT_SECONDS)
                lock_lanes(locked)
                return write(frozenset(locked))
        except LanesMissing as missing:
            locked |= missing.lanes
        except OperationalError as exc:
            if getattr(exc.__cause__, "sqlstate", None) == LOCK_NOT_AVAILABLE:
                raise LanesBusyError(LANES_BUSY) from exc
            raise
    raise ConflictError(LANES_KEEP_CHANGING)


def _wait_at_most(seconds: float) -> None:
    """Lock waits of the rest of this transaction end after ``seconds`` (PostgreSQL; SQLite has its own timeout)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT set_config('lock_timeout', %s, true)", [f"{int(seconds * 1000)}ms"])


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
