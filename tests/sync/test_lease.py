"""The lane lease: one holder at a time until it expires (I8)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from sync import lease
from sync.models import DEFAULT_LANE, SyncLane

pytestmark = pytest.mark.django_db


def test_only_one_lease_at_a_time_until_it_expires(settings):
    SyncLane.objects.get_or_create(pk=DEFAULT_LANE)
    assert lease.acquire(DEFAULT_LANE, "a")
    assert not lease.acquire(DEFAULT_LANE, "b")
    assert lease.renew("a")
    assert not lease.renew("b")

    SyncLane.objects.filter(pk=DEFAULT_LANE).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    assert lease.acquire(DEFAULT_LANE, "b")
    assert not lease.renew("a")
