"""Wake-ups: Celery ETA messages, one per slot, that start a runner when scheduled changes come due."""

import logging
from collections.abc import Iterable
from datetime import datetime

from celery import signature
from django.core.cache import cache

from sync.wakeup import PUBLISH_ERRORS

logger = logging.getLogger(__name__)

WAKEUP_SLOT_SECONDS = 0.1
"""Changes due in the same slot share one wake-up message."""

WAKEUP_HORIZON_SECONDS = 60
"""ETA messages only for changes due this soon; the sweep sends the rest as they come near."""


def _slot(moment: datetime) -> datetime:
    """The end of the wake-up slot a moment falls in."""
    seconds = moment.timestamp()
    end = (int(seconds / WAKEUP_SLOT_SECONDS) + 1) * WAKEUP_SLOT_SECONDS
    return datetime.fromtimestamp(end, tz=moment.tzinfo)


def wake_at(moments: Iterable[datetime]) -> None:
    """Send one run_due message per slot, at the slot's end; duplicates are harmless."""
    for slot in sorted({_slot(moment) for moment in moments}):
        key = f"schools:wakeup:{slot.timestamp():.1f}"
        try:
            if not cache.add(key, 1, timeout=WAKEUP_HORIZON_SECONDS * 3):
                continue  # another writer already sent this slot's wake-up
        except Exception:
            logger.warning("wake-up cache unavailable; sending anyway", exc_info=True)
        try:
            signature("schools.run_due_changes").apply_async(eta=slot, retry=False)
        except PUBLISH_ERRORS:
            logger.warning("could not publish a wake-up for %s; the sweep will run it", slot, exc_info=True)
            cache.delete(key)  # so that the sweep's wake-up for this slot is not skipped
