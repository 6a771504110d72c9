"""Memberships, district staff, and the school each scheduled change belongs to."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


def _school_of(apps, resource, record_id):
    """The school of a record by its resource name and id, as it is now; None if it is gone."""
    models_by_resource = {
        "schools": ("School", "pk"),
        "grades": ("Grade", "school_id"),
        "teachers": ("Teacher", "school_id"),
        "classes": ("SchoolClass", "grade__school_id"),
        "students": ("Student", "school_id"),
    }
    model_name, path = models_by_resource[resource]
    model = apps.get_model("schools", model_name)
    return model.objects.filter(pk=record_id).values_list(path, flat=True).first()


PARENTS = {"grades": ("schools", "school"), "teachers": ("schools", "school"), "classes": ("grades", "grade"), "students": ("classes", "school_class")}


def scheduled_change_schools(apps, schema_editor):
    ScheduledChange = apps.get_model("schools", "ScheduledChange")
    for change in ScheduledChange.objects.filter(school_id__isnull=True).iterator():
        if change.target_id is not None:
            school_id = _school_of(apps, change.resource, change.target_id)
        elif change.resource in PARENTS and isinstance(change.data.get(PARENTS[change.resource][1]), int):
            parent_resource, field = PARENTS[change.resource]
            school_id = _school_of(apps, parent_resource, change.data[field])
        else:
            continue
        ScheduledChange.objects.filter(pk=change.pk).update(school_id=school_id)


class Migration(migrations.Migration):

    dependencies = [
        ('schools', '0007_text_rules'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AlterModelOptions(
            name='school',
            options={'ordering': ['name'], 'permissions': [('access_all_schools', 'Can act on the records of every school (district staff)')]},
        ),
        migrations.AddField(
            model_name='scheduledchange',
            name='school_id',
            field=models.BigIntegerField(blank=True, db_index=True, help_text='The school of the record it changes (for a create, of its parent; none for a new school). An id, not a link: the change outlives the school.', null=True),
        ),
        migrations.CreateModel(
            name='SchoolMembership',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('school', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='memberships', to='schools.school')),
                ('user', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='school_memberships', to=settings.AUTH_USER_MODEL)),
            ],
            options={
                'ordering': ['school', 'user'],
                'constraints': [models.UniqueConstraint(fields=('user', 'school'), name='membership_unique_per_user_and_school')],
            },
        ),
        migrations.RunPython(scheduled_change_schools, migrations.RunPython.noop),
    ]
