"""Property: whatever the interleaving of writes, moves, failures and kills across schools, the
external system sees each lane in order and each record's changes in the order they were made."""

import uuid
from collections import defaultdict

import pytest
from django.db import transaction
from django.utils import timezone
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from schools.models import SchoolClass, Student, Teacher
from schools.services import record_delete, record_update, student_create, teacher_create
from sync import lease, runs, selectors, services
from sync.models import EntryStatus, OperationLog, SyncLane
from tests.factories import SchoolClassFactory
from tests.helpers import deliver_round_robin

pytestmark = pytest.mark.django_db

SCHOOLS = 3
EMAILS = 2  # few, so that a teacher's e-mail given up in one school is often taken in another

steps = st.lists(
    st.one_of(
        st.tuples(st.just("write"), st.integers(0, SCHOOLS - 1)),
        st.tuples(st.just("move"), st.integers(0, 20), st.integers(0, SCHOOLS - 1)),
        st.tuples(st.just("push"), st.integers(0, SCHOOLS - 1)),
        st.tuples(st.just("fail"), st.sampled_from(["error", "reject", "lost_response"])),
        st.tuples(st.just("kill"), st.integers(0, SCHOOLS - 1)),
        st.tuples(st.just("hire"), st.integers(0, SCHOOLS - 1), st.integers(0, EMAILS - 1)),
        st.tuples(st.just("let_go"), st.integers(0, EMAILS - 1)),
    ),
    max_size=30,
)


@pytest.fixture
def school_lanes(settings, simulator):
    settings.SYNC_LANES = "school"
    settings.SYNC_RETRY_BASE_SECONDS = 0  # a transient failure is due again at once
    settings.SYNC_RETRY_MAX_SECONDS = 0
    return simulator


def push_once(lane: str) -> None:
    """One run of a lane, as a chain link would make it."""
    token = uuid.uuid4().hex
    if lease.acquire(lane, token):
        due = selectors.due_entries(lane, timezone.now(), runs.RUN_LENGTH)
        if due:
            runs.push_run(due, token)
        lease.release(lane, token)


def kill_mid_run(lane: str) -> None:
    """A worker killed after the external system got the run's first entry, before it was recorded."""
    token = uuid.uuid4().hex
    if not lease.acquire(lane, token):
        return
    due = selectors.due_entries(lane, timezone.now(), runs.RUN_LENGTH)
    if due:
        refusal, run = runs.claim_run(due, token)
        if refusal is None:
            runs.send(run[0])
    SyncLane.objects.filter(pk=lane).update(lease_expires_at=timezone.now())
    lease.expire(lane)  # the sweep finds the lease unrenewed and reopens the run


def run_steps(simulator, classes: list[SchoolClass], plan) -> None:
    lanes = [f"school-{school_class.grade.school_id}" for school_class in classes]
    for step in plan:
        kind = step[0]
        if kind == "write":
            student_create(
                school_class=classes[step[1]], first_name="A", last_name="B", student_number=uuid.uuid4().hex[:12]
            )
        elif kind == "move":
            students = list(Student.objects.order_by("pk"))
            if students:
                student = students[step[1] % len(students)]
                record_update(instance=student, data={"school_class": classes[step[2]]})
        elif kind == "push":
            push_once(lanes[step[1]])
        elif kind == "hire":
            email = f"teacher{step[2]}@example.org"
            if not Teacher.objects.filter(email=email).exists():
                teacher_create(school=classes[step[1]].grade.school, first_name="T", last_name="E", email=email)
        elif kind == "let_go":  # the teacher gives the e-mail up: deleted, or changed to one of their own
            teacher = Teacher.objects.filter(email=f"teacher{step[1]}@example.org").first()
            if teacher is not None and teacher.pk % 2:
                record_delete(instance=teacher)
            elif teacher is not None:
                record_update(instance=teacher, data={"email": f"{uuid.uuid4().hex[:8]}@example.org"})
        elif kind == "fail":
            simulator.configure(script=[step[1]])
        else:
            kill_mid_run(lanes[step[1]])
    for _ in range(5):  # an operator retries what failed for good
        deliver_round_robin()
        failed = OperationLog.objects.filter(status=EntryStatus.FAILED)
        if not failed.exists():
            break
        for entry in failed:
            services.entry_retry(entry=entry)


def assert_delivered_in_order(simulator) -> None:
    assert not OperationLog.objects.exclude(status=EntryStatus.SUCCEEDED).exists()
    assert simulator.stats()["out_of_order"] == 0  # every lane, over every slot, in sequence
    applied = simulator.applied_in_order()
    assert sorted(item["key"] for item in applied) == sorted(
        str(key) for key in OperationLog.objects.values_list("idempotency_key", flat=True)
    )  # each entry applied exactly once
    # Each record's changes reach the other system in the order they were made.
    entries = {str(e.idempotency_key): e for e in OperationLog.objects.all()}
    per_record = defaultdict(list)
    for item in applied:
        entry = entries[item["key"]]
        per_record[(entry.resource, entry.object_id)].append(entry.pk)
    for record, order in per_record.items():
        assert order == sorted(order), f"{record} changes applied out of order"
    # Replayed in the order applied, no two teachers ever hold the same e-mail at the other system.
    holders: dict[int, str] = {}
    for item in applied:
        entry = entries[item["key"]]
        if entry.resource != "teachers":
            continue
        holders.pop(entry.object_id, None)
        if entry.operation != "delete":
            assert entry.payload["email"] not in holders.values(), "an e-mail held twice: out of order"
            holders[entry.object_id] = entry.payload["email"]


@hypothesis_settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(plan=steps)
def test_any_interleaving_keeps_every_lane_and_every_record_in_order(school_lanes, plan):
    simulator = school_lanes
    with transaction.atomic():
        simulator.reset()
        classes = [SchoolClassFactory() for _ in range(SCHOOLS)]
        run_steps(simulator, classes, plan)
        assert_delivered_in_order(simulator)
        transaction.set_rollback(True)


def test_the_property_catches_a_move_that_takes_only_one_slot(school_lanes, monkeypatch):
    # The control: with moves holding only their new school's slot, the new school's lane sends a
    # student's move before the old lane sent the student's create.
    from sync import recorder

    real_entry_create = recorder.entry_create
    monkeypatch.setattr(
        "schools.services.entry_create", lambda **kwargs: real_entry_create(**{**kwargs, "other_lanes": ()})
    )
    classes = [SchoolClassFactory() for _ in range(2)]
    plan = [("write", 0), ("move", 0, 1), ("push", 1)]
    run_steps(school_lanes, classes, plan)
    with pytest.raises(AssertionError, match="out of order"):
        assert_delivered_in_order(school_lanes)


def test_the_property_catches_a_hand_over_that_takes_no_slot(school_lanes, monkeypatch):
    # The control: the new holder of an e-mail sent before the old holder let it go.
    monkeypatch.setattr("schools.services.sync_lanes.releasing", lambda values: set())
    classes = [SchoolClassFactory() for _ in range(2)]
    plan = [("hire", 0, 0), ("push", 0), ("let_go", 0), ("hire", 1, 0), ("push", 1)]
    run_steps(school_lanes, classes, plan)
    with pytest.raises(AssertionError, match="held twice"):
        assert_delivered_in_order(school_lanes)
