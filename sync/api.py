"""REST endpoints for the operation log and the operator actions on it."""

from django.db.models import Q
from django.utils import timezone
from django_filters import rest_framework as filters
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import permissions, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.views import APIView

from config.permissions import HasPermission
from schools import access
from schools.filters import InUsersSchoolsFilterSet
from sync import overview
from sync.models import OperationLog, SyncLane
from sync.serializers import CancelSerializer, LaneStatusSerializer, OperationLogSerializer, SyncStatusSerializer
from sync.services import entry_cancel, entry_retry, lane_pause, lane_resume

VIEW_ENTRIES = "sync.view_operationlog"


class CanOperate(permissions.BasePermission):
    """Retry and cancel need their own permissions (sync.retry_operationlog, sync.cancel_operationlog),
    and reading the log, which their answer shows."""

    def has_permission(self, request, view):
        return request.user.has_perms([VIEW_ENTRIES, f"sync.{view.action}_operationlog"])


OPERATOR_RESPONSES = {
    200: OperationLogSerializer,
    409: OpenApiResponse(
        description=(
            "The entry's status does not allow this action, or (cancel) the external system may already "
            "have applied it and confirm was not true."
        )
    ),
}


class OperationLogFilter(InUsersSchoolsFilterSet):
    school = filters.NumberFilter(method="of_school", help_text="Only entries of this school (a move: of either).")

    class Meta:
        model = OperationLog
        fields = ["status", "resource", "operation", "lane", "object_id", "school"]

    def of_school(self, queryset, name, value):
        return queryset.filter(Q(school_id=value) | Q(other_school_id=value))


class OperationLogViewSet(viewsets.ReadOnlyModelViewSet):
    """The entries of the user's schools; reading needs sync.view_operationlog."""

    queryset = OperationLog.objects.select_related("actor", "cancelled_by", "retried_by").prefetch_related(
        "other_slots"
    )
    serializer_class = OperationLogSerializer
    filterset_class = OperationLogFilter
    search_fields = ["=idempotency_key"]
    ordering_fields = ["sequence", "created_at"]
    ordering = ["-sequence"]

    def get_queryset(self):
        return access.scoped(super().get_queryset(), self.request.user)

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
    """Delivery progress of the user's schools: counts per status, lag, lanes and the external system's health.

    Reads the database and the cached health probe only; it never calls the external system.
    """

    permission_classes = [permissions.IsAuthenticated, HasPermission]
    required_permission = VIEW_ENTRIES

    @extend_schema(responses=SyncStatusSerializer)
    def get(self, request):
        return Response(SyncStatusSerializer(overview.sync_status_for(request.user, timezone.now())).data)


class CanPauseLanes(permissions.BasePermission):
    """Pausing and resuming a lane needs sync.pause_synclane, and reading the log, which the answer shows."""

    def has_permission(self, request, view):
        return request.user.has_perms([VIEW_ENTRIES, "sync.pause_synclane"])


class SyncLaneViewSet(viewsets.GenericViewSet):
    """The lanes of the user's schools with their backlog, lag and pause; operators pause and resume a lane."""

    queryset = SyncLane.objects.order_by("name")
    permission_classes = [permissions.IsAuthenticated, HasPermission]
    required_permission = VIEW_ENTRIES
    lookup_field = "name"
    lookup_value_regex = r"[^/\x00]+"
    serializer_class = LaneStatusSerializer

    def get_queryset(self):
        return access.scoped(super().get_queryset(), self.request.user)

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
        entries = access.scoped(OperationLog.objects.all(), self.request.user)
        return self.get_serializer(
            overview.lane_overview(timezone.now(), SyncLane.objects.filter(pk__in=names), entries), many=True
        ).data
