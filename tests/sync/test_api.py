"""The operation log API: entries, retry and cancel, and the status API."""

from datetime import timedelta

import pytest
from django.utils import timezone

from schools.services import record_delete, record_update
from sync.models import DEFAULT_LANE, EntryStatus, OperationLog, SyncLane
from sync.services import CANCEL_NEEDS_CONFIRMATION, CANCEL_NOT_ALLOWED, RETRY_NOT_ALLOWED
from tests.conftest import DISTRICT
from tests.factories import SchoolClassFactory, SchoolFactory, StudentFactory, UserFactory
from tests.helpers import api_client_for, bulk_entries, entry_with_status, lane_of

pytestmark = pytest.mark.django_db


@pytest.fixture
def history():
    school = SchoolFactory(name="Logged")
    record_update(instance=school, data={"address": "New road"})
    other = SchoolFactory(name="Gone")
    record_delete(instance=other)
    return school


def test_requires_authentication(anon_client):
    assert anon_client.get("/api/sync/operations/").status_code == 401


def test_lists_entries_newest_first_with_their_fields(reader_client, history):
    results = reader_client.get("/api/sync/operations/").json()["results"]
    assert [(e["operation"], e["resource"]) for e in results] == [
        ("delete", "schools"),
        ("create", "schools"),
        ("update", "schools"),
        ("create", "schools"),
    ]
    newest = results[0]
    entry = OperationLog.objects.get(pk=newest["id"])
    assert newest == {
        "id": entry.pk,
        "lane": "global",
        "sequence": entry.sequence,
        "slots": [{"lane": "global", "sequence": entry.sequence}],
        "idempotency_key": str(entry.idempotency_key),
        "operation": "delete",
        "resource": "schools",
        "object_id": entry.object_id,
        "school": entry.object_id,
        "other_school": None,
        "payload": {"id": entry.object_id, "name": "Gone", "address": entry.payload["address"]},
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": None,
        "last_error": "",
        "pushed_at": None,
        "maybe_applied": False,
        "actor": None,
        "cancelled_by": None,
        "cancelled_at": None,
        "retried_by": None,
        "retried_at": None,
        "resent_by": "",
        "resent_at": None,
        "created_at": newest["created_at"],
        "updated_at": newest["updated_at"],
    }


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("operation=update", [("update", "schools")]),
        ("operation=delete", [("delete", "schools")]),
        ("resource=grades", []),
        ("status=pending&operation=create", [("create", "schools"), ("create", "schools")]),
        ("status=succeeded", []),
    ],
)
def test_filters(reader_client, history, query, expected):
    results = reader_client.get(f"/api/sync/operations/?{query}").json()["results"]
    assert [(e["operation"], e["resource"]) for e in results] == expected


def test_an_unknown_filter_value_is_a_400(reader_client):
    response = reader_client.get("/api/sync/operations/?status=lost")
    assert response.status_code == 400
    assert "status" in response.json()


def test_detail(reader_client, history):
    entry = OperationLog.objects.order_by("sequence").first()
    response = reader_client.get(f"/api/sync/operations/{entry.pk}/")
    assert response.status_code == 200
    assert response.json()["idempotency_key"] == str(entry.idempotency_key)


def test_the_log_cannot_be_written_through_the_api(superuser_client, history):
    entry = OperationLog.objects.first()
    assert superuser_client.post("/api/sync/operations/", {}).status_code == 405
    assert superuser_client.patch(f"/api/sync/operations/{entry.pk}/", {"status": "succeeded"}).status_code == 405
    assert superuser_client.delete(f"/api/sync/operations/{entry.pk}/").status_code == 405


def test_list_query_count_does_not_grow(reader_client, django_assert_max_num_queries):
    for _ in range(20):
        SchoolFactory()
    # the user's permissions (2), count, page, and the page's slots in other lanes
    with django_assert_max_num_queries(5):
        assert reader_client.get("/api/sync/operations/").status_code == 200


