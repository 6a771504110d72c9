"""I3: sequence numbers become visible in commit order, with concurrent writers on PostgreSQL.

The reader behaves like the dispatcher: it repeatedly reads the entries after the last
sequence it has seen. If a lower sequence could commit after a higher one was read, the
reader would skip it for good, so "everything the reader saw, in the order it saw it"
must equal "every entry, in sequence order".
"""

import random
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from django.db import connection, transaction

from schools import lanes as school_lanes
from schools.models import Student
from schools.services import record_update, school_create, student_create, teacher_create
from sync import recorder
from sync.models import DEFAULT_LANE, OperationLog, OperationSlot, SyncLane
from tests.factories import SchoolClassFactory, SchoolFactory, StudentFactory
from tests.helpers import run_in_threads

pytestmark = pytest.mark.django_db(transaction=True)

WRITERS = 8
WRITES_PER_WRITER = 25
MAX_HOLD_SECONDS = 0.01  # how long a writer keeps its transaction open after recording
HOLD_FOR_OTHER_WRITER_SECONDS = 0.5
DEADLINE_SECONDS = 60


@pytest.fixture(autouse=True)
def _postgresql_only():
    if connection.vendor != "postgresql":
        pytest.skip("concurrent writers need PostgreSQL (SQLite serialises whole transactions)")


@pytest.fixture(autouse=True)
def _lane(_postgresql_only):
    # Transactional tests start from an empty database; the migration's lane row is gone.
    SyncLane.objects.get_or_create(pk=DEFAULT_LANE)


def read_like_the_dispatcher(threads) -> list[int]:
    """Poll "entries after the last sequence seen" until the writers are done."""
    seen: list[int] = []
    deadline = time.monotonic() + DEADLINE_SECONDS
    while time.monotonic() < deadline:
        writers_done = not any(thread.is_alive() for thread in threads)
        last = seen[-1] if seen else 0
        seen += list(
            OperationLog.objects.filter(sequence__gt=last).order_by("sequence").values_list("sequence", flat=True)
        )
        if writers_done:
            return seen
    pytest.fail("writers did not finish before the deadline")


def all_sequences() -> list[int]:
    return list(OperationLog.objects.order_by("sequence").values_list("sequence", flat=True))


def slow_writer_then_fast_writer():
    """Writer A records first and keeps its transaction open; writer B records after it."""
    a_recorded = threading.Event()
    b_committed = threading.Event()

    def writer_a():
        with transaction.atomic():
            school_create(name="A")
            a_recorded.set()
            # With the lane row locked B cannot commit before us, so this times out.
            b_committed.wait(timeout=HOLD_FOR_OTHER_WRITER_SECONDS)

    def writer_b():
        assert a_recorded.wait(timeout=DEADLINE_SECONDS)
        school_create(name="B")
        b_committed.set()

    return [writer_a, writer_b]


def test_a_later_sequence_never_becomes_visible_before_an_earlier_one():
    threads, errors = run_in_threads(slow_writer_then_fast_writer())
    seen = read_like_the_dispatcher(threads)
    assert not errors
    assert seen == all_sequences() == [1, 2]


def test_concurrent_writers_get_gap_free_sequences_in_commit_order():
    def writer(writer_index):
        rng = random.Random(writer_index)

        def write():
            for index in range(WRITES_PER_WRITER):
                with transaction.atomic():
                    school_create(name=f"writer {writer_index} school {index}")
                    time.sleep(rng.uniform(0, MAX_HOLD_SECONDS))

        return write

    threads, errors = run_in_threads([writer(index) for index in range(WRITERS)])
    seen = read_like_the_dispatcher(threads)

    assert not errors
    total = WRITERS * WRITES_PER_WRITER
    assert all_sequences() == list(range(1, total + 1))
    assert seen == all_sequences()


@contextmanager
def sequences_taken_like_a_primary_key(monkeypatch, start: int = 1) -> Iterator[None]:
    """The broken allocator of the controls: no lane lock, and a counter outside the transaction (as ids are)."""
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE SEQUENCE IF NOT EXISTS i3_control_seq START {int(start)}")

    def take_like_a_primary_key(lane: str) -> int:
        with connection.cursor() as cursor:
            cursor.execute("SELECT nextval('i3_control_seq')")
            return cursor.fetchone()[0]

    monkeypatch.setattr(school_lanes, "lock_lanes", lambda lanes: None)
    monkeypatch.setattr(recorder, "_take_sequence", take_like_a_primary_key)
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP SEQUENCE i3_control_seq")


