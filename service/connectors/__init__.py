"""Connectors: the provider I/O, one module per provider behind one small interface.

- `base` — the interface (`Connector`: config schema, `test_connection`, `fetch` one `Page`
  from a cursor) and the values it trades in (`Source`, `Page`, `PageKind`).
- `google_calendar`, `ics_feed`, `rest_json` — the built-in connectors, registered as entry
  points of the group `integrations.connectors` (see `registry`), as a plugin would be.
- `http` — the one HTTP client: timeouts, redirects, transport failures classified;
  `network` — the guard that keeps user-configured URLs off private networks.
- `failures` — `ProviderFailure`, how a connector says what went wrong (an `ErrorCode`);
  `auth` — credentials on the wire and the `AccessTokens` seam for OAuth2 refresh.
"""
