-- Webhook endpoints and their deliveries (see migrations/0007_changes_and_webhooks.sql). The
-- deliveries of events are written by the events' own statements (change_update,
-- sync_run_finish, sync_page_commit); here they are claimed, attempted and listed.

-- name: endpoint_insert
INSERT INTO webhook_endpoints (tenant_id, id, url, description, event_types, secret_sealed,
                               created_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $7)
RETURNING *

-- name: endpoint_get
SELECT * FROM webhook_endpoints WHERE tenant_id = $1 AND id = $2

-- name: endpoint_lock
-- NO KEY UPDATE: the key never changes, and it does not block the foreign-key checks of
-- deliveries that events write meanwhile (with their tenant's revision lock held).
SELECT * FROM webhook_endpoints WHERE tenant_id = $1 AND id = $2 FOR NO KEY UPDATE

-- name: endpoint_count
SELECT count(*) FROM webhook_endpoints WHERE tenant_id = $1

-- name: endpoint_list
-- Newest first, keyset-paginated on (created_at, id); $2/$3 is the last row of the previous page.
SELECT * FROM webhook_endpoints
WHERE tenant_id = $1 AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3::uuid))
ORDER BY created_at DESC, id DESC
LIMIT $4

-- name: endpoint_update
-- An endpoint's settings as a person changed them; the caller holds its row lock.
UPDATE webhook_endpoints SET
    url = $3, description = $4, event_types = $5, enabled = $6, disabled_reason = $7,
    disabled_at = $8, failing_since = $9, version = version + 1, updated_at = $10
WHERE tenant_id = $1 AND id = $2
RETURNING *

-- name: endpoint_secret_get
SELECT secret_sealed FROM webhook_endpoints WHERE tenant_id = $1 AND id = $2

-- name: endpoint_secret_put
UPDATE webhook_endpoints SET
    secret_sealed = $3, previous_secret_expires_at = $4, version = version + 1, updated_at = $5
WHERE tenant_id = $1 AND id = $2
RETURNING *

-- name: endpoint_delete
DELETE FROM webhook_endpoints WHERE tenant_id = $1 AND id = $2 RETURNING id

-- name: endpoint_deliveries_park
-- A disabled endpoint's pending deliveries wait, out of the senders' sweep, until it is enabled.
UPDATE webhook_deliveries SET next_attempt_at = NULL
WHERE tenant_id = $1 AND endpoint_id = $2 AND state = 'PENDING'

-- name: endpoint_deliveries_resume
-- An endpoint enabled again: its pending deliveries are due at once.
UPDATE webhook_deliveries SET next_attempt_at = $3
WHERE tenant_id = $1 AND endpoint_id = $2 AND state = 'PENDING'

-- name: endpoint_succeeded
-- A 2xx answer ends the endpoint's failing streak (written only when there is one).
UPDATE webhook_endpoints SET failing_since = NULL
WHERE tenant_id = $1 AND id = $2 AND failing_since IS NOT NULL

-- name: endpoint_failed
-- A failed attempt: the streak starts now unless it is running already. Returns when it began.
UPDATE webhook_endpoints SET failing_since = coalesce(failing_since, $3)
WHERE tenant_id = $1 AND id = $2 AND enabled
RETURNING *

-- name: endpoint_disable
-- The brake: disable an endpoint that kept failing ($3 why, at $4), park its deliveries, and
-- tell the tenant's other enabled endpoints that want webhook.endpoint_disabled ($5 event id,
-- $6 payload), in one statement. The revision is the tenant's as of now.
WITH off AS (
    UPDATE webhook_endpoints SET
        enabled = false, disabled_reason = $3, disabled_at = $4, version = version + 1,
        updated_at = $4
    WHERE tenant_id = $1 AND id = $2 AND enabled
    RETURNING id
), parked AS (
    UPDATE webhook_deliveries SET next_attempt_at = NULL
    WHERE tenant_id = $1 AND endpoint_id IN (SELECT id FROM off) AND state = 'PENDING'
), hooks AS (
    INSERT INTO webhook_deliveries (tenant_id, endpoint_id, event_id, event_type,
                                    integration_id, revision, payload, created_at,
                                    next_attempt_at)
    SELECT $1, w.id, $5, 'webhook.endpoint_disabled', NULL,
           coalesce((SELECT revision FROM tenant_revisions WHERE tenant_id = $1), 0), $6, $4, $4
    FROM off JOIN webhook_endpoints w ON w.tenant_id = $1 AND w.id <> off.id
    WHERE w.enabled
      AND (cardinality(w.event_types) = 0 OR 'webhook.endpoint_disabled' = ANY(w.event_types))
)
SELECT count(*) FROM off

