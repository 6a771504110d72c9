"""Every entry records its school: kept from the lane or, for the global lane, from its payload.

Moves recorded before this migration belong to the school the record moved to.
"""

from django.conf import settings
from django.db import migrations, models
from django.db.models import BigIntegerField
from django.db.models.fields.json import KT
from django.db.models.functions import Cast, Substr

SCHOOL_LANE_PREFIX = "school-"


def record_schools(apps, schema_editor):
    OperationLog = apps.get_model("sync", "OperationLog")
    Grade = apps.get_model("schools", "Grade")
    SchoolClass = apps.get_model("schools", "SchoolClass")
    entries = OperationLog.objects.filter(school_id__isnull=True)
    entries.filter(lane__name__startswith=SCHOOL_LANE_PREFIX).update(
        school_id=Cast(Substr("lane_id", len(SCHOOL_LANE_PREFIX) + 1), BigIntegerField())
    )
    entries.filter(resource="schools").update(school_id=models.F("object_id"))
    for resource in ("grades", "teachers"):
        entries.filter(resource=resource).update(school_id=Cast(KT("payload__school"), BigIntegerField()))
    # A class's or student's school is its parent's, as it is now; a parent deleted since leaves it unknown.
    for grade_id, school_id in Grade.objects.values_list("pk", "school_id").iterator():
        entries.filter(resource="classes", payload__grade=grade_id).update(school_id=school_id)
    for class_id, school_id in SchoolClass.objects.values_list("pk", "grade__school_id").iterator():
        entries.filter(resource="students", payload__school_class=class_id).update(school_id=school_id)


class Migration(migrations.Migration):

    dependencies = [
        ('sync', '0012_operator_audit'),
        ('schools', '0008_tenancy'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name='operationlog',
            name='other_school_id',
            field=models.BigIntegerField(blank=True, help_text='For a move between schools: the school the record left.', null=True),
        ),
        migrations.AddField(
            model_name='operationlog',
            name='school_id',
            field=models.BigIntegerField(blank=True, help_text='The school the record belongs to. An id, not a link: the entry outlives the record and its school.', null=True),
        ),
        migrations.AddIndex(
            model_name='operationlog',
            index=models.Index(fields=['school_id', 'sequence'], name='operationlog_school'),
        ),
        migrations.AddIndex(
            model_name='operationlog',
            index=models.Index(condition=models.Q(('other_school_id__isnull', False)), fields=['other_school_id'], name='operationlog_other_school'),
        ),
        migrations.RunPython(record_schools, migrations.RunPython.noop),
    ]
