"""A stand-in for the external system that keeps its contract: latency, idempotency keys, order, faults."""

import hashlib
import json
import logging
import random
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, cast

logger = logging.getLogger(__name__)

# Seconds per call of the original system, per resource.
LATENCY_SECONDS = {"schools": 5.0, "grades": 4.0, "classes": 3.0, "teachers": 2.0, "students": 1.0}
RESOURCES = frozenset(LATENCY_SECONDS)

# Fault names, for the error/timeout/lost-response rates and for scripted faults.
ERROR = "error"  # 503, not applied
TIMEOUT = "timeout"  # held for timeout_seconds, then applied: the client has given up by then
LOST_RESPONSE = "lost_response"  # applied, then the connection is closed without a response
REJECT = "reject"  # 400, not applied: a permanent failure
OK = "ok"  # no fault: puts a normal answer between faults in a script
FAULTS = frozenset({ERROR, TIMEOUT, LOST_RESPONSE, REJECT, OK})


def parse_slots(header: str) -> list[tuple[str, int]] | None:
    """``<lane>=<sequence>,…`` as pairs, or None if the header is malformed."""
    slots = []
    for part in header.split(","):
        lane, _, sequence = part.strip().partition("=")
        if not lane or not sequence.isdigit():
            return None
        slots.append((lane, int(sequence)))
    return slots


@dataclass
class Reply:
    status: int
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    lost: bool = False  # close the connection instead of answering


@dataclass
class _Stored:
    fingerprint: str
    reply: Reply | None = None  # None while the first request with this key is in flight


