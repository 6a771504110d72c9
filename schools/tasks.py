"""Celery tasks for scheduled changes: thin wrappers around schools.scheduling."""

from celery import shared_task

from schools import scheduling


@shared_task(name="schools.run_due_changes")
def run_due_changes() -> None:
    scheduling.run_due_changes()


@shared_task(name="schools.sweep_scheduled_changes")
def sweep_scheduled_changes() -> None:
    scheduling.sweep_scheduled_changes()
