"""Request input the API refuses with a 400 before it reaches the database: deep or NUL-laden JSON,
integers no column can hold, times no database can compare, searches of too many terms."""

from datetime import UTC, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django_filters import DateTimeFilter, ModelChoiceFilter, NumberFilter
from django_filters.rest_framework import DjangoFilterBackend
from rest_framework import exceptions, filters, parsers, status

MAX_SEARCH_TERMS = 10
"""Words in one ``search``: each is a condition on every search field, so a thousand of them
make a query no database plans quickly (and SQLite refuses)."""
MAX_DATABASE_INTEGER = 2**63 - 1
"""The largest id or number a filter may name: a 64-bit column's bound."""
NUL_REFUSED = "Text may not contain NUL (\\x00) characters."
MAX_UTC_OFFSET = timedelta(hours=16)
"""PostgreSQL refuses a time zone offset of 16 hours or more, which Python's ISO 8601 parser accepts (up to 24)."""
TIME_OUT_OF_RANGE = "Ensure the time zone offset is under 16 hours and the time, in UTC, within the years 1 to 9999."


class RequestTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is too large."
    default_code = "request_too_large"


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser, refusing with a 400 what would otherwise end in a 500.

    JSON nested deeper than Python can parse recursively, any string (key or value) with
    a NUL character, which PostgreSQL cannot store, and a body above
    DATA_UPLOAD_MAX_MEMORY_SIZE (413).
    """

    def parse(self, stream, media_type=None, parser_context=None) -> Any:
        request = (parser_context or {}).get("request")
        length = int(request.META.get("CONTENT_LENGTH") or 0) if request is not None else 0
        if settings.DATA_UPLOAD_MAX_MEMORY_SIZE is not None and length > settings.DATA_UPLOAD_MAX_MEMORY_SIZE:
            raise RequestTooLarge()
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError as exc:
            raise exceptions.ParseError("JSON parse error - nested too deeply.") from exc
        if _has_nul(data):
            raise exceptions.ParseError(NUL_REFUSED)
        return data


def _has_nul(value: Any) -> bool:
    pending = [value]
    while pending:  # no recursion: the parser already accepted whatever depth this is
        item = pending.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False


class SearchFilter(filters.SearchFilter):
    """DRF's search, for at most MAX_SEARCH_TERMS words without NUL characters; refusals name ``search``."""

    def get_search_terms(self, request) -> list[str]:
        if "\x00" in request.query_params.get(self.search_param, ""):
            raise exceptions.ValidationError({self.search_param: [NUL_REFUSED]})
        try:
            terms = super().get_search_terms(request)
        except exceptions.ValidationError as exc:  # DRF's own refusal, a bare list of messages
            raise exceptions.ValidationError({self.search_param: exc.detail}) from exc
        if len(terms) > MAX_SEARCH_TERMS:
            raise exceptions.ValidationError({self.search_param: [f"At most {MAX_SEARCH_TERMS} search terms."]})
        return terms


class FilterBackend(DjangoFilterBackend):
    """django-filter, refusing ids and numbers no database column can hold (SQLite raises on them),
    and times whose offset PostgreSQL refuses or that leave Python's years in UTC."""

    def get_filterset(self, request, queryset, view):
        filterset = super().get_filterset(request, queryset, view)
        if filterset is None:
            return None
        errors = {}
        for name, field_filter in filterset.filters.items():
            values = request.query_params.getlist(name)
            if isinstance(field_filter, NumberFilter | ModelChoiceFilter):
                for value in values:
                    number = value.strip().lstrip("+-")
                    if number.isdigit() and int(number) > MAX_DATABASE_INTEGER:
                        errors[name] = [f"Ensure this value is at most {MAX_DATABASE_INTEGER}."]
            elif isinstance(field_filter, DateTimeFilter) and not all(
                _is_comparable_time(field_filter, value) for value in values
            ):
                errors[name] = [TIME_OUT_OF_RANGE]
        if errors:
            raise exceptions.ValidationError(errors)
        return filterset


def _is_comparable_time(field_filter: DateTimeFilter, value: str) -> bool:
    try:
        moment = field_filter.field.clean(value)
    except DjangoValidationError:
        return True  # not a time at all: the filterset's own validation answers
    offset = moment.utcoffset() if moment is not None else None
    if offset is None:
        return True
    try:
        moment.astimezone(UTC)
    except OverflowError:
        return False
    return abs(offset) < MAX_UTC_OFFSET
