"""The external system's health: probed by a periodic job, read from the cache by pages that show it."""

import logging
import time
from datetime import datetime
from typing import Any, cast

import httpx
from django.conf import settings
from django.core.cache import cache
from django.utils import timezone
from django.utils.dateparse import parse_datetime

logger = logging.getLogger(__name__)

HEALTH_CACHE_KEY = "sync:external-health"
HEALTH_TIMEOUT_SECONDS = 5.0  # a probe never takes longer than this (or the push timeout)
# The job runs every 60 s; a result older than three runs means the job is not running.
HEALTH_STALE_AFTER_SECONDS = 180


def refresh_health() -> dict[str, Any]:
    """Probe the external system once and cache what was seen."""
    url = settings.SYNC_API_URL.rstrip("/") + settings.SYNC_HEALTH_PATH
    started = time.monotonic()
    result: dict[str, Any] = {"reachable": False, "status_code": None, "latency_ms": None, "error": ""}
    try:
        response = httpx.get(url, timeout=min(HEALTH_TIMEOUT_SECONDS, settings.SYNC_HTTP_TIMEOUT))
    except httpx.HTTPError as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"
    else:
        result["status_code"] = response.status_code
        result["reachable"] = response.status_code < 500
        if not result["reachable"]:
            result["error"] = f"HTTP {response.status_code}"
    result["latency_ms"] = round((time.monotonic() - started) * 1000, 1)
    result["checked_at"] = timezone.now().isoformat()
    cache.set(HEALTH_CACHE_KEY, result, timeout=None)
    logger.info("external health reachable=%s latency_ms=%s %s", result["reachable"], result["latency_ms"], url)
    return result


def read_health() -> dict[str, Any]:
    """The last probe, with ``stale`` set when it is missing or too old. Never raises.

    Pages and the status API read only this; they never call the external system.
    """
    try:
        cached = cache.get(HEALTH_CACHE_KEY)
    except Exception:  # the cache being down must not break a page
        logger.warning("could not read the external health from the cache", exc_info=True)
        cached = None
    if not cached:
        return {
            "reachable": None,
            "status_code": None,
            "latency_ms": None,
            "error": "",
            "checked_at": None,
            "age_seconds": None,
            "stale": True,
        }
    checked_at = cast(datetime, parse_datetime(cached["checked_at"]))  # as refresh_health() stored it
    age = (timezone.now() - checked_at).total_seconds()
    return {**cached, "age_seconds": round(age, 1), "stale": age > HEALTH_STALE_AFTER_SECONDS}
