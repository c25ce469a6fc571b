"""The IntegrationService: one class assembled from a mixin per group of RPCs."""

from __future__ import annotations

from integrations.v1 import service_pb2_grpc

from service.api.credentials_rpcs import CredentialsRpcs
from service.api.feed_rpcs import FeedRpcs
from service.api.lifecycle_rpcs import LifecycleRpcs
from service.api.sync_rpcs import SyncRpcs
from service.api.watch_rpcs import WatchRpcs
from service.api.webhook_rpcs import WebhookRpcs


class IntegrationServicer(
    LifecycleRpcs,
    SyncRpcs,
    FeedRpcs,
    CredentialsRpcs,
    WatchRpcs,
    WebhookRpcs,
    service_pb2_grpc.IntegrationServiceServicer,
):
    """Implements integrations.v1.IntegrationService."""
