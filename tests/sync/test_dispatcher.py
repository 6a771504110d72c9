"""Dispatch and sweep: a lane's chain starts, and a dead or lost one is resumed (I5)."""

from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.utils import timezone

from sync import dispatcher, runs
from sync.models import DEFAULT_LANE, EntryStatus, OperationLog, SyncLane
from tests.helpers import school_entries, take_lease

pytestmark = pytest.mark.django_db


def test_dispatch_pushes_the_first_run_itself_and_chains_the_rest(simulator, monkeypatch):
    published = []
    publish = SimpleNamespace(apply_async=dict)
    monkeypatch.setattr(dispatcher, "chain", lambda *links: published.append(links) or publish)
    run = school_entries(runs.RUN_LENGTH + 1)

    dispatcher.dispatch_lane(DEFAULT_LANE)

    first_run = run[: runs.RUN_LENGTH]
    assert [a["key"] for a in simulator.applied] == [str(entry.idempotency_key) for entry in first_run]
    [links] = published
    token = SyncLane.objects.get(pk=DEFAULT_LANE).lease_token
    assert [(link.task, link.args) for link in links] == [
        ("sync.push", ([run[-1].pk], token)),
        ("sync.dispatch", (DEFAULT_LANE, token)),
    ]


def test_sweep_expires_a_dead_lease_and_reopens_its_entry(kicks):
    [entry] = school_entries()
    take_lease("dead-chain")
    OperationLog.objects.filter(pk=entry.pk).update(status=EntryStatus.IN_PROGRESS)

    assert dispatcher.sweep() == []  # the lease is still live: its chain carries on
    assert kicks == []

    SyncLane.objects.filter(pk=DEFAULT_LANE).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    assert dispatcher.sweep() == [DEFAULT_LANE]
    entry.refresh_from_db()
    assert entry.status == EntryStatus.PENDING
    assert SyncLane.objects.get(pk=DEFAULT_LANE).lease_token == ""
    assert kicks == [DEFAULT_LANE]


def test_sweep_kicks_a_lane_whose_kick_was_lost_and_leaves_idle_lanes_alone(kicks):
    SyncLane.objects.get_or_create(pk=DEFAULT_LANE)
    assert dispatcher.sweep() == []
    school_entries(1)
    assert dispatcher.sweep() == [DEFAULT_LANE]
    assert kicks == [DEFAULT_LANE]


def test_sweep_waits_for_a_backoff_to_end(kicks):
    [entry] = school_entries()
    OperationLog.objects.filter(pk=entry.pk).update(next_attempt_at=timezone.now() + timedelta(minutes=5))
    assert dispatcher.sweep() == []
    OperationLog.objects.filter(pk=entry.pk).update(next_attempt_at=timezone.now() - timedelta(seconds=1))
    assert dispatcher.sweep() == [DEFAULT_LANE]
