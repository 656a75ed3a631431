from django.urls import path

from uploads import apis

urlpatterns = [
    path("", apis.UploadListApi.as_view(), name="upload-list"),
    path("tickets/", apis.TicketCreateApi.as_view(), name="upload-ticket-create"),
    path(
        "tickets/<uuid:ticket_id>/confirm/",
        apis.TicketConfirmApi.as_view(),
        name="upload-ticket-confirm",
    ),
    path("usage/", apis.UsageApi.as_view(), name="upload-usage"),
    path("<int:upload_id>/", apis.UploadDetailApi.as_view(), name="upload-detail"),
]