@pytest.mark.parametrize("status", [EntryStatus.FAILED, EntryStatus.PENDING])
def test_retry_makes_the_entry_due_now(operator_client, status):
    entry = entry_with_status(status, next_attempt_at=timezone.now() + timedelta(minutes=5))
    response = operator_client.post(f"/api/sync/operations/{entry.pk}/retry/")
    assert response.status_code == 200
    assert (response.json()["status"], response.json()["next_attempt_at"]) == ("pending", None)


@pytest.mark.parametrize("status", [EntryStatus.FAILED, EntryStatus.PENDING])
def test_cancel(operator_client, status):
    entry = entry_with_status(status)
    response = operator_client.post(f"/api/sync/operations/{entry.pk}/cancel/")
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"


@pytest.mark.parametrize(
    ("action", "refusal", "status"),
    [
        (action, refusal, status)
        for action, refusal in (("retry", RETRY_NOT_ALLOWED), ("cancel", CANCEL_NOT_ALLOWED))
        for status in (EntryStatus.SUCCEEDED, EntryStatus.CANCELLED, EntryStatus.IN_PROGRESS)
    ],
)
def test_an_action_the_status_does_not_allow_is_a_409_and_changes_nothing(operator_client, action, refusal, status):
    entry = entry_with_status(status)
    response = operator_client.post(f"/api/sync/operations/{entry.pk}/{action}/")
    assert response.status_code == 409
    assert response.json()["detail"] == refusal.format(status=entry.get_status_display())
    entry.refresh_from_db()
    assert entry.status == status


def test_operator_actions_need_their_permissions(reader_client, editor_client, anon_client):
    entry = entry_with_status(EntryStatus.FAILED)
    for client, expected in ((anon_client, 401), (reader_client, 403), (editor_client, 403)):
        assert client.post(f"/api/sync/operations/{entry.pk}/retry/").status_code == expected
        assert client.post(f"/api/sync/operations/{entry.pk}/cancel/").status_code == expected
    entry.refresh_from_db()
    assert entry.status == EntryStatus.FAILED

    may_only_retry = api_client_for(
        UserFactory(permissions=["sync.view_operationlog", "sync.retry_operationlog", DISTRICT])
    )
    assert may_only_retry.post(f"/api/sync/operations/{entry.pk}/cancel/").status_code == 403
    assert may_only_retry.post(f"/api/sync/operations/{entry.pk}/retry/").status_code == 200


def test_status_api_reports_counts_lag_progress_and_health(reader_client):
    sent = bulk_entries(3, EntryStatus.SUCCEEDED, pushed_at=timezone.now())
    bulk_entries(1, EntryStatus.FAILED, last_error="HTTP 400: bad", attempt_count=1)
    waiting = bulk_entries(2)
    OperationLog.objects.filter(pk=waiting[0].pk).update(created_at=timezone.now() - timedelta(minutes=5))
    SyncLane.objects.filter(pk=DEFAULT_LANE).update(
        last_pushed_sequence=sent[-1].sequence, last_pushed_at=timezone.now()
    )

    body = reader_client.get("/api/sync/status/").json()

    assert body["counts"] == {"pending": 2, "in_progress": 0, "succeeded": 3, "failed": 1, "cancelled": 0}
    assert body["last_pushed_sequence"] == sent[-1].sequence
    assert body["pushes_last_hour"] == 3
    assert body["external"]["stale"] is True
    [lane] = body["lanes"]
    assert lane["blocked_by"]["last_error"] == "HTTP 400: bad"
    assert body["oldest_pending_age_seconds"] > 0  # the failed head's age (the lane waits on it)


def test_status_api_needs_a_signed_in_user(anon_client):
    assert anon_client.get("/api/sync/status/").status_code == 401


