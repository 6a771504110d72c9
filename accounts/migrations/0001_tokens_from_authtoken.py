"""Moves the API tokens of rest_framework.authtoken, kept in plain text, into knox: hashed, with an expiry."""

from django.db import migrations
from django.db.migrations.recorder import MigrationRecorder
from django.utils import timezone
from knox.crypto import hash_token
from knox.settings import CONSTANTS, knox_settings

OLD_TABLE = "authtoken_token"
OLD_APP = "authtoken"


def move_tokens(apps, schema_editor):
    """Each old token keeps working, as its knox digest, until the token lifetime from now; then the
    plain-text table goes, and with it Django's record of the old app's migrations."""
    connection = schema_editor.connection
    if OLD_TABLE not in connection.introspection.table_names():
        return
    AuthToken = apps.get_model("knox", "AuthToken")
    with connection.cursor() as cursor:
        cursor.execute('SELECT "key", user_id FROM authtoken_token')
        rows = cursor.fetchall()
    expiry = timezone.now() + knox_settings.TOKEN_TTL
    AuthToken.objects.bulk_create(
        AuthToken(digest=hash_token(key), token_key=key[: CONSTANTS.TOKEN_KEY_LENGTH], user_id=user_id, expiry=expiry)
        for key, user_id in rows
    )
    schema_editor.execute("DROP TABLE authtoken_token")
    MigrationRecorder(connection).migration_qs.filter(app=OLD_APP).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("knox", "0009_extend_authtoken_field"),
    ]

    operations = [
        migrations.RunPython(move_tokens, migrations.RunPython.noop),
    ]
