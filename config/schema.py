"""The OpenAPI schema's error answers: every operation documents the 4xx it can give."""

from typing import Any

ERROR = {"type": "object", "properties": {"detail": {"type": "string"}}, "required": ["detail"]}
MESSAGES = {"type": "array", "items": {"type": "string"}}
FIELD_ERRORS = {
    "type": "object",
    "description": (
        "Messages per field; `non_field_errors` for the request as a whole, `detail` for a malformed body. "
        "A list field's messages are per item, by index."
    ),
    "properties": {"detail": {"type": "string"}},
    "additionalProperties": {"anyOf": [MESSAGES, {"type": "object", "additionalProperties": MESSAGES}]},
}
WRITES = {"post", "put", "patch", "delete"}


def _answer(description: str, schema: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
    }


def document_errors(result: dict[str, Any], generator, request, public) -> dict[str, Any]:
    """drf-spectacular postprocessing hook: add the 400/401/403/404/409/413/415/429 answers each operation can give.

    A list's 404 is a page past its end; 413 and 415 are for a body. An operation's own declaration of a code wins.
    """
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas.setdefault("Error", ERROR)
    schemas.setdefault("FieldErrors", FIELD_ERRORS)
    for path, operations in result.get("paths", {}).items():
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            errors = {}
            if method in WRITES or "{" not in path:  # a body, or a list's filters, search and page
                errors["400"] = _answer("Invalid input: the messages per field.", "FieldErrors")
            errors["429"] = _answer("Too many requests; retry after the time in `Retry-After`.", "Error")
            if not path.startswith("/api/auth/"):
                errors["401"] = _answer("No credentials, or invalid ones.", "Error")
                errors["403"] = _answer("The user lacks the permission this needs.", "Error")
            if "{" in path:
                errors["404"] = _answer("No such record, or not one the user may see.", "Error")
            elif _is_paginated(operation):
                errors["404"] = _answer("No such page.", "Error")
            if method in WRITES and "{" in path:
                errors["409"] = _answer("Not possible in the record's current state; the message says why.", "Error")
            if method == "post" and "{" not in path and not path.startswith("/api/auth/"):
                errors["409"] = _answer("A concurrent change conflicts; reload and try again.", "Error")
            if "requestBody" in operation:
                errors["413"] = _answer("The body is larger than DATA_UPLOAD_MAX_MEMORY_SIZE.", "Error")
                errors["415"] = _answer("The body is not JSON, a form or multipart.", "Error")
            for code, answer in errors.items():
                responses.setdefault(code, answer)
    return result


def _is_paginated(operation: dict[str, Any]) -> bool:
    return any(parameter.get("name") == "page" for parameter in operation.get("parameters", []))
