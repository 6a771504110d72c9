"""Lane names: one global lane, or one lane per school (SYNC_LANES)."""

from django.conf import settings

from sync.models import DEFAULT_LANE

SCHOOL_LANE_PREFIX = "school-"


def by_school() -> bool:
    """Whether changes are delivered in one lane per school (SYNC_LANES=school)."""
    return settings.SYNC_LANES == "school"


def lane_of_school(school_id: int) -> str:
    """The lane a change to this school's records goes to, in the configured mode."""
    return f"{SCHOOL_LANE_PREFIX}{school_id}" if by_school() else DEFAULT_LANE
