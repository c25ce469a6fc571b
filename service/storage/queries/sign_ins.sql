-- name: sign_in_insert
INSERT INTO oauth_sign_ins (tenant_id, state_digest, integration_id, provider, verifier_sealed,
                            redirect_uri, return_url, scopes, created_at, expires_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)

-- name: sign_ins_purge_expired
-- Expired sign-ins of one tenant; they can never complete.
DELETE FROM oauth_sign_ins WHERE tenant_id = $1 AND expires_at < $2

-- name: sign_ins_batch
-- Keyset over every tenant's sign-ins in flight, for re-sealing with a new key.
SELECT tenant_id, state_digest, integration_id, verifier_sealed FROM oauth_sign_ins
WHERE (tenant_id, state_digest) > ($1, $2)
ORDER BY tenant_id, state_digest
LIMIT $3

-- name: sign_in_reseal
-- Compare-and-set: a sign-in taken meanwhile stays taken.
UPDATE oauth_sign_ins SET verifier_sealed = $4
WHERE tenant_id = $1 AND state_digest = $2 AND verifier_sealed = $3

-- name: sign_in_take
-- Consumes a sign-in: whoever deletes the row owns its callback, so a state works once even
-- when a browser (or an attacker) replays it to two replicas at the same moment.
DELETE FROM oauth_sign_ins WHERE tenant_id = $1 AND state_digest = $2
RETURNING tenant_id, integration_id, provider, verifier_sealed, redirect_uri, return_url, scopes,
          created_at, expires_at
