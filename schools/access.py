"""Who may act on which school: memberships, district staff, querysets narrowed to a user's schools,
and the object permissions (django-rules) that hold a model permission to those schools.

A user acts on a school's records only as a member of that school (``SchoolMembership``)
or with ``schools.access_all_schools`` (district staff; superusers have every permission).
What they may do there is Django's model permissions, reads included (``view_``).
"""

from collections.abc import Iterable

import rules
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.models import AnonymousUser, User
from django.db import models
from django.db.models import Q

from schools.models import (
    Grade,
    RecordImport,
    ScheduledChange,
    School,
    SchoolClass,
    SchoolMembership,
    Student,
    Teacher,
    school_id_of,
)
from sync.lanes import SCHOOL_LANE_PREFIX
from sync.models import OperationLog, SyncLane

ACCESS_ALL_SCHOOLS = "schools.access_all_schools"

CANCEL_SCHEDULED_CHANGE = "schools.cancel_scheduledchange"
NEW_SCHOOL_NEEDS_DISTRICT = "Only district staff (schools.access_all_schools) may create a school."

SCHOOL_ID_PATHS: dict[type[models.Model], str] = {
    School: "pk",
    Grade: "school_id",
    SchoolClass: "grade__school_id",
    Teacher: "school_id",
    Student: "school_id",
    ScheduledChange: "school_id",
    SchoolMembership: "school_id",
    RecordImport: "school_id",
}
"""How each model reaches the id of the school it belongs to, for a queryset filter."""

_CACHE_ATTRIBUTE = "_member_school_ids"

AnyUser = User | AnonymousUser


def school_ids(user: AnyUser) -> frozenset[int] | None:
    """The schools the user may act on; None: every school (district staff)."""
    if not user.is_active:
        return frozenset()
    if user.has_perm(ACCESS_ALL_SCHOOLS):
        return None
    cached = getattr(user, _CACHE_ATTRIBUTE, None)
    if cached is None:
        # Read once per user object, as Django caches its permissions: once per request.
        cached = frozenset(SchoolMembership.objects.filter(user_id=user.pk).values_list("school_id", flat=True))
        setattr(user, _CACHE_ATTRIBUTE, cached)
    return cached


def may_access(user: AnyUser, school_ids_wanted: Iterable[int | None]) -> bool:
    """Whether the user may act on every one of these schools (None: a school not created yet)."""
    allowed = school_ids(user)
    if allowed is None:
        return True
    return all(school_id is not None and school_id in allowed for school_id in school_ids_wanted)


def scoped(queryset: models.QuerySet, user: AnyUser) -> models.QuerySet:
    """The rows of the queryset that belong to the user's schools.

    Operation log entries belong to the school of their record and, for a move, to the one
    it left; lanes are the schools' lanes (the global lane is the district's).
    """
    allowed = school_ids(user)
    if allowed is None:
        return queryset
    if queryset.model is OperationLog:
        return queryset.filter(Q(school_id__in=allowed) | Q(other_school_id__in=allowed))
    if queryset.model is SyncLane:
        return queryset.filter(name__in=[f"{SCHOOL_LANE_PREFIX}{school_id}" for school_id in allowed])
    return queryset.filter(**{f"{SCHOOL_ID_PATHS[queryset.model]}__in": allowed})


# --- Object permissions ----------------------------------------------------------------
# Registered under the model permissions' own names: without an object Django's
# ModelBackend answers as always; for a record, the model permission holds only within
# the user's schools. The model permission is asked of ModelBackend directly, since
# asking the user again would come back here.

_model_backend = ModelBackend()

RECORD_MODELS = ["school", "grade", "schoolclass", "teacher", "student", "scheduledchange", "schoolmembership"]
ACTIONS = ["view", "add", "change", "delete"]


@rules.predicate
def in_users_schools(user: AnyUser, record: models.Model | None) -> bool:
    if record is None:
        return False
    return may_access(user, [school_id_of_any(record)])


@rules.predicate
def created_it(user: AnyUser, change: ScheduledChange | None) -> bool:
    return change is not None and user.is_active and change.created_by_id == user.pk


def school_id_of_any(record: models.Model) -> int | None:
    """The school of a record, a scheduled change or a membership."""
    if isinstance(record, ScheduledChange):
        return record.school_id
    return school_id_of(record)


def _model_permission(codename: str) -> rules.Predicate:
    return rules.Predicate(lambda user: _model_backend.has_perm(user, codename), name=f"model:{codename}")


for _model in RECORD_MODELS:
    for _action in ACTIONS:
        _codename = f"schools.{_action}_{_model}"
        rules.add_perm(_codename, _model_permission(_codename) & in_users_schools)

rules.add_perm(
    CANCEL_SCHEDULED_CHANGE,
    created_it | (_model_permission("schools.delete_scheduledchange") & in_users_schools),
)
"""Only its creator, or a user who may delete that school's scheduled changes, may cancel a change."""
