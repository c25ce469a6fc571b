-- name: sign_in_insert
INSERT INTO oauth_sign_ins (tenant_id, state_digest, integration_id, provider, verifier_sealed,
                            redirect_uri, return_url, scopes, created_at, expires_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)

-- name: sign_ins_purge_expired
-- Expired sign-ins of one tenant; they can never complete.
DELETE FROM oauth_sign_ins WHERE tenant_id = $1 AND expires_at < $2

-- name: sign_in_take
-- Consumes a sign-in: whoever deletes the row owns its callback, so a state works once even
-- when a browser (or an attacker) replays it to two replicas at the same moment.
DELETE FROM oauth_sign_ins WHERE tenant_id = $1 AND state_digest = $2
RETURNING tenant_id, integration_id, provider, verifier_sealed, redirect_uri, return_url, scopes,
          created_at, expires_at

-- name: credentials_refresh_lock
-- Serialises token refreshes of one integration across every replica, until the end of the
-- transaction. The two-key advisory lock space is separate from the migrations' one-key lock;
-- the first key says "credential refresh", the second is a hash of the integration (a
-- collision only makes two integrations take turns).
SELECT pg_advisory_xact_lock(1330660179, hashtext($1::text || '/' || $2::uuid::text))

-- name: credentials_swap
-- Compare-and-set: writes refreshed credentials only over the exact value the refresh started
-- from, so a Reauthorize (or a re-key) that committed meanwhile is never overwritten blindly.
UPDATE credentials SET sealed = $4
WHERE tenant_id = $1 AND integration_id = $2 AND sealed = $3
