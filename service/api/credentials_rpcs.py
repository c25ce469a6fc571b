"""Reauthorize: renew an integration's credentials directly, or start an OAuth2 sign-in."""

from __future__ import annotations

from integrations.v1 import service_pb2 as api

from service.api import convert
from service.api.base import Context, RpcBase
from service.domain import validation
from service.domain.exceptions import FieldViolation, InvalidArgument


class CredentialsRpcs(RpcBase):
    """Reauthorize."""

    async def Reauthorize(
        self, request: api.ReauthorizeRequest, context: Context
    ) -> api.ReauthorizeResponse:
        tenant = self.tenant(context)
        integration_id = validation.integration_id(request.id)
        reauthorization = self.app.reauthorization
        method = request.WhichOneof("method")
        if method == "credentials":
            credentials = convert.credentials_in(request.credentials)
            if credentials is None:
                raise InvalidArgument(
                    [
                        FieldViolation(
                            "credentials",
                            "must hold one kind: oauth, bearer_token, api_key or basic",
                            "REQUIRED",
                        )
                    ]
                )
            integration, outcome = await reauthorization.with_credentials(
                tenant, integration_id, request.etag, credentials
            )
            out = self.out(integration)
            return api.ReauthorizeResponse(
                integration=out, test=convert.test_out(outcome, out) if outcome else None
            )
        if method == "sign_in":
            integration, started = await reauthorization.start_sign_in(
                tenant,
                integration_id,
                request.etag,
                return_to=request.sign_in.return_url,
                scope_list=list(request.sign_in.scopes),
            )
            return api.ReauthorizeResponse(
                integration=self.out(integration), authorization_url=started.authorization_url
            )
        raise InvalidArgument(
            [
                FieldViolation(
                    "method",
                    "set credentials (new credentials, tested at once) or sign_in (start an "
                    "OAuth2 sign-in)",
                    "REQUIRED",
                )
            ]
        )
