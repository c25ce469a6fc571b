-- name: credentials_batch
-- Keyset over every tenant's credentials, for re-sealing with a new key.
SELECT tenant_id, integration_id, sealed FROM credentials
WHERE (tenant_id, integration_id) > ($1, $2::uuid)
ORDER BY tenant_id, integration_id
LIMIT $3

-- name: credentials_reseal
-- Compare-and-set: a Reauthorize that changed the row meanwhile wins.
UPDATE credentials SET sealed = $4
WHERE tenant_id = $1 AND integration_id = $2 AND sealed = $3
