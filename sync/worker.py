"""Worker lifecycle hooks: name this worker's leases, and resume what its dead predecessor held."""

from typing import Any


def on_worker_init(sender: str, **kwargs: Any) -> None:
    """celeryd_init, in the worker's main process before its pool starts: leases carry the node name."""
    from sync import lease

    lease.name_holder(sender)


def on_worker_ready(sender: Any, **kwargs: Any) -> None:
    """worker_ready: a restarted worker's lanes resume at once instead of waiting for leases to expire."""
    from django.db import connection

    from sync import dispatcher

    try:
        dispatcher.resume_after_restart(sender.hostname)
    finally:
        connection.close()  # the main process keeps no connection; the pool's processes have their own
