"""The periodic jobs, as django-celery-beat rows that operators can see and edit in the admin."""

from django.db import migrations

SWEEP = "Sync: sweep lanes"
PURGE = "Sync: purge closed entries"
HEALTH = "Sync: refresh external health"


def create_jobs(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    CrontabSchedule = apps.get_model("django_celery_beat", "CrontabSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")

    every_15_seconds, _ = IntervalSchedule.objects.get_or_create(every=15, period="seconds")
    every_minute, _ = IntervalSchedule.objects.get_or_create(every=60, period="seconds")
    nightly, _ = CrontabSchedule.objects.get_or_create(
        minute="30", hour="3", day_of_week="*", day_of_month="*", month_of_year="*", timezone="UTC"
    )
    # Frequent jobs expire, so that ticks missed while the workers were down do not pile up.
    jobs = [
        (SWEEP, "sync.sweep", {"interval": every_15_seconds, "expire_seconds": 15},
         "Re-kicks lanes with due work and no live chain; expires leases of crashed chains."),
        (HEALTH, "sync.refresh_health", {"interval": every_minute, "expire_seconds": 60},
         "Probes the external system and caches reachability and latency for the dashboard."),
        (PURGE, "sync.purge", {"crontab": nightly, "expire_seconds": 3600},
         "Deletes succeeded and cancelled entries older than SYNC_RETENTION_DAYS, in batches."),
    ]
    for name, task, schedule, description in jobs:
        PeriodicTask.objects.update_or_create(
            name=name, defaults={"task": task, "description": description, "enabled": True, **schedule}
        )


def delete_jobs(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name__in=[SWEEP, PURGE, HEALTH]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("sync", "0004_updated_at_index"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_jobs, delete_jobs)]
