"""Log lines: one record is one line, whatever text users put into the records it mentions."""

import logging

from config.text import BIDI_CONTROLS

# Every control character (C0, DEL, C1) and text-direction override, written as an escape.
_ESCAPES = {code: f"\\x{code:02x}" for code in [*range(0x20), *range(0x7F, 0xA0)]}
_ESCAPES |= {ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t"}
_ESCAPES |= {ord(char): f"\\u{ord(char):04x}" for char in BIDI_CONTROLS}


class OneLineFormatter(logging.Formatter):
    """Escapes control and text-direction characters in the message, so a name or an error
    text with a line break cannot forge a log line of its own. Tracebacks, which the
    formatter adds after the message, keep their lines."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = record.message.translate(_ESCAPES)
        return super().formatMessage(record)
