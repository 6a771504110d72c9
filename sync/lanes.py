"""Lanes: one global lane or one per school (SYNC_LANES), and the other lanes a change must follow."""

from collections.abc import Iterable

from django.conf import settings

from sync.models import DEFAULT_LANE, OperationLog, ReleasedValue
from sync.selectors import holding_statuses

SCHOOL_LANE_PREFIX = "school-"


def by_school() -> bool:
    """Whether changes are delivered in one lane per school (SYNC_LANES=school)."""
    return settings.SYNC_LANES == "school"


def lane_of_school(school_id: int | None) -> str:
    """The lane a change to this school's records goes to, in the configured mode.

    A school being created has no id yet: only the global lane can be named for it.
    """
    return f"{SCHOOL_LANE_PREFIX}{school_id}" if by_school() else DEFAULT_LANE


def releasing(values: Iterable[str]) -> set[str]:
    """The lanes of entries not yet delivered that gave up any of these values (school lanes only).

    A change that takes such a value must follow them: it holds a slot in each of those lanes.
    """
    values = list(values)
    if not values or not by_school():
        return set()
    released = ReleasedValue.objects.filter(key__in=values, entry__status__in=holding_statuses())
    return set(released.values_list("entry__lane_id", flat=True))


def switched_from(lane: str) -> set[str]:
    """After SYNC_LANES was changed: the lanes of the other mode with entries of their own not yet delivered.

    A new entry holds a slot in each, so nothing recorded after the change is sent before
    everything recorded before it. (Once those lanes have drained, this is empty again.)
    """
    open_entries = OperationLog.objects.filter(status__in=holding_statuses())
    if lane == DEFAULT_LANE:
        other_mode = open_entries.exclude(lane_id=DEFAULT_LANE)  # the index operationlog_open_not_global
    else:
        other_mode = open_entries.filter(lane_id=DEFAULT_LANE)
    return set(other_mode.order_by().values_list("lane_id", flat=True).distinct())
