-- name: credentials_put
-- New credentials: whose account they are is not known until they are verified. Channels
-- opened with the credentials they replace keep a copy of those (sealed, bound as they are), so
-- their stop is authorised by the account that opened them (see migrations/0008_push.sql:
-- `orphan_credentials` holds the credentials a channel was opened with, once the integration
-- no longer has them).
WITH kept AS (
    UPDATE push_channels c SET
        orphan_credentials = (SELECT sealed FROM credentials
                              WHERE tenant_id = $1 AND integration_id = $2)
    WHERE c.tenant_id = $1 AND c.integration_id = $2 AND c.orphan_credentials IS NULL
      AND c.credentials_set_at = (SELECT set_at FROM credentials
                                  WHERE tenant_id = $1 AND integration_id = $2)
)
INSERT INTO credentials (tenant_id, integration_id, kind, sealed, set_at, account)
VALUES ($1, $2, $3, $4, $5, NULL)
ON CONFLICT (tenant_id, integration_id) DO UPDATE
    SET kind = excluded.kind, sealed = excluded.sealed, set_at = excluded.set_at,
        account = NULL

-- name: credentials_account_set
-- The account the credentials of $3 (their set_at, so a later Reauthorize's are not
-- mislabelled by an earlier test) turned out to belong to.
UPDATE credentials SET account = $4
WHERE tenant_id = $1 AND integration_id = $2 AND set_at = $3

-- name: credentials_get
SELECT kind, sealed, set_at, account FROM credentials
WHERE tenant_id = $1 AND integration_id = $2

-- name: credentials_batch
-- Keyset over every tenant's credentials, for re-sealing with a new key.
SELECT tenant_id, integration_id, sealed FROM credentials
WHERE (tenant_id, integration_id) > ($1, $2::uuid)
ORDER BY tenant_id, integration_id
LIMIT $3

-- name: credentials_refresh_lock
-- Serialises token refreshes of one integration across every replica, until the end of the
-- transaction. The two-key advisory lock space is separate from the migrations' one-key lock;
-- the first key says "credential refresh", the second is a hash of the integration (a
-- collision only makes two integrations take turns).
SELECT pg_advisory_xact_lock(1330660179, hashtext($1::text || '/' || $2::uuid::text))

-- name: credentials_swap
-- Compare-and-set: writes (refreshed or re-sealed) credentials only over the exact value the
-- writer read, so a Reauthorize, a refresh or a re-key that committed meanwhile is never
-- overwritten blindly.
UPDATE credentials SET sealed = $4
WHERE tenant_id = $1 AND integration_id = $2 AND sealed = $3
