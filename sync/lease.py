"""The lane lease: which chain may push a lane, and until when (I7, I8); every change of it happens here."""

import logging
import os
import socket
import threading
import time

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import Q
from django.utils import timezone

from sync.clock import DatabaseNow, database_now_plus
from sync.models import EntryStatus, OperationLog, SyncLane

logger = logging.getLogger(__name__)

_holder = f"{socket.gethostname()}:{os.getpid()}"

RELEASED = {"lease_token": "", "lease_expires_at": None, "lease_holder": ""}
"""A lane's lease fields while no chain holds it."""

RENEWALS_PER_LEASE = 3
"""While a call is in flight the lease is renewed this many times per SYNC_LEASE_SECONDS, so a
live chain keeps it through a slow call and a dead one loses it within one lease."""


def held_until():
    """The expiry of a lease taken or renewed now, in the database's clock.

    Every time a lease is written or compared comes from the database, so hosts whose
    clocks disagree cannot see two owners. Write it only once the lane's row is locked
    (``hold``): PostgreSQL computes an UPDATE's new values before it waits for a row lock,
    so after a long wait an expiry computed in the same statement would already be past.
    """
    return database_now_plus(settings.SYNC_LEASE_SECONDS)


def name_holder(name: str) -> None:
    """Name the leases this process takes after its worker: its Celery node name and queues."""
    global _holder
    _holder = name


def holder() -> str:
    """The name this process's chains write on the leases they hold."""
    return _holder


def live() -> Q:
    """Lanes whose lease is held and not yet expired."""
    return ~Q(lease_token="") & Q(lease_expires_at__gt=DatabaseNow())


@transaction.atomic
def acquire(lane: str, token: str) -> bool:
    """Take a free or expired lease; entries left in progress by an expired owner become pending.

    A free lease has nothing in progress: a chain records its run in the commit that
    releases the lease, and whoever ends an expired lease reopens its chain's entries.
    """
    if not SyncLane.objects.select_for_update().filter(pk=lane).exists():
        return False
    lanes = SyncLane.objects.filter(pk=lane)
    held = {"lease_token": token, "lease_expires_at": held_until(), "lease_holder": _holder}
    if lanes.filter(lease_token="").update(**held):
        return True
    if not lanes.filter(lease_expires_at__lte=DatabaseNow()).update(**held):
        return False
    reopen(lane)
    return True


@transaction.atomic
def renew(token: str) -> bool:
    """Extend the lease this token holds; False if it has been taken over.

    Tokens are unique per chain, so the token alone names its lane.
    """
    lane = SyncLane.objects.select_for_update().filter(lease_token=token).values_list("pk", flat=True).first()
    if lane is None:
        return False
    # A chain's links may run on any sync worker: the holder is whoever renewed it last.
    return bool(SyncLane.objects.filter(pk=lane).update(lease_expires_at=held_until(), lease_holder=_holder))


def hold(lane: str, token: str) -> bool | None:
    """Lock the lane's row for the rest of the transaction, if this token still holds its lease.

    Returns None when the lease is no longer this token's, otherwise whether an operator
    paused the lane. For a write that is only right while the lease is ours; the lease
    cannot change hands until the transaction ends.
    """
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("lease.hold() must run inside the transaction that depends on the lease.")
    return (
        SyncLane.objects.select_for_update().filter(pk=lane, lease_token=token).values_list("paused", flat=True).first()
    )


def release(lane: str, token: str) -> None:
    """Free the lane, if this token still holds it."""
    SyncLane.objects.filter(pk=lane, lease_token=token).update(**RELEASED)


def renewal_interval() -> float:
    """How often a live chain renews its lease while a call is in flight."""
    return settings.SYNC_LEASE_SECONDS / RENEWALS_PER_LEASE


def any_held_by(holder: str) -> bool:
    return SyncLane.objects.filter(lease_holder=holder).exclude(lease_token="").exists()


@transaction.atomic
def release_held_by(holder: str) -> list[str]:
    """End the leases a worker of this name held before it restarted, and reopen their entries.

    Called when a worker starts: its predecessor of the same name is gone (worker names are
    unique), so its chains are dead and their lanes need not wait for the leases to expire.
    A lease renewed within the last renewal interval is left alone: a live chain holds it.
    """
    stale = Q(lease_expires_at__lt=database_now_plus(settings.SYNC_LEASE_SECONDS - renewal_interval()))
    lanes = list(SyncLane.objects.select_for_update().filter(stale, lease_holder=holder).exclude(lease_token=""))
    for lane in lanes:
        SyncLane.objects.filter(pk=lane.pk).update(**RELEASED)
        reopen(lane.pk)
    return [lane.pk for lane in lanes]


@transaction.atomic
def expire(lane: str) -> bool:
    """End the lane's lease if it ran out unrenewed, and reopen what its chain left in progress."""
    expired = SyncLane.objects.filter(pk=lane, lease_expires_at__lte=DatabaseNow()).exclude(lease_token="")
    if not expired.update(**RELEASED):
        return False
    reopen(lane)
    return True


def reopen(lane: str) -> None:
    """Make the lane's in-progress entries pending again; call only once its lease has ended.

    Only a lease holder pushes, so with the lease gone these pushes are dead; they are sent
    again with the same idempotency key, which the external system deduplicates (I4). A run
    sends in sequence and records each send, so its first entry still in progress is the
    one whose call may have been under way: that one may have been applied.
    """
    in_progress = OperationLog.objects.filter(lane_id=lane, status=EntryStatus.IN_PROGRESS)
    first = in_progress.order_by("sequence").values_list("pk", flat=True).first()
    if first is None:
        return
    OperationLog.objects.filter(pk=first).update(maybe_applied=True)
    in_progress.update(status=EntryStatus.PENDING, updated_at=timezone.now())


class Keeper:
    """Renews a chain's lease from a thread of its own while the ``with`` block runs, within reason.

    The block is a run whose calls may each take up to the HTTP timeout; a live chain
    keeps its lease through them, while a dead one's runs out within SYNC_LEASE_SECONDS.
    It stops renewing once the run has taken longer than a run can (SYNC_RUN_SECONDS plus
    one HTTP timeout): a worker stuck outside the call's deadline then loses the lane too.
    """

    def __init__(self, token: str):
        self.token = token
        self._interval = renewal_interval()
        self._renewed_at = time.monotonic()  # the claim that started the run renewed it
        self._renew_until = self._renewed_at + settings.SYNC_RUN_SECONDS + settings.SYNC_HTTP_TIMEOUT
        self._lost = False
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._keep, name=f"lease-{token[:8]}", daemon=True)

    def __enter__(self) -> "Keeper":
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._done.set()
        self._thread.join()

    def holds(self) -> bool:
        """Whether the lease is surely still ours: renewed within the last two thirds of a lease."""
        return not self._lost and time.monotonic() - self._renewed_at < settings.SYNC_LEASE_SECONDS - self._interval

    def _keep(self) -> None:
        try:
            while not self._done.wait(self._interval) and time.monotonic() < self._renew_until:
                try:
                    if not renew(self.token):
                        self._lost = True
                        return
                    self._renewed_at = time.monotonic()
                except DatabaseError:
                    logger.warning("could not renew lease %s; trying again", self.token, exc_info=True)
                    connection.close()
        finally:
            connection.close()  # this thread's own connection