def test_cancelling_an_entry_that_may_have_been_applied_needs_confirmation(operator_client):
    # After a timeout the entry is pending again, yet the external system may have applied it.
    entry = entry_with_status(EntryStatus.PENDING, maybe_applied=True, last_error="timed out after 30s")

    refused = operator_client.post(f"/api/sync/operations/{entry.pk}/cancel/")
    assert refused.status_code == 409
    assert refused.json()["detail"] == CANCEL_NEEDS_CONFIRMATION.format(
        sequence=entry.sequence, error="timed out after 30s"
    )
    entry.refresh_from_db()
    assert entry.status == EntryStatus.PENDING

    confirmed = operator_client.post(f"/api/sync/operations/{entry.pk}/cancel/", {"confirm": True}, format="json")
    assert confirmed.status_code == 200
    body = confirmed.json()
    assert (body["status"], body["maybe_applied"]) == ("cancelled", True)
    entry.refresh_from_db()
    assert body["cancelled_by"] == entry.cancelled_by.username
    assert entry.cancelled_at is not None


@pytest.fixture
def two_schools_with_a_move(settings):
    """School lanes: two schools' records, and a student moved from the first to the second."""
    settings.SYNC_LANES = "school"
    old_class, new_class = SchoolClassFactory(), SchoolClassFactory()
    student = StudentFactory(school_class=old_class)
    record_update(instance=student, data={"school_class": new_class})
    return lane_of(old_class.grade.school), lane_of(new_class.grade.school)


def test_status_api_shows_every_lane_and_counts_a_move_in_both(reader_client, two_schools_with_a_move):
    old_lane, new_lane = two_schools_with_a_move

    body = reader_client.get("/api/sync/status/").json()

    assert body["counts"]["pending"] == 8  # each entry once: 4 + 3 creates and the move
    assert body["last_pushed_sequence"] is None  # sequences of different lanes do not compare
    lanes = {lane["name"]: lane for lane in body["lanes"]}
    assert (lanes[old_lane]["pending"], lanes[new_lane]["pending"]) == (5, 4)  # the move counts in both
    assert {key: lanes[old_lane][key] for key in ("failed", "paused", "last_pushed_sequence")} == {
        "failed": 0,
        "paused": False,
        "last_pushed_sequence": None,
    }
    assert lanes[old_lane]["oldest_pending_age_seconds"] >= 0


def test_operations_filter_by_lane_and_show_every_slot(reader_client, two_schools_with_a_move):
    old_lane, new_lane = two_schools_with_a_move

    results = reader_client.get("/api/sync/operations/", {"lane": new_lane}).json()["results"]

    assert {entry["lane"] for entry in results} == {new_lane}
    move = results[0]  # newest first
    assert move["slots"] == [{"lane": new_lane, "sequence": 4}, {"lane": old_lane, "sequence": 5}]


def test_operators_pause_and_resume_a_lane(reader_client, two_schools_with_a_move):
    old_lane, _ = two_schools_with_a_move
    operator = UserFactory(permissions=["sync.view_operationlog", "sync.pause_synclane", DISTRICT])
    client = api_client_for(operator)

    listed = reader_client.get("/api/sync/lanes/").json()
    assert {lane["name"] for lane in listed["results"]} >= set(two_schools_with_a_move)
    assert reader_client.post(f"/api/sync/lanes/{old_lane}/pause/").status_code == 403
    for _ in range(2):  # repeating one is harmless
        paused = client.post(f"/api/sync/lanes/{old_lane}/pause/")
        assert (paused.status_code, paused.json()["paused"], paused.json()["name"]) == (200, True, old_lane)
    lane = SyncLane.objects.get(pk=old_lane)
    assert (lane.paused, lane.paused_changed_by) == (True, operator)
    resumed = client.post(f"/api/sync/lanes/{old_lane}/resume/")
    assert (resumed.status_code, resumed.json()["paused"]) == (200, False)
    assert client.post("/api/sync/lanes/school-999999/pause/").status_code == 404


def test_lanes_api_needs_a_signed_in_user(anon_client):
    assert anon_client.get("/api/sync/lanes/").status_code == 401
    assert anon_client.post(f"/api/sync/lanes/{DEFAULT_LANE}/pause/").status_code == 401
