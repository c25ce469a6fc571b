"""The OAuth 2.0 provider: authorization endpoint, token endpoint and revocation endpoint.

``GET /oauth2/auth`` consents on the user's behalf (unless told to deny) and redirects back
with a code; ``POST /oauth2/token`` redeems codes (with PKCE) and rotates refresh tokens;
``POST /oauth2/revoke`` revokes a token's family (RFC 7009).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from yarl import URL

from sandbox.credentials import parse_basic
from sandbox.faults import Fault, FaultKind, Provider
from sandbox.tokens import OAuthClient, OAuthError, TokenGrant, UntrustedRedirect
from sandbox.traffic import STATE, endpoint, fixed

_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}

# Fault kind -> RFC 6749 error code used in the token endpoint's error body.
_ERRORS: dict[FaultKind, str] = {
    FaultKind.NOT_FOUND: "not_found",
    FaultKind.UNAUTHORIZED: "invalid_client",
    FaultKind.FORBIDDEN: "access_denied",
    FaultKind.QUOTA: "rate_limit_exceeded",
    FaultKind.TOO_MANY_REQUESTS: "rate_limit_exceeded",
    FaultKind.SERVER_ERROR: "server_error",
    FaultKind.UNAVAILABLE: "temporarily_unavailable",
}


def render_fault(fault: Fault) -> web.Response:
    """The response a token endpoint would plausibly give for ``fault``."""
    if fault.kind is FaultKind.MALFORMED:
        body = fault.body or '{"access_token": "ya29.'
        return web.Response(text=body, content_type="application/json")
    if fault.kind is FaultKind.WRONG_SHAPE:
        body = fault.body or '{"token_type": "Bearer", "expires_in": "soon"}'
        return web.Response(text=body, content_type="application/json")
    code = _ERRORS.get(fault.kind, "server_error")
    return _error_response(OAuthError(code, f"sandbox fault: {fault.kind}", fault.status))


@endpoint(Provider.OAUTH, fixed("auth"), render_fault)
async def authorize(request: web.Request) -> web.StreamResponse:
    """``GET /oauth2/auth``: auto-consent, redirect with ``code`` (or ``error``) and ``state``."""
    query = request.query
    oauth = request.app[STATE].oauth
    try:
        code = oauth.authorize(
            client_id=query.get("client_id", ""),
            redirect_uri=query.get("redirect_uri"),
            response_type=query.get("response_type", ""),
            scope=query.get("scope", ""),
            code_challenge=query.get("code_challenge"),
            code_challenge_method=query.get("code_challenge_method"),
            login_hint=query.get("login_hint"),
        )
    except UntrustedRedirect as exc:
        # RFC 6749 §4.1.2.1: never redirect to an unverified URI; tell the user instead.
        return _error_response(exc)
    except OAuthError as exc:
        target = _redirect_target(request)
        params = {"error": exc.error, "error_description": exc.description}
        return _redirect(target, params, query.get("state"))
    redirect_uri = code.redirect_uri or _redirect_target(request)
    return _redirect(redirect_uri, {"code": code.code}, query.get("state"))


@endpoint(Provider.OAUTH, fixed("token"), render_fault)
async def token(request: web.Request) -> web.StreamResponse:
    """``POST /oauth2/token``: ``authorization_code`` and ``refresh_token`` grants."""
    form = await request.post()
    fields = {key: value for key, value in form.items() if isinstance(value, str)}
    grant_type = fields.get("grant_type", "")
    oauth = request.app[STATE].oauth
    oauth.token_calls[grant_type] += 1
    try:
        client = _client(request, fields)
        if grant_type == "authorization_code":
            grant = oauth.exchange_code(
                client,
                fields.get("code", ""),
                redirect_uri=fields.get("redirect_uri"),
                code_verifier=fields.get("code_verifier"),
            )
        elif grant_type == "refresh_token":
            grant = oauth.refresh(client, fields.get("refresh_token", ""))
        elif not grant_type:
            raise OAuthError("invalid_request", "grant_type is required")
        else:
            raise OAuthError("unsupported_grant_type", f"unsupported grant_type {grant_type!r}")
    except OAuthError as exc:
        response = _error_response(exc)
        if exc.status == 401 and "Authorization" in request.headers:
            response.headers["WWW-Authenticate"] = 'Basic realm="sandbox-oauth"'
        return response
    return web.json_response(_grant_json(grant), headers=_NO_STORE)


@endpoint(Provider.OAUTH, fixed("revoke"), render_fault)
async def revoke(request: web.Request) -> web.StreamResponse:
    """``POST /oauth2/revoke``: revoke the family of ``token`` (200 even if unknown, RFC 7009)."""
    form = await request.post()
    value = form.get("token") or request.query.get("token")
    if not isinstance(value, str) or not value:
        return _error_response(OAuthError("invalid_request", "token is required"))
    request.app[STATE].oauth.revoke(value)
    return web.Response(status=200)


def routes() -> list[web.RouteDef]:
    """The provider's routes."""
    return [
        web.get("/oauth2/auth", authorize),
        web.post("/oauth2/token", token),
        web.post("/oauth2/revoke", revoke),
    ]


def _client(request: web.Request, fields: dict[str, str]) -> OAuthClient:
    """Authenticate the client by HTTP basic auth, else by form fields (RFC 6749 §2.3.1)."""
    oauth = request.app[STATE].oauth
    header = request.headers.get("Authorization")
    if header is not None:
        basic = parse_basic(header)
        if basic is None:
            raise OAuthError("invalid_client", "malformed Authorization header", status=401)
        return oauth.authenticate_client(basic.username, basic.password)
    return oauth.authenticate_client(fields.get("client_id"), fields.get("client_secret"))


def _grant_json(grant: TokenGrant) -> dict[str, Any]:
    body: dict[str, Any] = {
        "access_token": grant.access_token,
        "token_type": "Bearer",
        "expires_in": grant.expires_in,
        "refresh_token": grant.refresh_token,
    }
    if grant.scope:
        body["scope"] = grant.scope
    return body


def _error_response(exc: OAuthError) -> web.Response:
    body = {"error": exc.error, "error_description": exc.description}
    return web.json_response(body, status=exc.status, headers=_NO_STORE)


def _redirect_target(request: web.Request) -> str:
    """The redirect URI of an authorization request that passed client validation."""
    redirect_uri = request.query.get("redirect_uri")
    if redirect_uri:
        return redirect_uri
    client_id = request.query.get("client_id", "")
    return request.app[STATE].oauth.client(client_id).redirect_uris[0]


def _redirect(redirect_uri: str, params: dict[str, str], state: str | None) -> web.Response:
    if state is not None:
        params = {**params, "state": state}
    location = URL(redirect_uri).update_query(params)
    return web.Response(status=302, headers={"Location": str(location)})
