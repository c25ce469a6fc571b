-- Push channels and the integrations' push bookkeeping (see migrations/0008_push.sql). Every
-- time ($1 and the like) is the service's clock.

-- name: push_channel_insert
INSERT INTO push_channels (tenant_id, channel_id, integration_id, connector_type, token_sealed,
                           resource_id, config, credentials_set_at, opened_at, expires_at,
                           stop_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)

-- name: push_channels_of
-- An integration's channels, the newest first.
SELECT * FROM push_channels WHERE tenant_id = $1 AND integration_id = $2
ORDER BY opened_at DESC

-- name: push_channel_get
SELECT * FROM push_channels WHERE tenant_id = $1 AND channel_id = $2

-- name: push_channels_retire
-- Channels $2 of tenant $1 must go: stopped at $3 (those already retired keep their time).
UPDATE push_channels SET stop_at = LEAST(COALESCE(stop_at, $3), $3)
WHERE tenant_id = $1 AND channel_id = ANY($2::text[])

-- name: push_channels_orphan
-- The integration is being deleted: its channels are retired, stopped as soon as a
-- reconciler sweeps ('-infinity': due whatever the clock says), with a copy of the sealed
-- credentials to authorise the stop (they go with the row). A channel that kept the ones it was
-- opened with (replaced since: see credentials_put) keeps those.
UPDATE push_channels c SET
    stop_at = '-infinity',
    orphan_credentials = COALESCE(c.orphan_credentials,
                                  (SELECT sealed FROM credentials
                                   WHERE tenant_id = $1 AND integration_id = $2))
WHERE c.tenant_id = $1 AND c.integration_id = $2

-- name: push_channels_batch
-- Keyset over every tenant's channels, for re-sealing with a new key.
SELECT tenant_id, channel_id, integration_id, token_sealed, orphan_credentials
FROM push_channels
WHERE (tenant_id, channel_id) > ($1, $2)
ORDER BY tenant_id, channel_id
LIMIT $3

-- name: push_channel_reseal
-- Compare-and-set over both sealed values read, so a change that committed meanwhile (a Delete
-- or Reauthorize keeping credentials) is never overwritten.
UPDATE push_channels SET token_sealed = $5, orphan_credentials = $6
WHERE tenant_id = $1 AND channel_id = $2 AND token_sealed = $3
  AND orphan_credentials IS NOT DISTINCT FROM $4

-- name: push_channel_delete
DELETE FROM push_channels WHERE tenant_id = $1 AND channel_id = $2

-- name: push_stop_failed
UPDATE push_channels SET stop_at = $3 WHERE tenant_id = $1 AND channel_id = $2

-- name: push_stops_due
-- Up to $2 retired channels whose stop is due at $1, claimed until $3 (SKIP LOCKED: replicas
-- never take the same one, and never wait for each other).
WITH due AS (
    SELECT tenant_id, channel_id FROM push_channels
    WHERE stop_at <= $1
    ORDER BY stop_at
    LIMIT $2
    FOR UPDATE SKIP LOCKED
)
UPDATE push_channels c SET stop_at = $3, stop_attempts = c.stop_attempts + 1
FROM due
WHERE c.tenant_id = due.tenant_id AND c.channel_id = due.channel_id
RETURNING c.*

-- name: push_checks_due
-- Up to $3 integrations of the connector types $2 whose channel needs a look at $1, claimed
-- until $4: should the claimant die, another replica looks then. Integrations of other types
-- have no channel to look at: their mark is simply cleared. Rows someone holds are skipped.
WITH others AS (
    UPDATE integrations i SET push_check_at = NULL
    FROM (SELECT tenant_id, id FROM integrations
          WHERE push_check_at <= $1 AND connector_type <> ALL($2::text[])
          LIMIT 1000
          FOR UPDATE SKIP LOCKED) o
    WHERE i.tenant_id = o.tenant_id AND i.id = o.id
), due AS (
    SELECT tenant_id, id FROM integrations
    WHERE push_check_at <= $1 AND connector_type = ANY($2::text[])
    ORDER BY push_check_at
    LIMIT $3
    FOR UPDATE SKIP LOCKED
)
UPDATE integrations i SET push_check_at = $4
FROM due
WHERE i.tenant_id = due.tenant_id AND i.id = due.id
RETURNING i.tenant_id, i.id

-- name: push_check_set
-- When the reconciler looks next, when nothing else changed (no revision: nothing to show).
UPDATE integrations SET push_check_at = $3 WHERE tenant_id = $1 AND id = $2

-- name: push_notified
-- A notification asks for a sync of the integration $2: due at $4 (the end of the coalescing
-- window, so a burst sets the same time) unless it is due sooner already, and marked as
-- announced ($3 the time it came). Not when it does not sync on its own, is braked, or is
-- retrying a failure (its backoff and the provider's Retry-After stand). $5/$6 the channel
-- and the notification's message number (kept for operators). Returns the due time.
WITH channel AS (
    UPDATE push_channels SET last_message = GREATEST(last_message, $6)
    WHERE tenant_id = $1 AND channel_id = $5
)
UPDATE integrations SET
    next_sync_at = LEAST(COALESCE(next_sync_at, $4), $4),
    push_pending = true,
    push_notified_at = $3
WHERE tenant_id = $1 AND id = $2 AND status IN ('ACTIVE', 'ERROR') AND NOT breaker_open
  AND consecutive_failures = 0
RETURNING next_sync_at
