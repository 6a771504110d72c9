"""REST endpoints for the operation log and the operator actions on it."""

from django.utils import timezone
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import permissions, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.views import APIView

from sync import overview
from sync.models import OperationLog
from sync.serializers import CancelSerializer, OperationLogSerializer, SyncStatusSerializer
from sync.services import entry_cancel, entry_retry


class CanOperate(permissions.BasePermission):
    """Retry and cancel need their own permissions (sync.retry_operationlog, sync.cancel_operationlog)."""

    def has_permission(self, request, view):
        return request.user.has_perm(f"sync.{view.action}_operationlog")


OPERATOR_RESPONSES = {
    200: OperationLogSerializer,
    409: OpenApiResponse(
        description=(
            "The entry's status does not allow this action, or (cancel) the external system may already "
            "have applied it and confirm was not true."
        )
    ),
}


class OperationLogViewSet(viewsets.ReadOnlyModelViewSet):
    queryset = OperationLog.objects.select_related("actor", "cancelled_by")
    serializer_class = OperationLogSerializer
    filterset_fields = ["status", "resource", "operation", "lane", "object_id"]
    search_fields = ["=idempotency_key"]
    ordering_fields = ["sequence", "created_at"]
    ordering = ["-sequence"]

    @extend_schema(request=None, responses=OPERATOR_RESPONSES)
    @action(detail=True, methods=["post"], permission_classes=[permissions.IsAuthenticated, CanOperate])
    def retry(self, request, pk=None):
        """Send a failed entry again now (or end the backoff of a waiting one)."""
        return self._operate(entry_retry)

    @extend_schema(request=CancelSerializer, responses=OPERATOR_RESPONSES)
    @action(detail=True, methods=["post"], permission_classes=[permissions.IsAuthenticated, CanOperate])
    def cancel(self, request, pk=None):
        """Give up on a pending or failed entry; the lane goes on with the next one."""
        options = CancelSerializer(data=request.data)
        options.is_valid(raise_exception=True)
        return self._operate(entry_cancel, confirmed=options.validated_data["confirm"])

    def _operate(self, service, **options):
        entry = service(entry=self.get_object(), actor=self.request.user, **options)
        return Response(self.get_serializer(entry).data)


class SyncStatusView(APIView):
    """Delivery progress: counts per status, lag, last pushed sequence and the external system's health.

    Reads the database and the cached health probe only; it never calls the external system.
    """

    permission_classes = [permissions.IsAuthenticated]

    @extend_schema(responses=SyncStatusSerializer)
    def get(self, request):
        return Response(SyncStatusSerializer(overview.sync_status(timezone.now())).data)
