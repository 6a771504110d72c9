"""Checks a scheduled change exactly as the equivalent immediate API request would, writing nothing."""

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

from django.core.exceptions import ValidationError
from django.db import models
from rest_framework import serializers as drf_serializers

from schools import access
from schools.access import AnyUser
from schools.models import ScheduledChange, school_id_of
from schools.services import RESOURCES
from sync.models import Operation, Resource

TARGET_REQUIRED = "An update or delete needs the target_id of the record to change."
TARGET_NOT_ALLOWED = "A create has no target_id."
DELETE_TAKES_NO_DATA = "A delete takes no data."
TARGET_MISSING = "There is no {resource} record with id {target_id}."
UNKNOWN_FIELDS = "{fields}: not a field {resource} can be given (they are: {writable})."
MAY_NOT = "You may not {operation} {resource} ({permission})."
CREATOR_GONE = "The user who scheduled this change no longer exists."
CREATOR_INACTIVE = "{user}, who scheduled this change, has been deactivated."
CREATOR_MAY_NOT = "{user}, who scheduled this change, may no longer make it: {reason}"
CREATOR_NOT_MEMBER = "{user}, who scheduled this change, may no longer act on the school of the record it changes."

MODELS = {resource: (model, serializer) for model, (resource, serializer) in RESOURCES.items()}
PERMISSION_ACTIONS = {Operation.CREATE: "add", Operation.UPDATE: "change", Operation.DELETE: "delete"}


PARENT_FIELDS = {
    Resource.GRADES: "school",
    Resource.TEACHERS: "school",
    Resource.CLASSES: "grade",
    Resource.STUDENTS: "school_class",
}
"""The field naming the parent a created record belongs under, and so its school."""


def required_permission(resource: str, operation: str) -> str:
    """The model permission the immediate request needs, which scheduling the change needs too."""
    model, _ = MODELS[Resource(resource)]
    return f"{model._meta.app_label}.{PERMISSION_ACTIONS[Operation(operation)]}_{model._meta.model_name}"


def permission_refusal(user: AnyUser, resource: str, operation: str) -> str | None:
    """Why the user may not make this kind of change anywhere; None if they may.

    Which records they may make it to is their schools' (checked as the change is validated).
    """
    permission = required_permission(resource, operation)
    if not user.has_perm(permission):
        return MAY_NOT.format(operation=operation, resource=resource, permission=permission)
    if resource == Resource.SCHOOLS and operation == Operation.CREATE and not access.may_access(user, [None]):
        return access.NEW_SCHOOL_NEEDS_DISTRICT
    return None


def creator_refusal(change: ScheduledChange, target: models.Model | None) -> str | None:
    """Why the change's creator may not make it now that it runs; None if they may.

    ``target`` is the record an update or delete changes, as it is now.
    """
    creator = change.created_by
    if creator is None:
        return CREATOR_GONE
    if not creator.is_active:
        return CREATOR_INACTIVE.format(user=creator.username)
    refusal = permission_refusal(creator, change.resource, change.operation)
    if refusal:
        return CREATOR_MAY_NOT.format(user=creator.username, reason=refusal)
    school_id = school_of_change(change.resource, target, change.data)
    if school_id is not None and not access.may_access(creator, [school_id]):
        return CREATOR_NOT_MEMBER.format(user=creator.username)
    return None


def school_of_prepared(prepared: "PreparedChange") -> int | None:
    """The school a validated change belongs to, from the records its validation read: no query."""
    if prepared.instance is not None:
        return school_id_of(prepared.instance)
    return school_id_of(prepared.model(**prepared.data))


def school_of_change(resource: str, target: models.Model | None, data: Mapping[str, Any]) -> int | None:
    """The school a change belongs to: its record's, or for a create its parent's, as they are now.

    None for a new school, or a parent that does not exist.
    """
    if target is not None:
        return school_id_of(target)
    field = PARENT_FIELDS.get(Resource(resource))
    if field is None:
        return None
    model, _ = MODELS[Resource(resource)]
    parent_model = model._meta.get_field(field).related_model
    try:
        parent_id = int(data.get(field))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    parent = parent_model._default_manager.filter(pk=parent_id).first()  # type: ignore[union-attr]
    return school_id_of(parent) if parent is not None else None


@dataclass
class PreparedChange:
    model: type[models.Model]
    instance: models.Model | None  # the record to update or delete
    data: Mapping[str, Any]  # validated field values


_UNFETCHED = object()


