"""The periodic jobs beat runs, as rows in the database."""

import pytest
from django_celery_beat.models import PeriodicTask

pytestmark = pytest.mark.django_db


def test_periodic_jobs_are_in_the_database_with_expiry():
    jobs = {job.task: job for job in PeriodicTask.objects.filter(task__startswith="sync.")}
    assert set(jobs) == {"sync.sweep", "sync.purge", "sync.refresh_health"}
    assert (jobs["sync.sweep"].interval.every, jobs["sync.sweep"].interval.period) == (5, "seconds")
    assert jobs["sync.sweep"].expire_seconds == 5
    assert (jobs["sync.refresh_health"].interval.every, jobs["sync.refresh_health"].expire_seconds) == (60, 60)
    assert (jobs["sync.purge"].crontab.hour, jobs["sync.purge"].crontab.minute) == ("3", "30")
    assert all(job.enabled for job in jobs.values())


def test_the_sweep_runs_every_five_seconds_from_beat():
    from django_celery_beat.models import PeriodicTask

    job = PeriodicTask.objects.get(task="schools.sweep_scheduled_changes")
    assert (job.interval.every, job.interval.period, job.expire_seconds, job.enabled) == (5, "seconds", 5, True)
