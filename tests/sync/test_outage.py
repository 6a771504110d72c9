"""An outage across lanes: every lane holds, one probe at a time, and all resume on the first answer."""

from datetime import timedelta

import pytest
from django.utils import timezone

from sync import dispatcher, outage, runs
from sync.models import EntryStatus, ExternalOutage, OperationLog
from sync.runs import RunResult
from tests.factories import SchoolFactory
from tests.helpers import lane_of, take_lease

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _school_lanes(settings):
    settings.SYNC_LANES = "school"


def push(school) -> RunResult:
    lane = lane_of(school)
    ids = list(OperationLog.objects.filter(lane_id=lane, status=EntryStatus.PENDING).values_list("pk", flat=True))
    return runs.push_run(ids, take_lease(token=f"chain-{lane}-{timezone.now().timestamp()}", lane=lane))


def open_outage(simulator, schools):
    """Three transient failures in a row from three lanes."""
    simulator.configure(script=["error"] * outage.FAILURES_IN_A_ROW)
    return [push(school) for school in schools]


def make_probe_due():
    ExternalOutage.objects.update(held_until=timezone.now() - timedelta(seconds=1))


def test_failures_in_a_row_from_several_lanes_hold_every_lane_without_spending_attempts(
    simulator, published_dispatches
):
    failing = [SchoolFactory() for _ in range(outage.FAILURES_IN_A_ROW)]
    bystander = SchoolFactory()

    results = open_outage(simulator, failing)

    assert results[:-1] == [RunResult.RETRY_LATER] * (len(failing) - 1)
    assert results[-1] == RunResult.RETRY_LATER  # its own failure, and the one that started the outage
    assert ExternalOutage.objects.get().held_until is not None
    requests = simulator.requests
    assert push(bystander) == RunResult.HELD  # a lane that never failed holds too
    assert simulator.requests == requests
    assert OperationLog.objects.get(lane_id=lane_of(bystander)).attempt_count == 0


def test_one_lane_failing_alone_holds_no_other_lane(simulator, published_dispatches, settings):
    settings.SYNC_RETRY_BASE_SECONDS = 0
    settings.SYNC_RETRY_MAX_SECONDS = 0
    school, other = SchoolFactory(), SchoolFactory()
    simulator.configure(script=["error"] * outage.FAILURES_IN_A_ROW)
    for _ in range(outage.FAILURES_IN_A_ROW):
        assert push(school) == RunResult.RETRY_LATER
    assert push(other) == RunResult.SENT


def test_one_probe_at_a_time_and_every_lane_resumes_on_its_success(
    simulator, published_dispatches, kicks, django_capture_on_commit_callbacks
):
    schools = [SchoolFactory() for _ in range(outage.FAILURES_IN_A_ROW)]
    open_outage(simulator, schools)
    OperationLog.objects.update(next_attempt_at=timezone.now() + timedelta(minutes=5))  # their own backoffs

    assert not outage.may_send(lane_of(schools[0]))  # the probe is not due yet
    make_probe_due()
    assert outage.may_send(lane_of(schools[0]))  # this lane probes ...
    assert not outage.may_send(lane_of(schools[1]))  # ... and no other at the same time
    assert outage.may_send(lane_of(schools[0]))  # (its next run may, should the first have sent nothing)
    ExternalOutage.objects.update(probe_lane="")  # (that probe was never sent)

    OperationLog.objects.filter(lane_id=lane_of(schools[1])).update(next_attempt_at=None)
    with django_capture_on_commit_callbacks(execute=True):
        assert push(schools[1]) == RunResult.SENT  # the probe gets through

    assert ExternalOutage.objects.get().held_until is None
    assert not OperationLog.objects.filter(status=EntryStatus.PENDING, next_attempt_at__isnull=False).exists()
    assert set(kicks) >= {lane_of(school) for school in schools if school != schools[1]}  # every held lane wakes


def test_a_failed_probe_waits_longer_before_the_next(simulator, published_dispatches):
    schools = [SchoolFactory() for _ in range(outage.FAILURES_IN_A_ROW)]
    open_outage(simulator, schools)
    OperationLog.objects.update(next_attempt_at=None)
    make_probe_due()
    simulator.configure(script=["error"])

    assert push(schools[0]) == RunResult.RETRY_LATER  # the probe fails

    state = ExternalOutage.objects.get()
    assert (state.probes_failed, state.probe_lane) == (1, "")
    assert state.held_until > timezone.now()


def test_the_sweep_wakes_one_lane_for_the_probe_and_none_before(simulator, published_dispatches, kicks):
    schools = [SchoolFactory() for _ in range(outage.FAILURES_IN_A_ROW + 1)]
    open_outage(simulator, schools[:-1])
    OperationLog.objects.update(next_attempt_at=None)

    assert dispatcher.sweep() == []
    make_probe_due()
    assert len(dispatcher.sweep()) == 1
