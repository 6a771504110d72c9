"""The cap on external calls in flight across all lanes (SYNC_MAX_IN_FLIGHT), kept with PostgreSQL advisory locks."""

import time
from collections.abc import Iterator
from contextlib import contextmanager

from django.conf import settings
from django.db import connection

ADVISORY_LOCK_SPACE = 0x5379_6E63  # "Sync": the first key of every advisory lock taken here
"""Advisory locks are keyed by two integers; this one keeps ours apart from any other user's."""

POLL_SECONDS = 0.05
"""How often a call waiting for a free slot looks again."""


@contextmanager
def call_slot(wait_until: float) -> Iterator[bool]:
    """Hold one of the SYNC_MAX_IN_FLIGHT call slots for the block; yields False if none came free in time.

    A slot is a session advisory lock: PostgreSQL frees it when the holder's connection
    ends, so a killed worker never keeps one. Without a cap (0), or on a database without
    advisory locks (SQLite, which runs one worker anyway), every call may go at once.
    ``wait_until`` is a ``time.monotonic()`` deadline.
    """
    cap = settings.SYNC_MAX_IN_FLIGHT
    if not cap or connection.vendor != "postgresql":
        yield True
        return
    slot = _take_slot(cap)
    while slot is None and time.monotonic() < wait_until:
        time.sleep(POLL_SECONDS)
        slot = _take_slot(cap)
    if slot is None:
        yield False
        return
    try:
        yield True
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [ADVISORY_LOCK_SPACE, slot])


def _take_slot(cap: int) -> int | None:
    with connection.cursor() as cursor:
        for slot in range(cap):
            cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [ADVISORY_LOCK_SPACE, slot])
            if cursor.fetchone()[0]:
                return slot
    return None
