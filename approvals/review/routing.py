from django.urls import path

from approvals.review.consumers import QueueConsumer

websocket_urlpatterns = [
    path("ws/review/", QueueConsumer.as_asgi()),
]