class ExternalSimulator:
    """The simulator's state and rules, independent of HTTP so tests can read it directly.

    Per-resource latency like the original system (scaled by ``latency_scale``); an
    idempotency store (a repeated key gets the first response again without applying the
    change twice, a key still being processed gets 409, a key reused with another body
    gets 422); the order in which changes were applied; and fault injection. Its state is
    readable and its faults settable over HTTP under ``/_simulator/``.
    """

    def __init__(
        self,
        *,
        latency_scale: float = 1.0,
        token: str = "",
        error_rate: float = 0.0,
        timeout_rate: float = 0.0,
        lost_response_rate: float = 0.0,
        timeout_seconds: float = 60.0,
        retry_after: int | None = None,
        seed: int | None = None,
    ):
        self.latency_scale = latency_scale
        self.token = token
        self.error_rate = error_rate
        self.timeout_rate = timeout_rate
        self.lost_response_rate = lost_response_rate
        self.timeout_seconds = timeout_seconds
        self.retry_after = retry_after
        self._random = random.Random(seed)  # noqa: S311 - fault injection, not cryptography
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.records: dict[str, dict[int, Any]] = {resource: {} for resource in RESOURCES}
            self.applied: list[dict[str, Any]] = []
            self._keys: dict[str, _Stored] = {}
            self._script: deque[str] = deque()
            self.requests = 0
            self.replayed = 0
            self.resent_keys: set[str] = set()  # keys that came more than once (in flight or done)
            self.in_flight = 0
            self.max_in_flight = 0
            self.in_flight_per_lane: dict[str, int] = {}
            self.max_in_flight_per_lane = 0
            self.last_applied_per_lane: dict[str, int] = {}
            self.out_of_order = 0
            self.out_of_order_lanes: set[str] = set()

    def configure(self, **options: Any) -> None:
        """Set fault rates, latency or a script of faults for the next requests."""
        with self._lock:
            for name in ("latency_scale", "error_rate", "timeout_rate", "lost_response_rate", "timeout_seconds"):
                if name in options:
                    setattr(self, name, float(options[name]))
            if "retry_after" in options:
                self.retry_after = None if options["retry_after"] is None else int(options["retry_after"])
            for fault in options.get("script", []):
                if fault not in FAULTS:
                    raise ValueError(f"unknown fault {fault!r}; expected one of {sorted(FAULTS)}")
                self._script.append(fault)

    def applied_in_order(self) -> list[dict[str, Any]]:
        """A copy of what was applied so far, in the order it was applied."""
        with self._lock:
            return list(self.applied)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "requests": self.requests,
                "applied": len(self.applied),
                "replayed": self.replayed,
                "resent_keys": len(self.resent_keys),
                "max_in_flight": self.max_in_flight,
                "max_in_flight_per_lane": self.max_in_flight_per_lane,
                "out_of_order": self.out_of_order,
                "out_of_order_lanes": sorted(self.out_of_order_lanes),
                "lanes": len(self.last_applied_per_lane),
                "pending_script": list(self._script),
            }

    # --- The contract ----------------------------------------------------------------

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
        lane = headers.get("x-sync-lane", "")
        with self._lock:
            self.requests += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self.in_flight_per_lane[lane] = self.in_flight_per_lane.get(lane, 0) + 1
            self.max_in_flight_per_lane = max(self.max_in_flight_per_lane, self.in_flight_per_lane[lane])
        try:
            return self._handle(method, path, headers, body)
        finally:
            with self._lock:
                self.in_flight -= 1
                self.in_flight_per_lane[lane] -= 1

    def _handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
        received_at = time.time()
        if self.token and headers.get("authorization") != f"Bearer {self.token}":
            return Reply(HTTPStatus.UNAUTHORIZED, {"detail": "missing or wrong bearer token"})
        route = self._route(method, path)
        if isinstance(route, Reply):
            return route
        resource, object_id = route
        key = headers.get("idempotency-key", "")
        sequence = headers.get("x-sync-sequence", "")
        lane = headers.get("x-sync-lane", "")
        if not key or not sequence.isdigit() or not lane:
            return Reply(
                HTTPStatus.BAD_REQUEST, {"detail": "Idempotency-Key, X-Sync-Lane and X-Sync-Sequence are required"}
            )
        slots = parse_slots(headers.get("x-sync-slots", ""))
        if slots is None or slots[0] != (lane, int(sequence)):
            return Reply(
                HTTPStatus.BAD_REQUEST,
                {"detail": "X-Sync-Slots must list <lane>=<sequence>,… starting with X-Sync-Lane=X-Sync-Sequence"},
            )
        data = None
        if method != "DELETE":
            try:
                data = json.loads(body or b"null")
            except ValueError:
                return Reply(HTTPStatus.BAD_REQUEST, {"detail": "the body is not JSON"})
            if not isinstance(data, dict) or (object_id is None and not isinstance(data.get("id"), int)):
                return Reply(HTTPStatus.BAD_REQUEST, {"detail": "the body must be a record with an integer id"})
            object_id = object_id if object_id is not None else data["id"]

        fingerprint = hashlib.sha256(f"{method} {path} ".encode() + (body or b"")).hexdigest()
        with self._lock:
            stored = self._keys.get(key)
            if stored is not None:
                self.resent_keys.add(key)
                if stored.fingerprint != fingerprint:
                    return Reply(HTTPStatus.UNPROCESSABLE_ENTITY, {"detail": "key reused with a different request"})
                if stored.reply is None:
                    return Reply(HTTPStatus.CONFLICT, {"detail": "a request with this key is being processed"})
                self.replayed += 1
                return stored.reply
            fault = self._next_fault()
            if fault in (ERROR, REJECT):
                return self._fault_reply(fault)
            self._keys[key] = _Stored(fingerprint)

        try:
            time.sleep(LATENCY_SECONDS[resource] * self.latency_scale)
            if fault == TIMEOUT:
                time.sleep(self.timeout_seconds)
            # A PUT or DELETE has the id in its path, a POST in its body (checked above).
            reply = self._apply(method, resource, cast(int, object_id), data, key, slots, received_at)
        except BaseException:
            with self._lock:
                self._keys.pop(key, None)
            raise
        with self._lock:
            self._keys[key].reply = reply
        return Reply(reply.status, reply.body, reply.headers, lost=fault == LOST_RESPONSE)

    def _route(self, method: str, path: str) -> tuple[str, int | None] | Reply:
        parts = [part for part in path.split("?")[0].split("/") if part]
        if not parts or parts[0] not in RESOURCES or len(parts) > 2:
            return Reply(HTTPStatus.NOT_FOUND, {"detail": f"no such resource: {path}"})
        if len(parts) == 1:
            return (parts[0], None) if method == "POST" else Reply(HTTPStatus.METHOD_NOT_ALLOWED)
        if method not in ("PUT", "DELETE"):
            return Reply(HTTPStatus.METHOD_NOT_ALLOWED)
        if not parts[1].isdigit():
            return Reply(HTTPStatus.NOT_FOUND, {"detail": f"not an id: {parts[1]}"})
        return parts[0], int(parts[1])

    def _next_fault(self) -> str | None:
        if self._script:
            return self._script.popleft()
        roll = self._random.random()
        for fault, rate in ((ERROR, self.error_rate), (TIMEOUT, self.timeout_rate)):
            if roll < rate:
                return fault
            roll -= rate
        if roll < self.lost_response_rate:
            return LOST_RESPONSE
        return None

    def _fault_reply(self, fault: str) -> Reply:
        if fault == REJECT:
            return Reply(HTTPStatus.BAD_REQUEST, {"detail": "rejected by fault injection"})
        headers = {"Retry-After": str(self.retry_after)} if self.retry_after is not None else {}
        return Reply(HTTPStatus.SERVICE_UNAVAILABLE, {"detail": "unavailable (fault injection)"}, headers)

    def _apply(
        self,
        method: str,
        resource: str,
        object_id: int,
        data: Any,
        key: str,
        slots: list[tuple[str, int]],
        received_at: float,
    ) -> Reply:
        with self._lock:
            # Every lane the change holds a slot in must see it after all its earlier slots.
            for lane, sequence in slots:
                if sequence <= self.last_applied_per_lane.get(lane, 0):
                    self.out_of_order += 1
                    self.out_of_order_lanes.add(lane)
                self.last_applied_per_lane[lane] = max(sequence, self.last_applied_per_lane.get(lane, 0))
            own_lane, sequence = slots[0]
            self.applied.append(
                {
                    "lane": own_lane,
                    "sequence": sequence,
                    "slots": [f"{lane}={number}" for lane, number in slots],
                    "key": key,
                    "method": method,
                    "resource": resource,
                    "id": object_id,
                    "received_at": received_at,
                }
            )
            if method == "DELETE":
                self.records[resource].pop(object_id, None)
                return Reply(HTTPStatus.NO_CONTENT)
            self.records[resource][object_id] = data
            return Reply(HTTPStatus.CREATED if method == "POST" else HTTPStatus.OK, data)
