"""Waking a lane: publishing the dispatch message that starts or continues its chain, at most one at a time."""

import logging

from celery import signature
from celery.exceptions import CeleryError
from django.db.models import Q
from kombu.exceptions import KombuError

from sync import lease, selectors
from sync.clock import DatabaseNow, database_now_plus
from sync.models import LaneWakeup

logger = logging.getLogger(__name__)

PUBLISH_ERRORS = (KombuError, CeleryError, OSError)
"""What a publish to the broker can raise when the broker is unreachable."""

WAKEUP_PRESUMED_LOST_SECONDS = 30
"""A wake-up on its way for longer than this is presumed lost (a broker that dropped it),
and the next kick sends another. A lane thus has at most one outstanding wake-up, however
many writes kick it while its worker is stopped."""


def kick(lane: str) -> None:
    """Wake the dispatcher for a lane, unless a live chain or a wake-up on its way will pick new work up.

    Never raises: a lost kick only delays delivery until the sweep kicks the lane (I6).
    """
    if selectors.lane_has_live_lease(lane) or not _request_wakeup(lane):
        return
    publish_dispatch(lane)


def kick_every_lane() -> None:
    """Wake every lane with due work (after an outage of the external system ended)."""
    for lane in selectors.lanes_to_sweep():
        kick(lane)


def woken(lane: str) -> None:
    """Called by a dispatch as it starts: the lane's wake-up has arrived; the next kick sends a new one."""
    LaneWakeup.objects.filter(lane_id=lane).update(requested_at=None)


def publish_dispatch(lane: str, lease_token: str | None = None, countdown: float | None = None) -> None:
    """Schedule a dispatch of the lane; if the broker is down, free the lane for the sweep.

    With ``lease_token`` the dispatch goes on under the chain's lease instead of taking one.
    """
    try:
        signature("sync.dispatch", args=(lane, lease_token) if lease_token else (lane,)).apply_async(
            countdown=countdown, retry=False
        )
    except PUBLISH_ERRORS:
        if lease_token:
            lease.release(lane, lease_token)
        elif countdown is None:
            woken(lane)  # nothing is on its way after all
        logger.warning("could not publish a dispatch for lane %s; the sweep will resume it", lane, exc_info=True)


def _request_wakeup(lane: str) -> bool:
    """Note that a wake-up is being sent; False if one is already on its way."""
    none_on_its_way = Q(requested_at__isnull=True) | Q(
        requested_at__lt=database_now_plus(-WAKEUP_PRESUMED_LOST_SECONDS)
    )
    for _ in range(2):
        if LaneWakeup.objects.filter(none_on_its_way, lane_id=lane).update(requested_at=DatabaseNow()):
            return True
        if LaneWakeup.objects.filter(lane_id=lane).exists():
            return False
        LaneWakeup.objects.bulk_create([LaneWakeup(lane_id=lane)], ignore_conflicts=True)  # the lane's first
    return False
