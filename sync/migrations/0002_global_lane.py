from django.db import migrations

DEFAULT_LANE = "global"


def create_global_lane(apps, schema_editor):
    apps.get_model("sync", "SyncLane").objects.get_or_create(name=DEFAULT_LANE)


class Migration(migrations.Migration):
    dependencies = [("sync", "0001_initial")]

    operations = [migrations.RunPython(create_global_lane, migrations.RunPython.noop)]
