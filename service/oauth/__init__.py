"""OAuth2 for integrations: the sign-in flow (authorization code with PKCE), the token
endpoint client, and silent token refresh that is single-flight across replicas.

One module per concern: `pkce` (verifiers, challenges, one-time states), `providers` (where a
provider's endpoints are and which client this deployment uses), `token_endpoint` (the HTTP
client of the token endpoint, with failures classified), `sign_in` (sign-ins kept in
PostgreSQL so any replica's callback completes them), `refresh` (the refresher and the
`AccessTokens` connectors use), `reauthorization` (Reauthorize, both ways) and `callback` (the
HTTP endpoint the provider redirects browsers to).
"""
