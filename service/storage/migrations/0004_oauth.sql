-- OAuth2 sign-ins in flight. tenant_id leads every key and index (see 0001).
--
-- A sign-in lives from Reauthorize (sign_in) until its callback, or until it expires. It is
-- kept here rather than in a replica's memory so that whichever replica the browser comes back
-- to can complete it. Only the SHA-256 of the one-time `state` is stored, and the PKCE
-- verifier is sealed like credentials (bound to this row), so a copy of the table cannot
-- complete anyone's sign-in.
CREATE TABLE oauth_sign_ins (
    tenant_id       text        NOT NULL,
    state_digest    bytea       NOT NULL,
    integration_id  uuid        NOT NULL,
    provider        text        NOT NULL,
    verifier_sealed bytea       NOT NULL,
    redirect_uri    text        NOT NULL,
    return_url      text        NOT NULL DEFAULT '',
    scopes          text[]      NOT NULL,
    created_at      timestamptz NOT NULL,
    expires_at      timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, state_digest),
    FOREIGN KEY (tenant_id, integration_id) REFERENCES integrations (tenant_id, id)
        ON DELETE CASCADE
);
-- Purging expired sign-ins, and the cascade when an integration is deleted.
CREATE INDEX oauth_sign_ins_expiry ON oauth_sign_ins (tenant_id, expires_at);
CREATE INDEX oauth_sign_ins_integration ON oauth_sign_ins (tenant_id, integration_id);
