"""URL configuration: admin, REST API, API schema and docs."""

from django.conf import settings
from django.contrib import admin
from django.contrib.auth.decorators import login_required
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import DefaultRouter

from accounts.views import ObtainTokenView, RevokeTokenView
from schools import api as schools_api
from schools.imports import api as imports_api
from sync import api as sync_api
from sync.views import metrics_view

admin.site.site_header = "School Sync"
admin.site.site_title = "School Sync admin"
admin.site.index_title = "Records and sync"

router = DefaultRouter()
router.register("schools", schools_api.SchoolViewSet)
router.register(r"schools/(?P<school_pk>[0-9]+)/members", schools_api.SchoolMemberViewSet, basename="school-member")
router.register("grades", schools_api.GradeViewSet)
router.register("classes", schools_api.SchoolClassViewSet)
router.register("teachers", schools_api.TeacherViewSet)
router.register("students", schools_api.StudentViewSet)
router.register("scheduled-changes", schools_api.ScheduledChangeViewSet)
router.register("imports", imports_api.ImportViewSet)
router.register("sync/operations", sync_api.OperationLogViewSet)
router.register("sync/lanes", sync_api.SyncLaneViewSet)


urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/auth/token/", ObtainTokenView.as_view(), name="api-token"),
    path("api/auth/token/logout/", RevokeTokenView.as_view(), name="api-token-logout"),
    path("api/sync/status/", sync_api.SyncStatusView.as_view(), name="sync-status"),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", login_required(SpectacularSwaggerView.as_view(url_name="api-schema")), name="api-docs"),
    path("api/", include(router.urls)),
    path("metrics", metrics_view, name="metrics"),
]
if settings.DEBUG:
    # The browsable API's own sign-in page, for development; in production people sign in at the admin.
    urlpatterns.append(path("api-auth/", include("rest_framework.urls")))

handler400 = "config.api.bad_request"
handler404 = "config.api.not_found"
