"""The external API client: headers of the contract and one classification of every outcome."""

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from sync.client import ExternalApiClient, classify, parse_retry_after, send
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
    assert seen["headers"]["x-sync-lane"] == "global"
    assert seen["headers"]["x-sync-sequence"] == str(entry.sequence)
    assert seen["headers"]["x-sync-slots"] == f"global={entry.sequence}"
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


@contextmanager
def raw_http_server(respond: Callable[[socket.socket], None]) -> Iterator[str]:
    """A local server that answers every connection with whatever ``respond`` writes to the socket."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.recv(65536)  # the request; its contents do not matter here
                with suppress(OSError):  # the client may give up first
                    respond(conn)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()


def answer(status: str, body: bytes, **headers: str) -> Callable[[socket.socket], None]:
    head = f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\n"
    head += "".join(f"{name.replace('_', '-')}: {value}\r\n" for name, value in headers.items())
    return lambda conn: conn.sendall(head.encode() + b"\r\n" + body)


def test_an_answer_with_an_undecodable_body_is_still_classified():
    entry = entry_for(SchoolFactory())
    garbled = b"this is not gzip"
    with raw_http_server(answer("201 Created", garbled, Content_Encoding="gzip")) as url:
        created = ExternalApiClient(base_url=url, token="", timeout=2).push(entry)
    with raw_http_server(answer("503 Service Unavailable", garbled, Content_Encoding="gzip")) as url:
        unavailable = ExternalApiClient(base_url=url, token="", timeout=2).push(entry)
    assert created.outcome == Outcome.SUCCESS  # applied there; the body is not needed
    assert (unavailable.outcome, unavailable.status_code) == (Outcome.TRANSIENT, 503)
    assert unavailable.error.startswith("HTTP 503: (undecodable body:")


def test_a_failure_the_client_does_not_know_becomes_a_permanent_attempt(settings):
    entry = entry_for(SchoolFactory())
    settings.SYNC_API_TOKEN = "tökén"  # cannot go into an HTTP header
    result = send(entry)
    assert result.outcome == Outcome.PERMANENT
    assert result.error.startswith("could not send: UnicodeEncodeError:")


def trickle(conn: socket.socket) -> None:
    """An answer whose headers come one byte every 0.2 s: each read is quick, the whole answer is not."""
    conn.sendall(b"HTTP/1.1 200 OK\r\n")
    for byte in b"X-Slow: " + b"x" * 20:
        time.sleep(0.2)  # the server's pace, not a wait in the test
        conn.sendall(bytes([byte]))


def test_the_timeout_bounds_the_whole_call_not_each_read():
    entry = entry_for(SchoolFactory())
    with raw_http_server(trickle) as url:
        started = time.monotonic()
        result = ExternalApiClient(base_url=url, token="", timeout=1).push(entry)
        took = time.monotonic() - started
    assert (result.outcome, result.error) == (Outcome.TRANSIENT, "timed out after 1s")
    assert result.maybe_applied
    assert took < 1.5  # not the 4 s the answer takes


@pytest.mark.parametrize(
    ("answer_or_error", "maybe_applied"),
    [
        (httpx.Response(503), True),  # a server error may come after the change was applied
        (httpx.Response(409), True),  # the same key is still being processed there
        (httpx.Response(429), False),  # turned away before processing
        (httpx.Response(400), False),
        (httpx.ConnectError("refused"), False),  # never reached the other system
        (httpx.ReadTimeout("no answer"), True),
        (httpx.RemoteProtocolError("connection closed"), True),  # a lost answer
    ],
)
def test_what_may_have_been_applied_is_said_so(answer_or_error, maybe_applied):
    entry = entry_for(SchoolFactory())

    def handler(request: httpx.Request) -> httpx.Response:
        if isinstance(answer_or_error, Exception):
            raise answer_or_error
        return answer_or_error

    client = ExternalApiClient(
        base_url="http://external.test", token="", timeout=1, transport=httpx.MockTransport(handler)
    )
    assert client.push(entry).maybe_applied is maybe_applied
