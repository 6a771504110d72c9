"""REST API plumbing shared by every app: pagination, the 409 error, error translation and the API's own 400 and 404."""

import logging
from typing import cast

from django.contrib.auth.models import User
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from rest_framework import exceptions, pagination, status
from rest_framework.request import Request
from rest_framework.settings import api_settings
from rest_framework.views import exception_handler as drf_exception_handler

from config.errors import ConflictError

logger = logging.getLogger(__name__)

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500  # keeps a single response (and its queries) bounded
API_PATH = "/api/"

CONCURRENT_CHANGE = "The change conflicts with a concurrent change to the same records; reload and try again."


class StandardPagination(pagination.PageNumberPagination):
    page_size = DEFAULT_PAGE_SIZE
    page_size_query_param = "page_size"
    max_page_size = MAX_PAGE_SIZE


def signed_in_user(request: HttpRequest | Request) -> User:
    """The user of a request that passed authentication, as every endpoint and admin page requires."""
    return cast(User, request.user)


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = CONCURRENT_CHANGE
    default_code = "conflict"


def exception_handler(exc, context):
    """Turn model validation errors into 400s keyed by field, and conflicts and constraint races into 409s."""
    if isinstance(exc, ConflictError):
        exc = Conflict(str(exc))
    elif isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(detail=_validation_detail(exc))
    elif isinstance(exc, IntegrityError):
        # Validation already passed, so a concurrent request won the race for a unique value
        # or removed a referenced record; the transaction has been rolled back.
        logger.warning("Write refused by a database constraint: %s", exc)
        exc = Conflict()
    return drf_exception_handler(exc, context)


def _validation_detail(exc: DjangoValidationError) -> dict[str, list[str]]:
    if not hasattr(exc, "error_dict"):
        return {api_settings.NON_FIELD_ERRORS_KEY: exc.messages}
    return {
        (api_settings.NON_FIELD_ERRORS_KEY if field == "__all__" else field): messages
        for field, messages in exc.message_dict.items()
    }


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    """Django's 400 for a request it refuses itself (a form of too many fields): JSON under /api/."""
    if request.path.startswith(API_PATH):
        return JsonResponse({"detail": str(exceptions.ParseError.default_detail)}, status=status.HTTP_400_BAD_REQUEST)
    return defaults.bad_request(request, exception)


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """Django's 404 for a URL no route matches (``/api/schools/x/``): JSON under /api/, like every API answer."""
    if request.path.startswith(API_PATH):
        return JsonResponse({"detail": str(exceptions.NotFound.default_detail)}, status=status.HTTP_404_NOT_FOUND)
    return defaults.page_not_found(request, exception)