def prepare(
    resource: str,
    operation: str,
    target_id: int | None,
    data: Mapping[str, Any],
    *,
    user: AnyUser,
    target: Any = _UNFETCHED,
) -> PreparedChange:
    """Check a change the way the immediate API request of ``user`` does; raises ValidationError.

    Records outside the user's schools do not exist for it, as for the request. ``target``
    is the record to change when the caller fetched it already (None: not found).
    """
    model, serializer_class = MODELS[Resource(resource)]
    _refuse_unknown_fields(resource, serializer_class, data)
    if operation == Operation.CREATE:
        if target_id is not None:
            raise ValidationError({"target_id": TARGET_NOT_ALLOWED})
        return PreparedChange(model, None, _validated(serializer_class, data, user))
    if target_id is None:
        raise ValidationError({"target_id": TARGET_REQUIRED})
    if target is _UNFETCHED:
        target = access.scoped(model._default_manager.all(), user).filter(pk=target_id).first()
    if target is None:
        raise ValidationError({"target_id": TARGET_MISSING.format(resource=resource, target_id=target_id)})
    if operation == Operation.DELETE:
        if data:
            raise ValidationError({"data": DELETE_TAKES_NO_DATA})
        return PreparedChange(model, target, {})
    return PreparedChange(model, target, _validated(serializer_class, data, user, target, partial=True))


def validate_as_immediate(prepared: PreparedChange) -> None:
    """Run the model validation the service would run, without writing anything."""
    if prepared.instance is None:
        candidate = prepared.model(**prepared.data)
    elif prepared.data:
        candidate = _detached_copy(prepared.instance)
        for field, value in prepared.data.items():
            setattr(candidate, field, value)
    else:
        return
    untouched = _untouched_unique_fields(prepared.model, prepared.data) if prepared.instance is not None else set()
    try:
        candidate.full_clean(exclude=untouched)
    except ValidationError as exc:
        raise ValidationError({"data": exc.messages}) from exc


def targets(changes: list[Mapping[str, Any]], user: AnyUser) -> dict[tuple[str, int], models.Model]:
    """The records of the user's schools a batch updates or deletes, one query per resource."""
    wanted: dict[str, set[int]] = {}
    for change in changes:
        if change.get("target_id") is not None and change.get("resource") in MODELS:
            wanted.setdefault(change["resource"], set()).add(change["target_id"])
    found = {}
    for resource, ids in wanted.items():
        model, _ = MODELS[Resource(resource)]
        records = access.scoped(model._default_manager.all(), user).in_bulk(ids)
        found.update({(resource, pk): record for pk, record in records.items()})
    return found


def error_text(exc: Exception) -> str:
    """A validation error (or any other) as one line, for a change's ``error`` field."""
    if isinstance(exc, ValidationError):
        return _flatten(exc.message_dict) if hasattr(exc, "error_dict") else " ".join(exc.messages)
    return str(exc)


def _validated(
    serializer_class, data: Mapping[str, Any], user: AnyUser, instance=None, partial: bool = False
) -> dict[str, Any]:
    serializer = _serializer(serializer_class, partial)
    serializer.instance = instance
    serializer._context = {"user": user}  # references to other schools' records are refused
    try:
        return serializer.run_validation(data)
    except drf_serializers.ValidationError as exc:
        # A serializer's errors are keyed by field (or non_field_errors).
        raise ValidationError({"data": [_flatten(cast(dict[str, Any], exc.detail))]}) from exc


def _refuse_unknown_fields(resource: str, serializer_class, data: Mapping[str, Any]) -> None:
    """Only the fields the immediate request could write: anything else would be stored and never applied."""
    writable = [name for name, field in _serializer(serializer_class, False).fields.items() if not field.read_only]
    unknown = sorted(set(data) - set(writable))
    if unknown:
        message = UNKNOWN_FIELDS.format(fields=", ".join(unknown), resource=resource, writable=", ".join(writable))
        raise ValidationError({"data": [message]})


_per_thread = threading.local()


def _serializer(serializer_class, partial: bool):
    """One validating serializer per kind and thread: building a ModelSerializer's fields is costly."""
    serializers = _per_thread.__dict__.setdefault("serializers", {})
    key = (serializer_class, partial)
    if key not in serializers:
        serializers[key] = serializer_class(partial=partial)
    return serializers[key]


def _flatten(errors: Mapping[str, Any]) -> str:
    return "; ".join(f"{field}: {' '.join(str(m) for m in messages)}" for field, messages in errors.items())


def _untouched_unique_fields(model: type[models.Model], changed: Mapping[str, Any]) -> set[str]:
    """Single-field unique fields an update leaves alone: they cannot start clashing, so
    their uniqueness queries are skipped (as a ModelForm skips fields it does not edit).
    Fields in multi-field constraints are always checked."""
    in_composites = {
        name
        for constraint in model._meta.constraints
        if isinstance(constraint, models.UniqueConstraint)
        for name in (constraint.fields if len(constraint.fields) > 1 or constraint.expressions else ())
    }
    return {
        field.name
        for field in model._meta.concrete_fields
        if field.unique and not field.primary_key and field.name not in changed and field.name not in in_composites
    }


def _detached_copy(instance: models.Model) -> models.Model:
    """The same stored record as a separate object, so validating a change leaves the original alone."""
    names = [field.attname for field in instance._meta.concrete_fields]
    return type(instance).from_db(instance._state.db, names, [getattr(instance, name) for name in names])
