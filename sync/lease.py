"""The lane lease: which chain may push a lane, and until when (I7, I8); every change of it happens here."""

from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from sync.models import EntryStatus, OperationLog, SyncLane


def expires_at() -> datetime:
    """When a lease taken or renewed now runs out."""
    return timezone.now() + timedelta(seconds=settings.SYNC_LEASE_SECONDS)


@transaction.atomic
def acquire(lane: str, token: str) -> bool:
    """Take a free or expired lease; entries left in progress by an expired owner become pending.

    A free lease has nothing in progress: a chain records its run in the commit that
    releases the lease, and the sweep reopens a dead chain's entries as it expires its lease.
    """
    lanes = SyncLane.objects.filter(pk=lane)
    held = {"lease_token": token, "lease_expires_at": expires_at()}
    if lanes.filter(lease_token="").update(**held):
        return True
    if not lanes.filter(lease_expires_at__lte=timezone.now()).update(**held):
        return False
    reopen(lane)
    return True


def renew(token: str) -> bool:
    """Extend the lease this token holds; False if it has been taken over.

    Tokens are unique per chain, so the token alone names its lane.
    """
    return bool(SyncLane.objects.filter(lease_token=token).update(lease_expires_at=expires_at()))


def release(lane: str, token: str) -> None:
    """Free the lane, if this token still holds it."""
    SyncLane.objects.filter(pk=lane, lease_token=token).update(lease_token="", lease_expires_at=None)


@transaction.atomic
def expire(lane: str, token: str) -> bool:
    """End a lease that ran out unrenewed, and reopen what its chain left in progress."""
    expired = SyncLane.objects.filter(pk=lane, lease_token=token, lease_expires_at__lte=timezone.now())
    if not expired.update(lease_token="", lease_expires_at=None):
        return False
    reopen(lane)
    return True


def reopen(lane: str) -> None:
    """Make the lane's in-progress entries pending again; call only once its lease has ended.

    Only a lease holder pushes, so with the lease gone these pushes are dead; they are sent
    again with the same idempotency key, which the external system deduplicates (I4).
    """
    OperationLog.objects.filter(lane_id=lane, status=EntryStatus.IN_PROGRESS).update(
        status=EntryStatus.PENDING, updated_at=timezone.now()
    )
