"""The reviewer's desk (/review/)."""

from django.urls import path

from approvals.review import views

urlpatterns = [
    path("", views.review_queue, name="review-queue"),
    path("<uuid:action_id>", views.review_detail, name="review-detail"),
    path("<uuid:action_id>/row", views.review_row, name="review-row"),
    path("<uuid:action_id>/claim", views.review_claim, name="review-claim"),
    path("<uuid:action_id>/decide", views.review_decide, name="review-decide"),
    path("<uuid:action_id>/label", views.review_label, name="review-label"),
]
