"""API tokens (knox): checking `Authorization: Token …`, and revoking a user's tokens when their password changes."""

from django.utils.translation import gettext_lazy as _
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.plumbing import build_bearer_security_scheme_object
from knox import auth
from knox.models import get_token_model
from knox.settings import knox_settings
from rest_framework import exceptions

INVALID_TOKEN = _("Invalid token.")


class TokenAuthentication(auth.TokenAuthentication):
    """Knox's check of `Authorization: Token <token>`; a token that is not UTF-8 is a 401 like any other invalid one."""

    def authenticate_credentials(self, token: bytes):
        try:
            token.decode()
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed(INVALID_TOKEN) from None
        return super().authenticate_credentials(token)


class TokenScheme(OpenApiAuthenticationExtension):
    """The API schema's name for this scheme: `Authorization: Token <token>`."""

    target_class = TokenAuthentication
    name = "tokenAuth"

    def get_security_definition(self, auto_schema):
        return build_bearer_security_scheme_object(
            header_name="Authorization", token_prefix=knox_settings.AUTH_HEADER_PREFIX
        )


def revoke_tokens_on_password_change(sender, instance, raw=False, update_fields=None, **kwargs) -> None:
    """pre_save receiver on the user model: a saved password hash that differs from the stored one revokes
    every API token of the user.

    Django sends no signal for a password change, but every way of changing one (set_password, the admin's
    form, `changepassword`, a reset, set_unusable_password) ends in saving a new hash, so comparing the hash
    catches them all without wrapping any of them. A save that leaves the password out (`update_fields`
    without it, as for `last_login`) costs nothing. Django re-hashing an unchanged password on sign-in,
    after an upgrade raised the hasher's work factor, also counts: it revokes the user's tokens once, which
    a client answers by signing in again.
    """
    if raw or instance.pk is None:
        return
    if update_fields is not None and "password" not in update_fields:
        return
    stored = sender._default_manager.filter(pk=instance.pk).values_list("password", flat=True).first()
    if stored is not None and stored != instance.password:
        get_token_model().objects.filter(user_id=instance.pk).delete()
