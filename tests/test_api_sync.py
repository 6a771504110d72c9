"""Read-only operation log API."""

import pytest

from schools.services import record_delete, record_update
from sync.models import OperationLog
from tests.factories import SchoolFactory

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
        "idempotency_key": str(entry.idempotency_key),
        "operation": "delete",
        "resource": "schools",
        "object_id": entry.object_id,
        "payload": {"id": entry.object_id, "name": "Gone", "address": entry.payload["address"]},
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": None,
        "last_error": "",
        "pushed_at": None,
        "actor": None,
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
    with django_assert_max_num_queries(2):
        assert reader_client.get("/api/sync/operations/").status_code == 200
