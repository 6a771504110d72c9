"""The design this project replaces, for the write-path benchmark only.

The same endpoints and services, but each write calls the external API before it
answers, as an application without the outbox would.
"""

from django.db import transaction

from config.wsgi import application  # noqa: F401 - sets Django up; gunicorn serves this name
from schools import services
from sync.client import get_client

_record_operation = services.entry_create


def _record_and_push_before_answering(**kwargs):
    entry = _record_operation(**kwargs)
    transaction.on_commit(lambda: get_client().push(entry))
    return entry


services.entry_create = _record_and_push_before_answering
