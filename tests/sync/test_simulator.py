"""The external simulator implements the contract the client relies on."""

import uuid

import httpx
import pytest

from tests.helpers import running_simulator


def call(url, method, path, *, key=None, sequence=1, json=None, token=None, lane="global", slots=None):
    headers = {
        "Idempotency-Key": key or str(uuid.uuid4()),
        "X-Sync-Lane": lane,
        "X-Sync-Sequence": str(sequence),
        "X-Sync-Slots": slots or f"{lane}={sequence}",
    }
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return httpx.request(method, f"{url}{path}", json=json, headers=headers, timeout=5)


@pytest.fixture
def simulator():
    with running_simulator() as running:
        yield running


def test_applies_creates_updates_and_deletes_in_order(simulator):
    sim, url = simulator
    assert call(url, "POST", "/schools", json={"id": 7, "name": "A"}, sequence=1).status_code == 201
    assert call(url, "PUT", "/schools/7", json={"id": 7, "name": "B"}, sequence=2).status_code == 200
    assert sim.records["schools"][7] == {"id": 7, "name": "B"}
    assert call(url, "DELETE", "/schools/7", sequence=3).status_code == 204
    assert 7 not in sim.records["schools"]
    applied = httpx.get(f"{url}/_simulator/applied").json()["applied"]
    assert [(a["method"], a["sequence"]) for a in applied] == [("POST", 1), ("PUT", 2), ("DELETE", 3)]


def test_a_repeated_key_gets_the_first_response_without_applying_twice(simulator):
    sim, url = simulator
    key = str(uuid.uuid4())
    first = call(url, "POST", "/grades", key=key, json={"id": 1, "level": 1})
    again = call(url, "POST", "/grades", key=key, json={"id": 1, "level": 1})
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json()
    assert len(sim.applied) == 1


def test_a_key_reused_with_another_body_is_a_422(simulator):
    _, url = simulator
    key = str(uuid.uuid4())
    call(url, "POST", "/grades", key=key, json={"id": 1, "level": 1})
    assert call(url, "POST", "/grades", key=key, json={"id": 1, "level": 2}).status_code == 422


def test_a_key_still_in_flight_is_a_409():
    with running_simulator(timeout_seconds=1) as (sim, url):
        sim.configure(script=["timeout"])
        key = str(uuid.uuid4())
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(
                f"{url}/students",
                json={"id": 1},
                headers={
                    "Idempotency-Key": key,
                    "X-Sync-Lane": "global",
                    "X-Sync-Sequence": "1",
                    "X-Sync-Slots": "global=1",
                },
                timeout=0.2,
            )
        assert call(url, "POST", "/students", key=key, json={"id": 1}).status_code == 409


def test_faults_and_bad_requests(simulator):
    sim, url = simulator
    sim.configure(script=["error", "reject"], retry_after=3)
    unavailable = call(url, "POST", "/schools", json={"id": 1})
    assert (unavailable.status_code, unavailable.headers["Retry-After"]) == (503, "3")
    assert call(url, "POST", "/schools", json={"id": 1}).status_code == 400
    assert sim.applied == []
    assert call(url, "POST", "/planets", json={"id": 1}).status_code == 404
    assert httpx.post(f"{url}/schools", json={"id": 1}).status_code == 400  # no idempotency key
    assert call(url, "POST", "/schools", json={"name": "no id"}).status_code == 400


def test_a_token_is_required_when_configured():
    with running_simulator(token="t0ken") as (_, url):
        assert call(url, "POST", "/schools", json={"id": 1}).status_code == 401
        assert call(url, "POST", "/schools", json={"id": 1}, token="t0ken").status_code == 201


def test_faults_can_be_set_over_http(simulator):
    sim, url = simulator
    response = httpx.post(f"{url}/_simulator/faults", json={"script": ["error"], "error_rate": 0.5})
    assert response.status_code == 200
    assert sim.error_rate == 0.5
    assert httpx.post(f"{url}/_simulator/faults", json={"script": ["meteor"]}).status_code == 400
    assert httpx.get(f"{url}/health").json() == {"status": "ok"}


def test_order_is_checked_per_lane_over_every_slot_an_entry_holds(simulator):
    sim, url = simulator
    assert call(url, "POST", "/schools", json={"id": 1}, lane="school-1", sequence=1).status_code == 201
    assert call(url, "POST", "/schools", json={"id": 2}, lane="school-2", sequence=1).status_code == 201
    # A student moved from school 1 to school 2: its own lane is school-2, with a slot in school-1.
    moved = call(url, "PUT", "/students/5", json={"id": 5}, lane="school-2", sequence=2, slots="school-2=2,school-1=2")
    assert moved.status_code == 200
    assert sim.stats()["out_of_order"] == 0
    # school-1's sequence 2 was the move's slot: sending school-1=2 again, as another entry, is out of order.
    call(url, "POST", "/schools", json={"id": 3}, lane="school-1", sequence=2)
    stats = sim.stats()
    assert (stats["out_of_order"], stats["out_of_order_lanes"], stats["lanes"]) == (1, ["school-1"], 2)
    assert sim.applied[2]["slots"] == ["school-2=2", "school-1=2"]


def test_slots_must_start_with_the_entry_own_lane(simulator):
    _, url = simulator
    for slots in ("school-1=1", "global=x", "global=2,=3", "nonsense"):
        reply = call(url, "POST", "/schools", json={"id": 1}, lane="global", sequence=2, slots=slots)
        assert reply.status_code == 400, slots


def test_the_controls_need_the_simulators_token_when_it_has_one():
    with running_simulator(token="s3cret") as (sim, url):
        assert httpx.post(f"{url}/_simulator/reset", timeout=5).status_code == 401
        assert httpx.get(f"{url}/_simulator/stats", timeout=5).status_code == 401
        faults = httpx.post(
            f"{url}/_simulator/faults", json={"error_rate": 1}, headers={"Authorization": "Bearer wrong"}, timeout=5
        )
        assert faults.status_code == 401
        assert sim.error_rate == 0.0
        allowed = httpx.get(f"{url}/_simulator/stats", headers={"Authorization": "Bearer s3cret"}, timeout=5)
        assert allowed.status_code == 200


def test_a_simulator_other_hosts_can_reach_needs_a_token():
    from django.core.management import CommandError, call_command

    with pytest.raises(CommandError, match="needs a token"):
        call_command("run_external_simulator", "--host", "0.0.0.0", "--port", "0", "--token", "")  # noqa: S104 - the refusal under test
