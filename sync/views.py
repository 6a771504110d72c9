"""The sync dashboard (an admin page) and the Prometheus endpoint."""

import hmac

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from config.api import signed_in_user
from config.errors import ConflictError
from schools import access
from sync import charts, metrics, overview
from sync.models import EntryStatus, OperationLog, SyncLane
from sync.services import entry_cancel, entry_retry, lane_pause, lane_resume

OPERATOR_ACTIONS = {"retry": entry_retry, "cancel": entry_cancel}
LANE_ACTIONS = {"pause": lane_pause, "resume": lane_resume}


def dashboard(request: HttpRequest, admin_context: dict) -> TemplateResponse:
    now = timezone.now()
    status = overview.sync_status_for(request.user, now)
    context = {
        **admin_context,
        "title": "Sync dashboard",
        "status": status,
        "statuses": [(value, label, status["counts"][value]) for value, label in EntryStatus.choices],
        "lag": charts.format_seconds(status["oldest_pending_age_seconds"]),
        "chart": charts.history_chart(overview.history(now, access.scoped(OperationLog.objects.all(), request.user))),
        "blocked_lanes": [lane for lane in status["lanes"] if lane["blocked_by"] is not None],
        "can_retry": request.user.has_perm("sync.retry_operationlog"),
        "can_cancel": request.user.has_perm("sync.cancel_operationlog"),
        "can_pause": request.user.has_perm("sync.pause_synclane"),
        "now": now,
    }
    return TemplateResponse(request, "admin/sync/dashboard.html", context)


@require_POST
def dashboard_action(request: HttpRequest, pk: int, action: str) -> HttpResponseRedirect:
    if action not in OPERATOR_ACTIONS or not request.user.has_perm(f"sync.{action}_operationlog"):
        raise PermissionDenied
    entry = get_object_or_404(access.scoped(OperationLog.objects.all(), request.user), pk=pk)
    options = {"confirmed": request.POST.get("confirm") == "yes"} if action == "cancel" else {}
    try:
        OPERATOR_ACTIONS[action](entry=entry, actor=signed_in_user(request), **options)
    except ConflictError as exc:
        messages.warning(request, str(exc))
    else:
        messages.success(request, f"Entry #{entry.sequence} {'retried' if action == 'retry' else 'cancelled'}.")
    return HttpResponseRedirect(reverse("admin:sync_dashboard"))


@require_POST
def dashboard_lane_action(request: HttpRequest, name: str, action: str) -> HttpResponseRedirect:
    if action not in LANE_ACTIONS or not request.user.has_perm("sync.pause_synclane"):
        raise PermissionDenied
    if "\x00" in name:  # no lane has one, and PostgreSQL cannot compare with it
        raise Http404
    lane = get_object_or_404(access.scoped(SyncLane.objects.all(), request.user), pk=name)
    LANE_ACTIONS[action](lane=lane, actor=signed_in_user(request))
    messages.success(request, f"Lane {lane.name} {'paused' if action == 'pause' else 'resumed'}.")
    return HttpResponseRedirect(reverse("admin:sync_dashboard"))


def metrics_view(request: HttpRequest) -> HttpResponse:
    """Prometheus text format, for ``Authorization: Bearer <METRICS_TOKEN>`` or the sessions of staff
    who may read the whole log (every lane's figures): sync.view_operationlog and district access."""
    if not _may_read_every_lane(request) and not _has_metrics_token(request):
        response = HttpResponse("Authentication required.\n", status=401, content_type="text/plain")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(generate_latest(metrics.registry()), content_type=CONTENT_TYPE_LATEST)


def _may_read_every_lane(request: HttpRequest) -> bool:
    user = request.user
    return user.is_staff and user.has_perm("sync.view_operationlog") and access.may_access(user, [None])


def _has_metrics_token(request: HttpRequest) -> bool:
    expected = settings.METRICS_TOKEN
    given = request.headers.get("Authorization", "").removeprefix("Bearer ")
    return bool(expected) and hmac.compare_digest(given.encode(), expected.encode())
