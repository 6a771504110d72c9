"""Waking a lane: at most one wake-up on its way per lane, however many writes kick it."""

from datetime import timedelta

import pytest
from django.utils import timezone
from kombu.exceptions import OperationalError

from sync import wakeup
from sync.models import DEFAULT_LANE, LaneWakeup, SyncLane
from tests.helpers import take_lease

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _lane():
    SyncLane.objects.get_or_create(pk=DEFAULT_LANE)


def test_kicks_send_one_wake_up_until_it_arrives(published_dispatches):
    for _ in range(5):
        wakeup.kick(DEFAULT_LANE)
    assert published_dispatches == [((DEFAULT_LANE,), None)]

    wakeup.woken(DEFAULT_LANE)  # the dispatch starts
    wakeup.kick(DEFAULT_LANE)
    assert len(published_dispatches) == 2


def test_a_live_chain_needs_no_wake_up(published_dispatches):
    take_lease()
    wakeup.kick(DEFAULT_LANE)
    assert published_dispatches == []


def test_a_wake_up_on_its_way_too_long_is_presumed_lost(published_dispatches):
    wakeup.kick(DEFAULT_LANE)
    LaneWakeup.objects.filter(lane_id=DEFAULT_LANE).update(
        requested_at=timezone.now() - timedelta(seconds=wakeup.WAKEUP_PRESUMED_LOST_SECONDS + 1)
    )
    wakeup.kick(DEFAULT_LANE)
    assert len(published_dispatches) == 2


def test_a_wake_up_the_broker_refused_is_not_waited_for(monkeypatch):
    class BrokerDown:
        def apply_async(self, **options):
            raise OperationalError("connection refused")

    monkeypatch.setattr(wakeup, "signature", lambda name, args, **kw: BrokerDown())
    wakeup.kick(DEFAULT_LANE)
    assert LaneWakeup.objects.get(lane_id=DEFAULT_LANE).requested_at is None  # the next kick tries again
