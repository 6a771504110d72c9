"""HTTP client for the external system: sends one entry within one deadline and classifies the outcome once."""

import email.utils
import json
import time
from contextlib import suppress
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any

import httpcore
import httpx
from django.conf import settings

from sync.models import Operation, OperationLog, Outcome

TRANSIENT_STATUS_CODES = frozenset({408, 409, 425, 429})
"""Retryable answers besides 5xx: timeout, still processing the same key, too early, too many."""

NOT_APPLIED_STATUS_CODES = frozenset({408, 425, 429})
"""Transient answers that say the request was turned away, not processed: nothing was applied."""

MAX_ERROR_LENGTH = 2000
"""Characters of a response body kept as the attempt's error."""

METHODS = {Operation.CREATE: "POST", Operation.UPDATE: "PUT", Operation.DELETE: "DELETE"}


@dataclass(frozen=True)
class PushResult:
    outcome: Outcome
    status_code: int | None = None
    error: str = ""
    retry_after: float | None = None  # seconds, from the Retry-After header
    duration: float = 0.0  # seconds
    # True when the external system may have applied the change although it did not say so
    # (a timeout, a lost answer, a 5xx, a 409 for a key still in flight).
    maybe_applied: bool = False

    @property
    def ok(self) -> bool:
        return self.outcome == Outcome.SUCCESS


def send(entry: OperationLog) -> PushResult:
    """Send one entry with the configured client; whatever happens comes back as a PushResult."""
    started = time.monotonic()
    try:
        return get_client().push(entry)
    except Exception as exc:  # a failure nobody foresaw still ends as an attempt an operator can read
        return PushResult(
            Outcome.PERMANENT,
            error=f"could not send: {type(exc).__name__}: {exc}",
            duration=time.monotonic() - started,
            maybe_applied=True,  # we cannot tell how far the call got
        )


def slots_header(entry: OperationLog) -> str:
    """``<lane>=<sequence>,…``: every slot the entry holds, its own lane first."""
    return ",".join(f"{lane}={sequence}" for lane, sequence in entry.slots())


class ExternalApiClient:
    """One keep-alive connection pool per process, with the contract's headers on every call.

    ``timeout`` bounds the whole call (connect, send, every read), not each phase alone.
    """

    def __init__(self, *, base_url: str, token: str, timeout: float, transport: httpx.BaseTransport | None = None):
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.timeout = timeout
        self._http = httpx.Client(
            base_url=base_url, headers=headers, timeout=timeout, transport=transport or DeadlineTransport()
        )

    def push(self, entry: OperationLog) -> PushResult:
        method = METHODS[Operation(entry.operation)]
        path = f"/{entry.resource}" if method == "POST" else f"/{entry.resource}/{entry.object_id}"
        body = None if method == "DELETE" else json.dumps(entry.payload, separators=(",", ":"))
        headers = {
            "Idempotency-Key": str(entry.idempotency_key),
            "X-Sync-Lane": entry.lane_id,
            "X-Sync-Sequence": str(entry.sequence),
            "X-Sync-Slots": slots_header(entry),
        }
        started = time.monotonic()
        deadline = _deadline.set(started + self.timeout)
        try:
            request = self._http.build_request(method, path, content=body, headers=headers)
            response = self._http.send(request, stream=True)
            try:
                return classify_streamed(response, started)
            finally:
                response.close()
        except httpx.HTTPError as exc:
            return self._failed(exc, time.monotonic() - started)
        finally:
            _deadline.reset(deadline)

    def _failed(self, exc: httpx.HTTPError, duration: float) -> PushResult:
        """A call that ended without an answer: transient unless it is our own request that is wrong."""
        if isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout):
            error = f"could not connect within {self.timeout:g}s"
            return PushResult(Outcome.TRANSIENT, error=error, duration=duration)
        if isinstance(exc, httpx.TimeoutException):
            error = f"timed out after {self.timeout:g}s"
            return PushResult(Outcome.TRANSIENT, error=error, duration=duration, maybe_applied=True)
        error = f"{type(exc).__name__}: {exc}"
        if isinstance(exc, httpx.ConnectError):
            return PushResult(Outcome.TRANSIENT, error=error, duration=duration)
        if isinstance(exc, httpx.UnsupportedProtocol | httpx.LocalProtocolError):
            return PushResult(Outcome.PERMANENT, error=error, duration=duration)
        return PushResult(Outcome.TRANSIENT, error=error, duration=duration, maybe_applied=True)

    def close(self) -> None:
        self._http.close()


