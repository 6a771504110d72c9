"""The token endpoints: a username and password for an API token, and revoking the token a request carries."""

from django.contrib.auth import authenticate
from drf_spectacular.utils import OpenApiResponse, extend_schema
from knox import views as knox_views
from rest_framework import exceptions, serializers
from rest_framework.permissions import AllowAny
from rest_framework.throttling import ScopedRateThrottle

from accounts.lockout import LOCKED_OUT, lockout_seconds
from accounts.tokens import TokenAuthentication
from config.schema import ERROR

INVALID_CREDENTIALS = "Unable to log in with provided credentials."


class AuthTokenSerializer(serializers.Serializer):
    username = serializers.CharField(write_only=True)
    password = serializers.CharField(write_only=True, trim_whitespace=False, style={"input_type": "password"})

    def validate(self, attrs):
        user = authenticate(request=self.context["request"], username=attrs["username"], password=attrs["password"])
        if user is None:
            raise serializers.ValidationError(INVALID_CREDENTIALS, code="authorization")
        return {"user": user}


class TokenSerializer(serializers.Serializer):
    token = serializers.CharField(read_only=True)
    expiry = serializers.DateTimeField(read_only=True, help_text="When the token stops working.")


class ObtainTokenView(knox_views.LoginView):
    """Exchange a username and password for an API token (throttled, and locked after repeated failures).

    The token is stored hashed and works until `expiry`, or until the user's password changes.
    """

    authentication_classes: list[type] = []
    permission_classes = [AllowAny]
    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "auth"

    @extend_schema(request=AuthTokenSerializer, responses=TokenSerializer)
    def post(self, request, format=None):
        credentials = AuthTokenSerializer(data=request.data, context={"request": request})
        signed_in = credentials.is_valid()
        # django-axes marks the request it refused, or whose failure reached the limit.
        if getattr(request, "axes_locked_out", False):
            raise exceptions.Throttled(wait=lockout_seconds(), detail=LOCKED_OUT)
        if not signed_in:
            raise exceptions.ValidationError(credentials.errors)
        request.user = credentials.validated_data["user"]
        return super().post(request, format=format)


class RevokeTokenView(knox_views.LogoutView):
    """Revoke the API token this request is signed with."""

    authentication_classes = [TokenAuthentication]

    @extend_schema(
        request=None,
        responses={
            204: OpenApiResponse(description="The token no longer works."),
            401: OpenApiResponse(ERROR, description="No token, or an invalid or expired one."),
        },
    )
    def post(self, request, format=None):
        return super().post(request, format=format)
