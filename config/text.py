"""Characters that change how text around them is shown: control characters and text-direction overrides."""

import unicodedata

# In a name they can make "Anna" display as something else in a list, a log or the other system.
BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def is_control(char: str) -> bool:
    """A control character (C0, DEL, C1) or a text-direction override."""
    return unicodedata.category(char) == "Cc" or char in BIDI_CONTROLS
