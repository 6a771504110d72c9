"""Waking a lane: publishing the dispatch message that starts or continues its chain."""

import logging

from celery import signature
from celery.exceptions import CeleryError
from django.utils import timezone
from kombu.exceptions import KombuError

from sync import lease, selectors

logger = logging.getLogger(__name__)

PUBLISH_ERRORS = (KombuError, CeleryError, OSError)
"""What a publish to the broker can raise when the broker is unreachable."""


def kick(lane: str) -> None:
    """Wake the dispatcher for a lane, unless a live chain will pick new work up itself.

    Never raises: a lost kick only delays delivery until the sweep kicks the lane (I6).
    """
    if selectors.lane_has_live_lease(lane, timezone.now()):
        return
    publish_dispatch(lane)


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
        logger.warning("could not publish a dispatch for lane %s; the sweep will resume it", lane, exc_info=True)
