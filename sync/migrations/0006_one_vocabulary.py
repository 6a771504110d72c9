"""One vocabulary: the lease token, the attempt count; field documentation as help_text."""

from django.conf import settings
from django.db import migrations, models
import django.core.serializers.json
import django.db.models.deletion
import uuid


class Migration(migrations.Migration):
    dependencies = [("sync", "0005_periodic_jobs")]

    operations = [
        migrations.RenameField("synclane", "lease_owner", "lease_token"),
        migrations.RenameField("operationlog", "attempts", "attempt_count"),
        migrations.AlterField(
            model_name='operationattempt',
            name='entry',
            field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='attempts', to='sync.operationlog'),
        ),
        migrations.AlterField(
            model_name='operationlog',
            name='actor',
            field=models.ForeignKey(blank=True, help_text='Who made the change.', null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL),
        ),
        migrations.AlterField(
            model_name='operationlog',
            name='attempt_count',
            field=models.PositiveIntegerField(default=0, help_text='How many times the entry was claimed for sending.'),
        ),
        migrations.AlterField(
            model_name='operationlog',
            name='idempotency_key',
            field=models.UUIDField(default=uuid.uuid4, editable=False, help_text='Sent unchanged on every attempt, so the external system applies the change once.', unique=True),
        ),
        migrations.AlterField(
            model_name='operationlog',
            name='next_attempt_at',
            field=models.DateTimeField(blank=True, help_text='While pending after a transient failure: not to be sent before this time.', null=True),
        ),
        migrations.AlterField(
            model_name='operationlog',
            name='payload',
            field=models.JSONField(encoder=django.core.serializers.json.DjangoJSONEncoder, help_text='The record as the REST API showed it right after the change (before it, for a delete).'),
        ),
        migrations.AlterField(
            model_name='operationlog',
            name='pushed_at',
            field=models.DateTimeField(blank=True, help_text='When the external system accepted it.', null=True),
        ),
        migrations.AlterField(
            model_name='operationlog',
            name='sequence',
            field=models.BigIntegerField(help_text="The entry's place in its lane, in commit order."),
        ),
        migrations.AlterField(
            model_name='synclane',
            name='lease_expires_at',
            field=models.DateTimeField(blank=True, help_text='Until when the chain holds the lease without renewing it.', null=True),
        ),
        migrations.AlterField(
            model_name='synclane',
            name='lease_token',
            field=models.CharField(blank=True, default='', help_text='The chain that may push this lane (empty when free).', max_length=64),
        ),
        migrations.AlterField(
            model_name='synclane',
            name='next_sequence',
            field=models.BigIntegerField(default=1, help_text='The sequence the next recorded entry gets; advanced only under the row lock, in commit order.'),
        ),
    ]
