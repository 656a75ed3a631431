from django.urls import path

from webclient import views

urlpatterns = [
    path("", views.upload_page, name="upload-page"),
]
