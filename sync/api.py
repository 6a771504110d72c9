"""REST endpoints for the operation log and the operator actions on it."""

from django.utils import timezone
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import permissions, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.views import APIView

from sync import overview
from sync.models import OperationLog, SyncLane
from sync.serializers import CancelSerializer, LaneStatusSerializer, OperationLogSerializer, SyncStatusSerializer
from sync.services import entry_cancel, entry_retry, lane_pause, lane_resume


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
    queryset = OperationLog.objects.select_related("actor", "cancelled_by", "retried_by").prefetch_related(
        "other_slots"
    )
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


class CanPauseLanes(permissions.BasePermission):
    """Pausing and resuming a lane needs sync.pause_synclane."""

    def has_permission(self, request, view):
        return request.user.has_perm("sync.pause_synclane")


class SyncLaneViewSet(viewsets.GenericViewSet):
    """Every lane with its backlog, lag and pause; operators pause and resume a lane."""

    queryset = SyncLane.objects.order_by("name")
    lookup_field = "name"
    lookup_value_regex = "[^/]+"
    serializer_class = LaneStatusSerializer

    def list(self, request):
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(self._overview(page))

    def retrieve(self, request, name=None):
        return Response(self._overview([self.get_object()])[0])

    @extend_schema(
        request=None, responses={200: LaneStatusSerializer, 404: OpenApiResponse(description="No such lane.")}
    )
    @action(detail=True, methods=["post"], permission_classes=[permissions.IsAuthenticated, CanPauseLanes])
    def pause(self, request, name=None):
        """Stop sending from the lane after the push in flight; writes go on and queue."""
        return Response(self._overview([lane_pause(lane=self.get_object(), actor=request.user)])[0])

    @extend_schema(
        request=None, responses={200: LaneStatusSerializer, 404: OpenApiResponse(description="No such lane.")}
    )
    @action(detail=True, methods=["post"], permission_classes=[permissions.IsAuthenticated, CanPauseLanes])
    def resume(self, request, name=None):
        """Let a paused lane send again."""
        return Response(self._overview([lane_resume(lane=self.get_object(), actor=request.user)])[0])

    def _overview(self, lanes):
        names = [lane.pk for lane in lanes]
        return self.get_serializer(
            overview.lane_overview(timezone.now(), SyncLane.objects.filter(pk__in=names)), many=True
        ).data
