"""REST endpoints for the operation log."""

from rest_framework import viewsets

from sync.models import OperationLog
from sync.serializers import OperationLogSerializer


class OperationLogViewSet(viewsets.ReadOnlyModelViewSet):
    queryset = OperationLog.objects.select_related("actor")
    serializer_class = OperationLogSerializer
    filterset_fields = ["status", "resource", "operation", "lane", "object_id"]
    search_fields = ["=idempotency_key"]
    ordering_fields = ["sequence", "created_at"]
    ordering = ["-sequence"]
