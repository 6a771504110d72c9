"""The sweep runs every 5 seconds: with short leases, a dead chain's lane resumes within seconds."""

from django.db import migrations
from django.utils import timezone

SWEEP = "Sync: sweep lanes"


def sweep_every(seconds):
    def change(apps, schema_editor):
        IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
        PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
        PeriodicTasks = apps.get_model("django_celery_beat", "PeriodicTasks")
        interval, _ = IntervalSchedule.objects.get_or_create(every=seconds, period="seconds")
        PeriodicTask.objects.filter(name=SWEEP).update(interval=interval, expire_seconds=seconds)
        # What PeriodicTask.save() does through its signal: a running beat reloads its schedule.
        PeriodicTasks.objects.update_or_create(ident=1, defaults={"last_update": timezone.now()})

    return change


class Migration(migrations.Migration):
    dependencies = [
        ("sync", "0008_lane_wakeup_and_lease_holder"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(sweep_every(5), sweep_every(15))]
