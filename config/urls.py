"""URL configuration: admin, REST API, API schema and docs."""

from django.contrib import admin
from django.contrib.auth.decorators import login_required
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.routers import DefaultRouter
from rest_framework.settings import api_settings
from rest_framework.throttling import ScopedRateThrottle

from schools import api as schools_api
from sync import api as sync_api
from sync.views import metrics_view

admin.site.site_header = "School Sync"
admin.site.site_title = "School Sync admin"
admin.site.index_title = "Records and sync"

router = DefaultRouter()
router.register("schools", schools_api.SchoolViewSet)
router.register("grades", schools_api.GradeViewSet)
router.register("classes", schools_api.SchoolClassViewSet)
router.register("teachers", schools_api.TeacherViewSet)
router.register("students", schools_api.StudentViewSet)
router.register("scheduled-changes", schools_api.ScheduledChangeViewSet)
router.register("sync/operations", sync_api.OperationLogViewSet)
router.register("sync/lanes", sync_api.SyncLaneViewSet)


class ObtainTokenView(ObtainAuthToken):
    """Exchange a username and password for an API token (throttled against guessing)."""

    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "auth"
    parser_classes = api_settings.DEFAULT_PARSER_CLASSES  # DRF's view names its own, without our JSON limits


urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/auth/token/", ObtainTokenView.as_view(), name="api-token"),
    path("api/sync/status/", sync_api.SyncStatusView.as_view(), name="sync-status"),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", login_required(SpectacularSwaggerView.as_view(url_name="api-schema")), name="api-docs"),
    path("api/", include(router.urls)),
    path("api-auth/", include("rest_framework.urls")),
    path("metrics", metrics_view, name="metrics"),
]
