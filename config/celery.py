"""The Celery application shared by the sync worker, the default worker and beat."""

import os

from celery import Celery
from celery.signals import celeryd_init, task_postrun, task_prerun, worker_ready
from django.db import close_old_connections

from sync.worker import on_worker_init, on_worker_ready

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("school_sync")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

celeryd_init.connect(on_worker_init)
worker_ready.connect(on_worker_ready)


@task_prerun.connect
@task_postrun.connect
def apply_django_connection_rules(task=None, **kwargs) -> None:
    """Treat each task like a request: reuse the database connection within CONN_MAX_AGE,
    health-check it, and drop it if it broke (CELERY_DB_REUSE_MAX stops Celery from
    closing it after every task, which cost a new connection per push)."""
    if task is not None and getattr(task.request, "is_eager", False):
        return  # run in the caller's process, maybe inside its transaction: leave it alone
    close_old_connections()
