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

-- name: change_update
-- One change of an integration, in one statement: the new state (the lifecycle's columns
-- only: the cursor and the claim belong to the sync engine and the scheduler) and the
-- change's revision, event, webhook and notification (record_integration_event, see 0012; it
-- must be the transaction's last write). $1-$24 are the state (see IntegrationRows), $25 the
-- hold limit, $26-$32 the event, $33-$40 the push state, $41-$42 the id and payload of its
-- integration.status_changed webhook.
WITH rev AS (
    SELECT record_integration_event($1, $2, $25, $26, $27, $28, $29, $30, $31, $32, $23, $4,
                                    $41, $42) AS revision
), written AS (
    UPDATE integrations i SET
        display_name = $3, connector_type = $4, status = $5, sync_state = $6, config = $7,
        missing_config_fields = $8, last_error = $9, consecutive_failures = $10,
        breaker_open = $11, breaker_opened_at = $12, next_attempt_at = $13,
        breaker_threshold = $14, breaker_slow_steps = $15, breaker_halt = $16,
        sync_interval = $17, last_synced_at = $18, next_sync_at = $19, late_at = $20,
        record_count = $21, revision = rev.revision, created_at = $22, updated_at = $23,
        breaker_trial = $24, push_state = $33, push_reason = $34, push_expires_at = $35,
        push_retry_at = $36, push_check_at = $37, push_pending = $38,
        push_notified_at = $39, push_poll_interval = $40
    FROM rev
    WHERE i.tenant_id = $1 AND i.id = $2
)
SELECT revision FROM rev

-- name: change_insert
-- A new integration: like change_update, inserting the state.
WITH rev AS (
    SELECT record_integration_event($1, $2, $25, $26, $27, $28, $29, $30, $31, $32, $23, $4,
                                    $41, $42) AS revision
), written AS (
    INSERT INTO integrations (
        tenant_id, id, display_name, connector_type, status, sync_state, config,
        missing_config_fields, last_error, consecutive_failures, breaker_open,
        breaker_opened_at, next_attempt_at, breaker_threshold, breaker_slow_steps, breaker_halt,
        sync_interval, last_synced_at, next_sync_at, late_at, record_count, revision,
        created_at, updated_at, breaker_trial, push_state, push_reason, push_expires_at,
        push_retry_at, push_check_at, push_pending, push_notified_at, push_poll_interval)
    SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18,
           $19, $20, $21, rev.revision, $22, $23, $24, $33, $34, $35, $36, $37, $38, $39, $40
    FROM rev
)
SELECT revision FROM rev

-- name: change_delete
-- The tombstone of a deleted integration (its row is gone already): the integration's
-- history goes with it, but for this event. The DELETE cannot see the tombstone it sits
-- beside (one statement, one snapshot). $3 is the hold limit, $4-$11 the event, $12-$13 its
-- webhook (see change_update).
WITH history AS (
    DELETE FROM events WHERE tenant_id = $1 AND integration_id = $2
), rev AS (
    SELECT record_integration_event($1, $2, $3, $4, $5, $6, $7, $8, $9, NULL, $10, $11,
                                    $12, $13) AS revision
)
SELECT revision FROM rev

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

