"""With school lanes, writes to different schools run side by side (PostgreSQL, real threads)."""

import threading
import time

import pytest
from django.core.exceptions import ValidationError
from django.db import connection, transaction

from schools.models import Teacher
from schools.services import teacher_create
from sync.models import OperationLog
from tests.factories import SchoolFactory
from tests.helpers import api_client_for, run_in_threads

pytestmark = pytest.mark.django_db(transaction=True)

DEADLINE_SECONDS = 10


@pytest.fixture(autouse=True)
def _school_lanes_on_postgresql(settings):
    if connection.vendor != "postgresql":
        pytest.skip("concurrent writers need PostgreSQL (SQLite serialises whole transactions)")
    settings.SYNC_LANES = "school"


def someone_waits_for_a_lock() -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_locks WHERE NOT granted")
        return cursor.fetchone()[0] > 0


def test_writes_to_two_schools_do_not_wait_for_each_other():
    north, south = SchoolFactory(), SchoolFactory()
    north_recorded, south_done = threading.Event(), threading.Event()

    def write_north():
        with transaction.atomic():
            teacher_create(school=north, first_name="A", last_name="N", email="a@north.example")
            north_recorded.set()
            # South's write commits while North's transaction still holds North's lane.
            assert south_done.wait(DEADLINE_SECONDS), "south waited for north"

    def write_south():
        assert north_recorded.wait(DEADLINE_SECONDS)
        teacher_create(school=south, first_name="B", last_name="S", email="b@south.example")
        south_done.set()

    threads, errors = run_in_threads([write_north, write_south])
    for thread in threads:
        thread.join(DEADLINE_SECONDS * 2)
    assert errors == []
    assert Teacher.objects.count() == 2


def test_a_unique_value_taken_by_two_schools_at_once_is_a_field_error_for_the_second():
    north, south = SchoolFactory(), SchoolFactory()
    north_inserted, let_north_commit = threading.Event(), threading.Event()

    def north_takes_it():
        with transaction.atomic():
            teacher_create(school=north, first_name="A", last_name="N", email="same@example.org")
            north_inserted.set()
            assert let_north_commit.wait(DEADLINE_SECONDS)

    def south_takes_it_too():
        assert north_inserted.wait(DEADLINE_SECONDS)
        # North's row is not committed: the check passes, the insert waits on the unique index.
        teacher_create(school=south, first_name="B", last_name="S", email="SAME@example.org")

    (north_thread, south_thread), errors = run_in_threads([north_takes_it, south_takes_it_too])
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not someone_waits_for_a_lock():
        assert time.monotonic() < deadline, "south's insert never waited for north's"
    let_north_commit.set()
    north_thread.join(DEADLINE_SECONDS)
    south_thread.join(DEADLINE_SECONDS)

    [error] = errors
    assert isinstance(error, ValidationError)
    assert "email" in error.message_dict
    assert list(Teacher.objects.values_list("school", flat=True)) == [north.pk]  # nothing half-written
    assert OperationLog.objects.filter(resource="teachers").count() == 1


def test_two_schools_posting_the_same_email_at_once_get_one_201_and_one_400(superuser):
    north, south = SchoolFactory(), SchoolFactory()
    client = api_client_for(superuser)
    north_inserted, let_north_commit = threading.Event(), threading.Event()
    answers: dict[str, object] = {}

    def north_posts():
        # The winner's request, held open after its insert (as a slow request would be).
        with transaction.atomic():
            answers["north"] = client.post(
                "/api/teachers/",
                {"school": north.pk, "first_name": "A", "last_name": "N", "email": "same@example.org"},
                format="json",
            )
            north_inserted.set()
            assert let_north_commit.wait(DEADLINE_SECONDS)

    def south_posts():
        assert north_inserted.wait(DEADLINE_SECONDS)
        answers["south"] = api_client_for(superuser).post(
            "/api/teachers/",
            {"school": south.pk, "first_name": "B", "last_name": "S", "email": "Same@example.org"},
            format="json",
        )

    threads, errors = run_in_threads([north_posts, south_posts])
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not someone_waits_for_a_lock():
        assert time.monotonic() < deadline, "south's insert never waited for north's"
    let_north_commit.set()
    for thread in threads:
        thread.join(DEADLINE_SECONDS)

    assert errors == []
    assert answers["north"].status_code == 201
    assert answers["south"].status_code == 400
    assert "email" in answers["south"].json()
    assert OperationLog.objects.filter(resource="teachers").count() == 1
