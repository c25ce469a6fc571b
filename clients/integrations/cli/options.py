"""The global options every `integrationsctl` verb reads, and the client they configure."""

from __future__ import annotations

import grpc

from integrations.client import IntegrationsClient


class Options:
    """Global options, set by the app's callback (`integrations.cli.main`)."""

    target = "localhost:50051"
    api_key: str | None = None
    as_json = False
    credentials: grpc.ChannelCredentials | None = None


def open_client() -> IntegrationsClient:
    """A client for the target, with the API key and TLS credentials of the options."""
    return IntegrationsClient(
        Options.target, api_key=Options.api_key, credentials=Options.credentials
    )