def classify_streamed(response: httpx.Response, started: float) -> PushResult:
    """Classify a streamed response, reading its body only as far as an error needs.

    A success's body is drained undecoded (so the connection can be reused): a body the
    client cannot decode does not turn an applied change into a failure.
    """
    if response.is_success:
        # The status line says the change was applied; a body that does not arrive whole only
        # costs the connection (httpx closes it instead of reusing it).
        with suppress(httpx.HTTPError):
            if not response.is_stream_consumed:
                for _ in response.iter_raw():
                    pass
        return classify(response, duration=time.monotonic() - started)
    try:
        response.read()
    except httpx.DecodingError as exc:
        return classify(response, duration=time.monotonic() - started, body=f"(undecodable body: {exc})")
    return classify(response, duration=time.monotonic() - started)


def classify(response: httpx.Response, *, duration: float = 0.0, body: str | None = None) -> PushResult:
    """2xx succeeds; 408/409/425/429/5xx are retried; any other answer needs an operator."""
    code = response.status_code
    if 200 <= code < 300:
        return PushResult(Outcome.SUCCESS, status_code=code, duration=duration)
    text = response.text if body is None else body
    error = f"HTTP {code}: {text[:MAX_ERROR_LENGTH]}".rstrip(": ")
    if code in TRANSIENT_STATUS_CODES or code >= 500:
        return PushResult(
            Outcome.TRANSIENT,
            status_code=code,
            error=error,
            retry_after=parse_retry_after(response.headers.get("Retry-After")),
            duration=duration,
            maybe_applied=code not in NOT_APPLIED_STATUS_CODES,
        )
    return PushResult(Outcome.PERMANENT, status_code=code, error=error, duration=duration)


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After is either delay-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def get_client() -> ExternalApiClient:
    return _client_for(settings.SYNC_API_URL, settings.SYNC_API_TOKEN, settings.SYNC_HTTP_TIMEOUT)


@cache
def _client_for(base_url: str, token: str, timeout: float) -> ExternalApiClient:
    return ExternalApiClient(base_url=base_url, token=token, timeout=timeout)


# --- One deadline for the whole call --------------------------------------------------------
# httpx's timeout applies to each network operation, so a server that trickles its answer
# can hold a call far longer. These wrappers give every connect, write and read only what
# is left of the call's deadline.

_deadline: ContextVar[float | None] = ContextVar("sync_client_deadline", default=None)


def _remaining(timeout: float | None, on_expiry: type[Exception]) -> float | None:
    deadline = _deadline.get()
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        raise on_expiry("the call's deadline has passed")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(self, stream: httpcore.NetworkStream):
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, _remaining(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, _remaining(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(self, ssl_context, server_hostname=None, timeout=None) -> httpcore.NetworkStream:
        tls = self._stream.start_tls(ssl_context, server_hostname, _remaining(timeout, httpcore.ConnectTimeout))
        return _DeadlineStream(tls)

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _DeadlineBackend(httpcore.SyncBackend):
    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None) -> httpcore.NetworkStream:
        timeout = _remaining(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(super().connect_tcp(host, port, timeout, local_address, socket_options))


POOL_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20, keepalive_expiry=5.0)
"""httpx's default limits: idle keep-alive connections are dropped after 5 s, before servers drop them."""


class DeadlineTransport(httpx.HTTPTransport):
    """httpx's own transport over a connection pool whose network operations share the call's deadline."""

    def __init__(self) -> None:
        super().__init__(limits=POOL_LIMITS)
        # httpx builds its pool without a way to pass a network backend: the same pool, with ours.
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(),
            max_connections=POOL_LIMITS.max_connections,
            max_keepalive_connections=POOL_LIMITS.max_keepalive_connections,
            keepalive_expiry=POOL_LIMITS.keepalive_expiry,
            network_backend=_DeadlineBackend(),
        )
