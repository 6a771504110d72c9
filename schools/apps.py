from django.apps import AppConfig, apps
from django.db.models.signals import post_migrate


class SchoolsConfig(AppConfig):
    name = "schools"
    verbose_name = "School records"

    def ready(self) -> None:
        from schools import access  # noqa: F401  registers the object permissions
        from schools.roles import sync_roles

        # After every app's permissions exist: sync is migrated after schools.
        post_migrate.connect(sync_roles, sender=apps.get_app_config("sync"), dispatch_uid="schools.roles")
