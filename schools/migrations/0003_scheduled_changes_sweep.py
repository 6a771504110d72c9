"""The scheduled changes' sweep, as a django-celery-beat row operators can see and edit."""

from django.db import migrations

NAME = "Scheduled changes: sweep"


def create_job(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    every_5_seconds, _ = IntervalSchedule.objects.get_or_create(every=5, period="seconds")
    PeriodicTask.objects.update_or_create(
        name=NAME,
        defaults={
            "task": "schools.sweep_scheduled_changes",
            "interval": every_5_seconds,
            "expire_seconds": 5,
            "enabled": True,
            "description": "Sends wake-ups for changes coming due, runs overdue ones, releases dead claims.",
        },
    )


def delete_job(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("schools", "0002_scheduled_change"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_job, delete_job)]