def test_the_check_catches_sequences_taken_like_a_primary_key(monkeypatch):
    """Control: without the lane lock, a counter outside the transaction (as ids are) lets B's entry show first."""
    with sequences_taken_like_a_primary_key(monkeypatch):
        threads, errors = run_in_threads(slow_writer_then_fast_writer())
        seen = read_like_the_dispatcher(threads)

    assert not errors
    assert all_sequences() == [1, 2]
    assert seen == [2], "the reader skipped sequence 1 for good: the check detects the broken order"


def test_school_lanes_take_gap_free_sequences_in_commit_order_per_lane_with_moves(settings):
    """I3 per lane: writers in several schools, moving students between them, and a reader per lane."""
    settings.SYNC_LANES = "school"
    classes = [SchoolClassFactory() for _ in range(3)]
    lanes = [f"school-{school_class.grade.school_id}" for school_class in classes]
    students = [StudentFactory(school_class=school_class).pk for school_class in classes for _ in range(3)]

    def writer(writer_index):
        rng = random.Random(writer_index)

        def write():
            for index in range(WRITES_PER_WRITER):
                with transaction.atomic():
                    if rng.random() < 0.5:
                        student = Student.objects.get(pk=rng.choice(students))
                        record_update(instance=student, data={"school_class": rng.choice(classes)})
                    else:
                        student_create(
                            school_class=rng.choice(classes),
                            first_name="W",
                            last_name=str(writer_index),
                            student_number=f"W{writer_index}-{index}",
                        )
                    time.sleep(rng.uniform(0, MAX_HOLD_SECONDS))

        return write

    threads, errors = run_in_threads([writer(index) for index in range(WRITERS)])
    seen = {lane: [] for lane in lanes}
    deadline = time.monotonic() + DEADLINE_SECONDS
    while True:
        writers_done = not any(thread.is_alive() for thread in threads)
        for lane in lanes:
            seen[lane] += lane_sequences(lane, after=seen[lane][-1] if seen[lane] else 0)
        if writers_done:
            break
        assert time.monotonic() < deadline, "writers did not finish before the deadline"

    assert not errors
    assert OperationSlot.objects.exists(), "no move was recorded; nothing was tested"
    for lane in lanes:
        everything = lane_sequences(lane, after=0)
        assert everything == list(range(1, len(everything) + 1))  # gap-free
        assert seen[lane] == everything  # and never a lower one after a higher one was read


def lane_sequences(lane: str, after: int) -> list[int]:
    """A lane's sequences after ``after``: its own entries' and the slots of moves, read in one statement."""
    own = OperationLog.objects.filter(lane_id=lane, sequence__gt=after).values_list("sequence", flat=True)
    slots = OperationSlot.objects.filter(lane_id=lane, sequence__gt=after).values_list("sequence", flat=True)
    return sorted(own.union(slots, all=True))


def test_the_per_lane_check_catches_a_school_lane_taken_like_a_primary_key(settings, monkeypatch):
    """Control for school lanes: the same broken allocator, two writers in one school's lane."""
    settings.SYNC_LANES = "school"
    school = SchoolFactory()  # its create is sequence 1 of its lane
    a_recorded, b_committed = threading.Event(), threading.Event()

    def writer_a():
        with transaction.atomic():
            teacher_create(school=school, first_name="A", last_name="A", email="a@example.org")
            a_recorded.set()
            b_committed.wait(timeout=HOLD_FOR_OTHER_WRITER_SECONDS)

    def writer_b():
        assert a_recorded.wait(timeout=DEADLINE_SECONDS)
        teacher_create(school=school, first_name="B", last_name="B", email="b@example.org")
        b_committed.set()

    with sequences_taken_like_a_primary_key(monkeypatch, start=2):
        threads, errors = run_in_threads([writer_a, writer_b])
        lane = f"school-{school.pk}"
        seen: list[int] = []
        deadline = time.monotonic() + DEADLINE_SECONDS
        while True:
            done = not any(thread.is_alive() for thread in threads)
            seen += lane_sequences(lane, after=seen[-1] if seen else 0)
            if done:
                break
            assert time.monotonic() < deadline, "writers did not finish before the deadline"

    assert not errors
    assert lane_sequences(lane, after=0) == [1, 2, 3]
    assert seen == [1, 3], "the reader skipped sequence 2 for good: the per-lane check detects the broken order"
