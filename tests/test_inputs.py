"""Bad input never reaches a 500: it is a 4xx that names what is wrong, and nothing is written."""

import json
import logging

import pytest
from django.conf import settings

from config.inputs import MAX_SEARCH_TERMS, NUL_REFUSED, TIME_OUT_OF_RANGE
from config.logs import OneLineFormatter
from schools.models import School
from schools.validators import MAX_ADDRESS_LENGTH, NAME_REFUSED
from sync.models import OperationLog
from tests.factories import SchoolFactory
from tests.helpers import in_seconds

pytestmark = pytest.mark.django_db


def test_json_nested_a_thousand_deep_is_a_400_even_for_the_anonymous_token_endpoint(anon_client):
    body = "[" * 1000 + "]" * 1000
    response = anon_client.post("/api/auth/token/", body, content_type="application/json")
    assert response.status_code == 400
    assert "nested too deeply" in response.json()["detail"]


@pytest.mark.parametrize("where", ["value", "key"])
def test_a_nul_character_anywhere_in_json_is_a_400(superuser_client, where):
    school = SchoolFactory()
    text = "Ann\x00a"
    data = {"name": text} if where == "value" else {text: "x"}
    change = {
        "execute_at": in_seconds(3600).isoformat(),
        "resource": "schools",
        "operation": "update",
        "target_id": school.pk,
        "data": data,
    }
    response = superuser_client.post("/api/scheduled-changes/", change, format="json")
    assert response.status_code == 400
    assert "NUL" in json.dumps(response.json())


@pytest.mark.parametrize(
    "path",
    [
        "/api/grades/?school=1000000000000000000000000000000",
        "/api/classes/?school=99999999999999999999",
        "/api/students/?school_class=99999999999999999999",
        "/api/sync/operations/?object_id=99999999999999999999",
    ],
)
def test_numbers_no_column_can_hold_are_a_400_in_filters(superuser_client, path):
    response = superuser_client.get(path)
    assert response.status_code == 400
    assert "at most" in json.dumps(response.json())


@pytest.mark.parametrize("moment", ["2203-12-27T04:36:49-21:56", "0001-01-01T00:00:00+01:00"])
def test_times_no_database_can_compare_are_a_400_in_filters(superuser_client, moment):
    response = superuser_client.get("/api/scheduled-changes/", {"due_before": moment})
    assert response.status_code == 400
    assert response.json() == {"due_before": [TIME_OUT_OF_RANGE]}


def test_times_in_any_real_time_zone_filter(superuser_client):
    response = superuser_client.get("/api/scheduled-changes/", {"due_after": "2026-01-01T00:00:00+14:00"})
    assert response.status_code == 200


def test_a_form_of_too_many_fields_is_a_json_400(superuser_client):
    body = "&".join(f"ids={number}" for number in range(settings.DATA_UPLOAD_MAX_NUMBER_FIELDS + 1))
    response = superuser_client.post(
        "/api/scheduled-changes/cancel/", body, content_type="application/x-www-form-urlencoded"
    )
    assert response.status_code == 400
    assert response.json() == {"detail": "Malformed request."}


def test_an_api_url_no_route_matches_is_a_json_404(superuser_client):
    response = superuser_client.get("/api/schools/1/no-such-action/")
    assert response.status_code == 404
    assert response.json() == {"detail": "Not found."}
    assert superuser_client.get("/no-such-page/")["Content-Type"].startswith("text/html")


def test_a_search_of_too_many_terms_is_a_400(superuser_client):
    SchoolFactory(name="Hillcrest")
    assert superuser_client.get("/api/schools/", {"search": " ".join(["Hill"] * MAX_SEARCH_TERMS)}).status_code == 200
    response = superuser_client.get("/api/students/", {"search": " ".join(["a"] * 1000)})
    assert response.status_code == 400
    assert response.json() == {"search": [f"At most {MAX_SEARCH_TERMS} search terms."]}
    nul = superuser_client.get("/api/schools/", {"search": "Hill\x00"})
    assert nul.status_code == 400
    assert nul.json() == {"search": [NUL_REFUSED]}


def test_an_oversized_address_is_refused_and_nothing_is_written(superuser_client):
    too_long = superuser_client.post("/api/schools/", {"name": "Long", "address": "x" * (MAX_ADDRESS_LENGTH + 1)})
    assert too_long.status_code == 400
    assert "address" in too_long.json()
    huge = superuser_client.post("/api/schools/", {"name": "Huge", "address": "x" * 2_500_000})
    assert huge.status_code in (400, 413)
    assert not School.objects.exists()
    assert not OperationLog.objects.exists()


@pytest.mark.parametrize("name", ["Anna\u202eevil", "Anna\nBob", "Anna\x1b[31m", "\u2066Anna"])
def test_names_refuse_control_and_text_direction_characters(superuser_client, name):
    response = superuser_client.post("/api/schools/", {"name": name})
    assert response.status_code == 400
    assert response.json() == {"name": [NAME_REFUSED]}


def test_an_address_keeps_its_line_breaks(superuser_client):
    response = superuser_client.post("/api/schools/", {"name": "Lines", "address": "1 Hill Road\nNorthtown"})
    assert response.status_code == 201


def test_user_text_in_a_log_message_cannot_forge_a_line():
    record = logging.LogRecord(
        "sync", logging.WARNING, __file__, 1, "scheduled change %s failed: %s", (7, "bad\n2026 INFO x forged"), None
    )
    line = OneLineFormatter("%(levelname)s %(message)s").format(record)
    assert "\n" not in line
    assert line == "WARNING scheduled change 7 failed: bad\\n2026 INFO x forged"
