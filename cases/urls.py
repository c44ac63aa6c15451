from django.contrib.auth import views as auth_views
from django.urls import path

from cases import views
from teleder.otp import LoginForm

auth_urls = [
    path(
        "accounts/login/",
        auth_views.LoginView.as_view(redirect_authenticated_user=True, authentication_form=LoginForm),
        name="login",
    ),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("accounts/password/change/", auth_views.PasswordChangeView.as_view(), name="password_change"),
    path(
        "accounts/password/change/done/",
        auth_views.PasswordChangeDoneView.as_view(),
        name="password_change_done",
    ),
    path("accounts/password/reset/", auth_views.PasswordResetView.as_view(), name="password_reset"),
    path(
        "accounts/password/reset/done/",
        auth_views.PasswordResetDoneView.as_view(),
        name="password_reset_done",
    ),
    path(
        "accounts/reset/<uidb64>/<token>/",
        auth_views.PasswordResetConfirmView.as_view(),
        name="password_reset_confirm",
    ),
    path(
        "accounts/reset/done/", auth_views.PasswordResetCompleteView.as_view(), name="password_reset_complete"
    ),
]

urlpatterns = [
    *auth_urls,
    path("", views.home, name="home"),
    path("patients/", views.patient_list, name="patient_list"),
    path("patients/<int:patient_id>/", views.patient_detail, name="patient_detail"),
    path("cases/", views.case_list, name="case_list"),
    path("cases/new/", views.case_create, name="case_create"),
    path("cases/<int:case_id>/", views.case_detail, name="case_detail"),
    path("cases/<int:case_id>/status.json", views.case_status, name="case_status"),
    path("cases/<int:case_id>/images/<int:image_id>/", views.case_image, name="case_image"),
    path(
        "cases/<int:case_id>/predictions/<int:prediction_id>/heatmap.png",
        views.case_heatmap,
        name="case_heatmap",
    ),
    path("review/", views.review_queue, name="review_queue"),
    path("review/<int:case_id>/", views.review_case, name="review_case"),
    path("review/<int:case_id>/correct/", views.review_correct, name="review_correct"),
    path("review/<int:case_id>/request-images/", views.review_request_images, name="review_request_images"),
    path("cases/<int:case_id>/images/add/", views.case_add_images, name="case_add_images"),
    path("cases/<int:case_id>/submit/", views.case_submit, name="case_submit"),
    path("patients/search.json", views.patient_search, name="patient_search"),
    path("manage/notifications/", views.notification_outbox, name="notification_outbox"),
    path("accounts/notifications/", views.notification_preferences, name="notification_preferences"),
    path("manage/failed/", views.failed_cases, name="failed_cases"),
    path("manage/failed/<int:case_id>/retry/", views.case_retry, name="case_retry"),
    path("manage/audit/", views.audit_trail, name="audit_trail"),
]