-- name: deliveries_claim
-- Up to $2 deliveries due at $1 to enabled endpoints, earliest first, claimed by worker $4
-- until $3: each one's lease version (the fencing token of the attempt) moves on. Skipped:
-- rows another replica is claiming right now (SKIP LOCKED, so replicas never wait for each
-- other) and unexpired claims. With each, its endpoint's URL and sealed secrets.
WITH due AS (
    SELECT d.tenant_id, d.endpoint_id, d.event_id
    FROM webhook_deliveries d
    JOIN webhook_endpoints w ON w.tenant_id = d.tenant_id AND w.id = d.endpoint_id
    WHERE d.state = 'PENDING' AND d.next_attempt_at <= $1 AND w.enabled
      AND (d.claim_expires_at IS NULL OR d.claim_expires_at <= $1)
    ORDER BY d.next_attempt_at
    LIMIT $2
    FOR UPDATE OF d SKIP LOCKED
)
UPDATE webhook_deliveries d SET
    lease_version = d.lease_version + 1, claim_expires_at = $3, claimed_by = $4
FROM due, webhook_endpoints w
WHERE d.tenant_id = due.tenant_id AND d.endpoint_id = due.endpoint_id
  AND d.event_id = due.event_id AND w.tenant_id = d.tenant_id AND w.id = d.endpoint_id
RETURNING d.*, w.url, w.secret_sealed, w.previous_secret_expires_at

-- name: delivery_attempted
-- An attempt's outcome: logged ($5), and the delivery DELIVERED, FAILED or due again at $7
-- ($6 state, $8 when it finished). Only while the claim $4 still holds: no row back means
-- another replica took the delivery over and its outcome counts instead.
UPDATE webhook_deliveries SET
    attempts = attempts + 1, attempts_log = attempts_log || jsonb_build_array($5::jsonb),
    state = $6, next_attempt_at = $7, finished_at = $8, claim_expires_at = NULL,
    claimed_by = NULL
WHERE tenant_id = $1 AND endpoint_id = $2 AND event_id = $3 AND lease_version = $4
  AND state = 'PENDING'
RETURNING attempts

-- name: delivery_release
-- Hand a claim back unattempted (the process stops): due again at once, for any replica.
UPDATE webhook_deliveries SET claim_expires_at = NULL, claimed_by = NULL
WHERE tenant_id = $1 AND endpoint_id = $2 AND event_id = $3 AND lease_version = $4

-- name: deliveries_list
-- An endpoint's delivery log, newest first; $3/$4 is the last row of the previous page.
SELECT * FROM webhook_deliveries
WHERE tenant_id = $1 AND endpoint_id = $2
  AND ($3::timestamptz IS NULL OR (created_at, event_id) < ($3, $4::uuid))
ORDER BY created_at DESC, event_id DESC
LIMIT $5

-- name: deliveries_purge
-- At most $2 finished deliveries (delivered or given up) older than $1, across tenants.
WITH doomed AS (
    SELECT tenant_id, endpoint_id, event_id FROM webhook_deliveries
    WHERE finished_at IS NOT NULL AND finished_at < $1
    LIMIT $2
), gone AS (
    DELETE FROM webhook_deliveries d USING doomed x
    WHERE d.tenant_id = x.tenant_id AND d.endpoint_id = x.endpoint_id
      AND d.event_id = x.event_id
    RETURNING 1
)
SELECT count(*) FROM gone

-- name: endpoint_secrets_batch
-- Keyset over every tenant's endpoint secrets, for re-sealing with a new key.
SELECT tenant_id, id, secret_sealed FROM webhook_endpoints
WHERE (tenant_id, id) > ($1, $2::uuid)
ORDER BY tenant_id, id
LIMIT $3

-- name: endpoint_secret_swap
-- Compare-and-set: a re-sealed secret is written only over the exact value read, so a rotation
-- that committed meanwhile is never overwritten.
UPDATE webhook_endpoints SET secret_sealed = $4
WHERE tenant_id = $1 AND id = $2 AND secret_sealed = $3
