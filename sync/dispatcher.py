"""Dispatch and sweep: start each lane's chain of runs, and resume lanes whose chain died (I5, I8)."""

import logging
import time
import uuid

from celery import chain, signature
from django.db import transaction
from django.utils import timezone

from sync import lease, outage, runs, selectors, wakeup

logger = logging.getLogger(__name__)

CHAIN_LENGTH = 100
"""Entries per chain. A chain message carries the rest of the chain, so very long chains
cost more per link; a bounded chain ends in a dispatch that starts the next one."""


def dispatch_lane(lane: str, lease_token: str | None = None) -> None:
    """Start (or, with the chain's token, continue) pushing a lane's due entries.

    Takes the lease, pushes the first run itself and chains the rest,
    ``push(run2) | … | push(runN) | dispatch``. A run that stops (a failure, a lost lease,
    out of time) ends the chain; the dispatch it schedules, or the sweep if that message
    is lost, resumes the lane.
    """
    if lease_token is None:
        lease_token = uuid.uuid4().hex
        with transaction.atomic():  # one commit: this dispatch is the wake-up that was on its way
            wakeup.woken(lane)
            if not lease.acquire(lane, lease_token):
                return  # a live chain owns the lane
    elif not lease.renew(lease_token):
        return  # our lease expired and another chain took over

    entry_ids = selectors.due_entries(lane, timezone.now(), CHAIN_LENGTH)
    if not entry_ids:
        lease.release(lane, lease_token)
        # Reached another lane's two-slot entry: its own lane may send it now.
        for waiting in selectors.lanes_waited_for(lane):
            wakeup.kick(waiting)
        # A writer that committed while we held the lease skipped its kick; look once more.
        if selectors.has_due_work(lane, timezone.now()):
            dispatch_lane(lane)
        return

    batches = [entry_ids[start : start + runs.RUN_LENGTH] for start in range(0, len(entry_ids), runs.RUN_LENGTH)]
    # The first run goes out in this task: on an idle lane, no second message before the send.
    if not runs.push_run(batches[0], lease_token).chain_goes_on:
        return
    links = [signature("sync.push", args=(batch, lease_token), immutable=True) for batch in batches[1:]]
    links.append(signature("sync.dispatch", args=(lane, lease_token), immutable=True))
    try:
        chain(*links).apply_async()
    except wakeup.PUBLISH_ERRORS:
        lease.release(lane, lease_token)
        raise


def sweep() -> list[str]:
    """Expire stale leases and kick every lane that has due work and no live chain (I5, I7).

    While the external system fails across lanes, it kicks one lane once a probe is due.
    """
    kicked: list[str] = []
    probe = outage.probe_due()  # None: no outage; False: lanes hold, no probe yet; True: one lane probes
    for lane in selectors.lanes_to_sweep():
        lease.expire(lane)
        if selectors.lane_has_live_lease(lane) or (probe is not None and (not probe or kicked)):
            continue  # a live chain carries on by itself; while lanes hold, one lane at most sends the probe
        if selectors.has_due_work(lane, timezone.now()):
            wakeup.kick(lane)
            kicked.append(lane)
    return kicked


def resume_after_restart(worker: str) -> list[str]:
    """What a worker does as it starts: end the leases its dead predecessor held, then sweep.

    A killed worker's lanes thus resume as soon as it is back, not when their leases expire.
    """
    if lease.any_held_by(worker):
        # Wait one renewal interval: a lease still renewed after it is a live chain's (two
        # workers by mistake under one name), not a dead predecessor's.
        time.sleep(lease.renewal_interval())
    released = lease.release_held_by(worker)
    if released:
        logger.info("worker %s resumed lanes its predecessor held: %s", worker, ", ".join(released))
    return sweep()
