"""Worker lifecycle hooks: name this worker's leases, and resume what its dead predecessor held."""

from typing import Any


def on_worker_init(sender: str, options: dict[str, Any] | None = None, **kwargs: Any) -> None:
    """celeryd_init, in the worker's main process before its pool starts: leases carry its name.

    The node name and the queues it consumes: a sync and a default worker left with
    Celery's default node name (celery@host) are still told apart.
    """
    from sync import lease

    queues = (options or {}).get("queues") or []
    lease.name_holder(f"{sender} [{','.join(sorted(queues)) if not isinstance(queues, str) else queues}]")


def on_worker_ready(sender: Any, **kwargs: Any) -> None:
    """worker_ready: a restarted worker's lanes resume at once instead of waiting for leases to expire."""
    from django.db import connection

    from sync import dispatcher, lease

    try:
        dispatcher.resume_after_restart(lease.holder())
    finally:
        connection.close()  # the main process keeps no connection; the pool's processes have their own
