"""Lockout after failed sign-ins (django-axes): the client address it counts by, and what a locked-out client gets."""

from http import HTTPStatus

from django.conf import settings
from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from rest_framework.throttling import BaseThrottle

LOCKED_OUT = "Too many failed sign-ins for this account or from this address; try again later."


def client_address(request: HttpRequest) -> str | None:
    """AXES_CLIENT_IP_CALLABLE: the address the API's throttles count by.

    With API_NUM_PROXIES proxies in front, the entry they appended to X-Forwarded-For; with 0, only the
    socket's address, so a client cannot choose its own address by sending the header.
    """
    return BaseThrottle().get_ident(request)  # type: ignore[arg-type]  # it reads only META, which both requests have


def lockout_seconds() -> int:
    """How long a lockout lasts after the failure that caused it: the `Retry-After` of a locked-out answer."""
    return int(settings.AXES_COOLOFF_TIME.total_seconds())


def lockout_response(request: HttpRequest, original_response=None, credentials=None) -> HttpResponse:
    """AXES_LOCKOUT_CALLABLE: an admin page saying that signing in is locked and for how long (429)."""
    context = {
        **admin.site.each_context(request),
        "title": "Too many failed sign-ins",
        "failure_limit": settings.AXES_FAILURE_LIMIT,
        "lockout_minutes": lockout_seconds() // 60,
    }
    response = render(request, "accounts/lockout.html", context, status=HTTPStatus.TOO_MANY_REQUESTS)
    response["Retry-After"] = str(lockout_seconds())
    return response
