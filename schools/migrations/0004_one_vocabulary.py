"""One vocabulary: the lease token, the attempt count; field documentation as help_text."""

from django.db import migrations, models
import django.db.models.deletion


class Migration(migrations.Migration):
    dependencies = [("schools", "0003_scheduled_changes_sweep")]

    operations = [
        migrations.RenameField("scheduledchange", "attempts", "attempt_count"),
        migrations.AlterField(
            model_name='scheduledchange',
            name='attempt_count',
            field=models.PositiveIntegerField(default=0, help_text='How many times a worker claimed it to run.'),
        ),
        migrations.AlterField(
            model_name='scheduledchange',
            name='due_at',
            field=models.DateTimeField(help_text='When it may run next: execute_at, later after a transient failure.'),
        ),
        migrations.AlterField(
            model_name='student',
            name='school',
            field=models.ForeignKey(blank=True, editable=False, help_text="The school of the student's class.", on_delete=django.db.models.deletion.PROTECT, related_name='students', to='schools.school'),
        ),
    ]
