from django.urls import path

from streaming import apis

urlpatterns = [
    path("ai/personal-stream/qanda-stream", apis.QandaStreamApi.as_view(), name="qanda-stream"),
    path("ai/personal/qanda", apis.QandaApi.as_view(), name="qanda"),
    path("user/histories", apis.UserHistoryListApi.as_view(), name="user-histories"),
    path(
        "user/histories/<int:history_id>",
        apis.UserHistoryDetailApi.as_view(),
        name="user-history",
    ),
    path("user/courses", apis.UserCourseListApi.as_view(), name="user-courses"),
    path("admin/histories", apis.AdminHistoryListApi.as_view(), name="admin-histories"),
]
