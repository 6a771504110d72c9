"""The database's clock: for times that processes on several hosts write and compare."""

from datetime import timedelta

from django.db.models import DateTimeField, ExpressionWrapper
from django.db.models.functions import Now


class DatabaseNow(Now):
    """The database's time when the statement reads it.

    On PostgreSQL that is ``clock_timestamp()``: neither the transaction's start nor the
    statement's, so an UPDATE that waited for a row lock still sees the time after the wait.
    """

    def as_postgresql(self, compiler, connection, **extra_context):
        return self.as_sql(compiler, connection, template="CLOCK_TIMESTAMP()", **extra_context)


def database_now_plus(seconds: float) -> ExpressionWrapper:
    """The database's time, ``seconds`` from when the statement reads it."""
    return ExpressionWrapper(DatabaseNow() + timedelta(seconds=seconds), output_field=DateTimeField())
