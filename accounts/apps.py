"""The sign-in app: connects the receiver that revokes API tokens when a password changes."""

from django.apps import AppConfig
from django.conf import settings
from django.db.models.signals import pre_save


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Sign-in"

    def ready(self) -> None:
        from accounts.tokens import revoke_tokens_on_password_change

        pre_save.connect(
            revoke_tokens_on_password_change,
            sender=settings.AUTH_USER_MODEL,
            dispatch_uid="accounts.revoke_tokens_on_password_change",
        )
