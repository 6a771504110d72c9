"""Celery tasks for scheduled changes and imports: thin wrappers around their runner and services."""

from celery import shared_task
from django.utils import timezone

from schools.imports import services as imports
from schools.scheduling import runner


# The task names are what beat's rows and queued messages carry; they stay as they are.
@shared_task(name="schools.run_due_changes")
def run_due_changes() -> None:
    runner.run_due()


@shared_task(name="schools.sweep_scheduled_changes")
def sweep_scheduled_changes() -> None:
    runner.sweep()


@shared_task(name="schools.run_import")
def run_import(import_id: str) -> None:
    imports.import_run(import_id)


@shared_task(name="schools.sweep_imports")
def sweep_imports() -> None:
    imports.sweep(timezone.now())
