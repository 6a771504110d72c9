"""The Celery application shared by the sync worker, the default worker and beat."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("school_sync")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
