"""The external API client: headers of the contract and one classification of every outcome."""

import json
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from sync.client import ExternalApiClient, classify, parse_retry_after
from sync.models import Outcome
from tests.factories import SchoolFactory
from tests.helpers import running_simulator

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (200, Outcome.SUCCESS),
        (201, Outcome.SUCCESS),
        (204, Outcome.SUCCESS),
        (408, Outcome.TRANSIENT),
        (409, Outcome.TRANSIENT),
        (425, Outcome.TRANSIENT),
        (429, Outcome.TRANSIENT),
        (500, Outcome.TRANSIENT),
        (502, Outcome.TRANSIENT),
        (503, Outcome.TRANSIENT),
        (400, Outcome.PERMANENT),
        (401, Outcome.PERMANENT),
        (404, Outcome.PERMANENT),
        (422, Outcome.PERMANENT),
        (301, Outcome.PERMANENT),
    ],
)
def test_classification_follows_the_contract(status, outcome):
    result = classify(httpx.Response(status, text="detail"))
    assert result.outcome == outcome
    assert result.status_code == status


def test_retry_after_in_seconds_and_as_a_date():
    assert parse_retry_after("120") == 120
    in_a_minute = format_datetime(datetime.now(UTC) + timedelta(seconds=60), usegmt=True)
    assert 55 <= parse_retry_after(in_a_minute) <= 60
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None
    result = classify(httpx.Response(503, headers={"Retry-After": "7"}))
    assert (result.outcome, result.retry_after) == (Outcome.TRANSIENT, 7)


def entry_for(school):
    from sync.models import OperationLog

    return OperationLog.objects.get(resource="schools", object_id=school.pk, operation="create")


def test_sends_the_contract_headers_and_the_snapshot():
    seen = {}

    def handler(request: httpx.Request) -> httpx.Response:
        seen.update(method=request.method, url=str(request.url), headers=dict(request.headers))
        seen["body"] = json.loads(request.content)
        return httpx.Response(201, json=seen["body"])

    entry = entry_for(SchoolFactory(name="Headers"))
    client = ExternalApiClient(
        base_url="http://external.test", token="s3cret", timeout=5, transport=httpx.MockTransport(handler)
    )
    assert client.push(entry).ok
    assert seen["method"] == "POST"
    assert seen["url"] == "http://external.test/schools"
    assert seen["headers"]["idempotency-key"] == str(entry.idempotency_key)
    assert seen["headers"]["x-sync-sequence"] == str(entry.sequence)
    assert seen["headers"]["authorization"] == "Bearer s3cret"
    assert seen["headers"]["content-type"] == "application/json"
    assert seen["body"] == entry.payload


def test_connection_errors_and_timeouts_are_transient():
    entry = entry_for(SchoolFactory())
    refused = ExternalApiClient(base_url="http://127.0.0.1:9", token="", timeout=1).push(entry)
    assert refused.outcome == Outcome.TRANSIENT
    assert "ConnectError" in refused.error

    with running_simulator(timeout_seconds=2) as (simulator, url):
        simulator.configure(script=["timeout"])
        timed_out = ExternalApiClient(base_url=url, token="", timeout=0.3).push(entry)
    assert timed_out.outcome == Outcome.TRANSIENT
    assert timed_out.error == "timed out after 0.3s"


def test_a_lost_response_is_transient_and_the_retry_gets_the_first_response():
    entry = entry_for(SchoolFactory())
    with running_simulator() as (simulator, url):
        simulator.configure(script=["lost_response"])
        client = ExternalApiClient(base_url=url, token="", timeout=2)
        first = client.push(entry)
        second = client.push(entry)
        assert first.outcome == Outcome.TRANSIENT
        assert second.ok
        assert len(simulator.applied) == 1
        assert simulator.stats()["replayed"] == 1
