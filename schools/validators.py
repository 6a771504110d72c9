"""What text the records accept: names without control or bidirectional-override characters, bounded addresses."""

from django.core.exceptions import ValidationError

from config.text import is_control

MAX_ADDRESS_LENGTH = 1000
LINE_BREAKS = frozenset("\n\r\t")

NAME_REFUSED = "Names may not contain control or text-direction characters."
TEXT_REFUSED = "Text may not contain control or text-direction characters other than line breaks and tabs."


def _forbidden(value: str, allowed: frozenset[str] = frozenset()) -> bool:
    return any(char not in allowed and is_control(char) for char in value)


def validate_name(value: str) -> None:
    if _forbidden(value):
        raise ValidationError(NAME_REFUSED, code="invalid_characters")


def validate_text(value: str) -> None:
    """For longer text such as an address: line breaks and tabs are fine, other control characters are not."""
    if _forbidden(value, allowed=LINE_BREAKS):
        raise ValidationError(TEXT_REFUSED, code="invalid_characters")
