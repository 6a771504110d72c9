"""The periodic job that queues again an import whose task a broker lost."""

from django.db import migrations
from django.utils import timezone

SWEEP_IMPORTS = "Schools: sweep imports"


def create_job(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    every_minute, _ = IntervalSchedule.objects.get_or_create(every=60, period="seconds")
    PeriodicTask.objects.update_or_create(
        name=SWEEP_IMPORTS,
        defaults={
            "task": "schools.sweep_imports",
            "interval": every_minute,
            "expire_seconds": 60,
            "enabled": True,
            "description": "Queues again imports whose task was lost: waiting, held by no run, sent 30 s ago or more.",
        },
    )
    # What PeriodicTask.save() does through its signal: a running beat reloads its schedule.
    apps.get_model("django_celery_beat", "PeriodicTasks").objects.update_or_create(
        ident=1, defaults={"last_update": timezone.now()}
    )


def delete_job(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=SWEEP_IMPORTS).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("schools", "0009_record_import"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_job, delete_job)]
