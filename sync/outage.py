"""When the external system fails across lanes: every lane holds, and one probe at a time finds out when it is back."""

import logging

from django.conf import settings
from django.db.models import Q

from sync import wakeup
from sync.backoff import backoff_seconds
from sync.client import PushResult
from sync.clock import DatabaseNow, database_now_plus
from sync.models import EntryStatus, ExternalOutage, OperationLog, Outcome

logger = logging.getLogger(__name__)

FAILURES_IN_A_ROW = 3
"""Transient failures in a row, with no answer in between, that make an outage ..."""
FROM_LANES = 2
"""... when they came from at least this many lanes (one lane's failures are that lane's backoff)."""
OUTAGE = 1  # the primary key of the one row


def may_send(lane: str) -> bool:
    """Whether a run of this lane may call the external system now: no outage, or it takes the probe."""
    held = ExternalOutage.objects.filter(pk=OUTAGE, held_until__isnull=False)
    if not held.exists():
        return True
    # The probe is free, ran out, or this lane's already (a run of it that sent nothing).
    probe_free = Q(probe_lane="") | Q(probe_lane=lane) | Q(probe_expires_at__lte=DatabaseNow())
    took_probe = held.filter(probe_free, held_until__lte=DatabaseNow()).update(
        probe_lane=lane, probe_expires_at=database_now_plus(settings.SYNC_HTTP_TIMEOUT + settings.SYNC_LEASE_SECONDS)
    )
    if took_probe:
        logger.info("external system failing across lanes: lane %s sends a probe", lane)
    return bool(took_probe)


def note(lane: str, result: PushResult) -> tuple[bool, bool]:
    """Count a send's outcome; call it in the transaction that records the send.

    Returns (held, ended): whether lanes hold now, and whether this answer ended an outage
    (the caller wakes every lane then).
    """
    state = ExternalOutage.objects.filter(pk=OUTAGE).values("failures_in_a_row", "held_until").first()
    if result.outcome != Outcome.TRANSIENT:  # the system answered: whatever was failing is over
        if state is None or not (state["failures_in_a_row"] or state["held_until"]):
            return False, False
        ExternalOutage.objects.filter(pk=OUTAGE).update(
            failures_in_a_row=0,
            failing_lanes=[],
            started_at=None,
            held_until=None,
            probes_failed=0,
            probe_lane="",
            probe_expires_at=None,
        )
        if state["held_until"] is not None:
            logger.info("external system answered again: every lane resumes")
        return False, state["held_until"] is not None
    return _note_failure(lane), False


def _note_failure(lane: str) -> bool:
    outage, _ = ExternalOutage.objects.select_for_update().get_or_create(pk=OUTAGE)
    failing_lanes = sorted({*outage.failing_lanes, lane})
    change: dict = {"failures_in_a_row": outage.failures_in_a_row + 1, "failing_lanes": failing_lanes}
    if outage.held_until is not None:
        if outage.probe_lane == lane:  # the probe failed: the next one waits longer
            change |= {
                "probes_failed": outage.probes_failed + 1,
                "held_until": _next_probe(outage.probes_failed + 1),
                "probe_lane": "",
                "probe_expires_at": None,
            }
    elif change["failures_in_a_row"] >= FAILURES_IN_A_ROW and len(failing_lanes) >= FROM_LANES:
        change |= {"started_at": DatabaseNow(), "held_until": _next_probe(0)}
        logger.warning(
            "external system failing across lanes (%s failures in a row from %s): every lane holds",
            change["failures_in_a_row"],
            ", ".join(failing_lanes),
        )
    ExternalOutage.objects.filter(pk=OUTAGE).update(**change)
    return outage.held_until is not None or "held_until" in change


def _next_probe(probes_failed: int):
    """When the next probe may go, in the database's clock: the retry backoff after so many failed probes."""
    delay = backoff_seconds(
        probes_failed + 1, base=settings.SYNC_RETRY_BASE_SECONDS, cap=settings.SYNC_RETRY_MAX_SECONDS
    )
    return database_now_plus(delay)


def after_outage() -> None:
    """Run after the commit that ended an outage: every lane resumes now, entries waiting for
    their own next attempt too. (After the commit, and in commits of their own, so that no
    transaction holds the outage row while it waits for entries a claim has locked.)"""
    OperationLog.objects.filter(status=EntryStatus.PENDING, next_attempt_at__isnull=False).update(next_attempt_at=None)
    wakeup.kick_every_lane()


def probe_due() -> bool | None:
    """None without an outage; otherwise whether a probe may go now (for the sweep)."""
    held = ExternalOutage.objects.filter(pk=OUTAGE, held_until__isnull=False)
    if not held.exists():
        return None
    return held.filter(held_until__lte=DatabaseNow()).exists()
