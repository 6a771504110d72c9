"""Bad input never reaches a 500: it is a 4xx that names what is wrong, and nothing is written."""

import json
import logging

import pytest

from config.inputs import MAX_SEARCH_TERMS
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


def test_a_search_of_too_many_terms_is_a_400(superuser_client):
    SchoolFactory(name="Hillcrest")
    assert superuser_client.get("/api/schools/", {"search": " ".join(["Hill"] * MAX_SEARCH_TERMS)}).status_code == 200
    response = superuser_client.get("/api/students/", {"search": " ".join(["a"] * 1000)})
    assert response.status_code == 400
    assert response.json() == {"search": [f"At most {MAX_SEARCH_TERMS} search terms."]}
    assert superuser_client.get("/api/schools/", {"search": "Hill\x00"}).status_code == 400


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
