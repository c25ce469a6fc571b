-- name: integration_get
SELECT i.*, c.kind AS credentials_kind, c.set_at AS credentials_set_at
FROM integrations i LEFT JOIN credentials c
    ON c.tenant_id = i.tenant_id AND c.integration_id = i.id
WHERE i.tenant_id = $1 AND i.id = $2

-- name: integration_get_for_update
SELECT i.*, c.kind AS credentials_kind, c.set_at AS credentials_set_at
FROM integrations i LEFT JOIN credentials c
    ON c.tenant_id = i.tenant_id AND c.integration_id = i.id
WHERE i.tenant_id = $1 AND i.id = $2
FOR UPDATE OF i

-- name: integration_insert
INSERT INTO integrations (
    tenant_id, id, display_name, connector_type, status, sync_state, config,
    missing_config_fields, last_error, consecutive_failures, breaker_open, breaker_opened_at,
    next_attempt_at, breaker_threshold, breaker_slow_steps, breaker_halt, sync_interval,
    last_synced_at, next_sync_at, late_at, record_count, revision, created_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19,
        $20, $21, $22, $23, $24)

-- name: integration_update
-- The lifecycle's columns only: the cursor and the claim (lease_version, claim_expires_at,
-- claimed_by, late_noticed) belong to the sync engine and the scheduler.
UPDATE integrations SET
    display_name = $3, connector_type = $4, status = $5, sync_state = $6, config = $7,
    missing_config_fields = $8, last_error = $9, consecutive_failures = $10, breaker_open = $11,
    breaker_opened_at = $12, next_attempt_at = $13, breaker_threshold = $14,
    breaker_slow_steps = $15, breaker_halt = $16, sync_interval = $17, last_synced_at = $18,
    next_sync_at = $19, late_at = $20, record_count = $21, revision = $22, created_at = $23,
    updated_at = $24
WHERE tenant_id = $1 AND id = $2

-- name: integration_delete
DELETE FROM integrations WHERE tenant_id = $1 AND id = $2 RETURNING record_count

-- name: integration_list
-- Newest first, keyset-paginated on (created_at, id); $4/$5 is the last row of the previous page.
SELECT i.*, c.kind AS credentials_kind, c.set_at AS credentials_set_at
FROM integrations i LEFT JOIN credentials c
    ON c.tenant_id = i.tenant_id AND c.integration_id = i.id
WHERE i.tenant_id = $1
  AND (cardinality($2::text[]) = 0 OR i.status = ANY($2::text[]))
  AND ($3::text = '' OR i.connector_type = $3)
  AND ($4::timestamptz IS NULL OR (i.created_at, i.id) < ($4, $5::uuid))
ORDER BY i.created_at DESC, i.id DESC
LIMIT $6

-- name: revision_hold_limit
-- For the rest of the transaction only (is_local): see integrations.REVISION_HOLD_LIMIT.
SELECT set_config('idle_in_transaction_session_timeout', $1, true)

-- name: revision_next
-- Must be the last write of its transaction: the row lock orders commits by revision.
INSERT INTO tenant_revisions (tenant_id, revision) VALUES ($1, 1)
ON CONFLICT (tenant_id) DO UPDATE SET revision = tenant_revisions.revision + 1
RETURNING revision

-- name: event_insert
INSERT INTO events (tenant_id, revision, integration_id, trigger, from_status, to_status, reason,
                    actor, error, state, occurred_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)

-- name: event_notify
-- Wakes WatchStatus listeners on every replica; the events table stays the truth.
SELECT pg_notify('integration_events', $1::text || ':' || $2::bigint)

-- name: events_delete_for_integration
DELETE FROM events WHERE tenant_id = $1 AND integration_id = $2

-- name: events_list
SELECT * FROM events
WHERE tenant_id = $1 AND integration_id = $2 AND ($3::bigint IS NULL OR revision < $3)
ORDER BY revision DESC
LIMIT $4

-- name: create_request_get
SELECT integration_id, fingerprint FROM create_requests
WHERE tenant_id = $1 AND request_id = $2 AND created_at > $3

-- name: create_request_put
INSERT INTO create_requests (tenant_id, request_id, integration_id, fingerprint, created_at)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (tenant_id, request_id) DO UPDATE
    SET integration_id = excluded.integration_id, fingerprint = excluded.fingerprint,
        created_at = excluded.created_at
    WHERE create_requests.created_at <= $6

-- name: create_requests_purge
DELETE FROM create_requests WHERE tenant_id = $1 AND created_at <= $2

-- name: credentials_put
INSERT INTO credentials (tenant_id, integration_id, kind, sealed, set_at)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (tenant_id, integration_id) DO UPDATE
    SET kind = excluded.kind, sealed = excluded.sealed, set_at = excluded.set_at

-- name: credentials_get
SELECT kind, sealed, set_at FROM credentials WHERE tenant_id = $1 AND integration_id = $2
