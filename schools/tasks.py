"""Celery tasks for scheduled changes: thin wrappers around schools.scheduling.runner."""

from celery import shared_task

from schools.scheduling import runner


# The task names are what beat's rows and queued messages carry; they stay as they are.
@shared_task(name="schools.run_due_changes")
def run_due_changes() -> None:
    runner.run_due()


@shared_task(name="schools.sweep_scheduled_changes")
def sweep_scheduled_changes() -> None:
    runner.sweep()
