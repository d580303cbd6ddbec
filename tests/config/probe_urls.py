"""Routes that exist only for tests of the shared API conventions."""

from django.urls import include, path
from rest_framework.response import Response
from rest_framework.views import APIView

from core.permissions import IsAdmin


class AdminOnly(APIView):
    permission_classes = [IsAdmin]
    admin_permissions = {"GET": ()}  # the role alone

    def get(self, request):
        return Response({"ok": True})


class Boom(APIView):
    def get(self, request):
        raise RuntimeError("secret internals: db password is hunter2")


handler404 = "config.views.page_not_found"
handler500 = "config.views.server_error"

urlpatterns = [
    path("api/probe/admin", AdminOnly.as_view()),
    path("api/probe/boom", Boom.as_view()),
    path("", include("config.urls")),
]
