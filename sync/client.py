"""HTTP client for the external system: sends one entry and classifies the outcome once."""

import email.utils
import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache

import httpx
from django.conf import settings

from sync.models import Operation, OperationLog, Outcome

# Retryable answers besides 5xx: timeout, still processing the same key, too early, too many.
TRANSIENT_STATUS_CODES = frozenset({408, 409, 425, 429})
MAX_ERROR_LENGTH = 2000  # of a response body kept as the attempt's error

METHODS = {Operation.CREATE: "POST", Operation.UPDATE: "PUT", Operation.DELETE: "DELETE"}


@dataclass(frozen=True)
class PushResult:
    outcome: Outcome
    status_code: int | None = None
    error: str = ""
    retry_after: float | None = None  # seconds, from the Retry-After header
    duration: float = 0.0  # seconds

    @property
    def ok(self) -> bool:
        return self.outcome == Outcome.SUCCESS


class ExternalApiClient:
    """One keep-alive connection pool per process, with the contract's headers on every call."""

    def __init__(self, *, base_url: str, token: str, timeout: float, transport: httpx.BaseTransport | None = None):
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.timeout = timeout
        self._http = httpx.Client(base_url=base_url, headers=headers, timeout=timeout, transport=transport)

    def push(self, entry: OperationLog) -> PushResult:
        method = METHODS[Operation(entry.operation)]
        path = f"/{entry.resource}" if method == "POST" else f"/{entry.resource}/{entry.object_id}"
        body = None if method == "DELETE" else json.dumps(entry.payload, separators=(",", ":"))
        headers = {"Idempotency-Key": str(entry.idempotency_key), "X-Sync-Sequence": str(entry.sequence)}
        started = time.monotonic()
        try:
            response = self._http.request(method, path, content=body, headers=headers)
        except httpx.TimeoutException:
            return PushResult(
                Outcome.TRANSIENT, error=f"timed out after {self.timeout:g}s", duration=time.monotonic() - started
            )
        except httpx.TransportError as exc:
            return PushResult(
                Outcome.TRANSIENT, error=f"{type(exc).__name__}: {exc}", duration=time.monotonic() - started
            )
        return classify(response, duration=time.monotonic() - started)

    def close(self) -> None:
        self._http.close()


def classify(response: httpx.Response, *, duration: float = 0.0) -> PushResult:
    """2xx succeeds; 408/409/425/429/5xx are retried; any other answer needs an operator."""
    code = response.status_code
    if 200 <= code < 300:
        return PushResult(Outcome.SUCCESS, status_code=code, duration=duration)
    error = f"HTTP {code}: {response.text[:MAX_ERROR_LENGTH]}".rstrip(": ")
    if code in TRANSIENT_STATUS_CODES or code >= 500:
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        return PushResult(Outcome.TRANSIENT, status_code=code, error=error, retry_after=retry_after, duration=duration)
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
