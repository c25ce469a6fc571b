-- Sync runs and the synced records. tenant_id leads every key and index (see 0001).
--
-- The sync cursor stays on integrations.cursor (jsonb, written only by the sync engine; the
-- lifecycle's row writes never touch it). It holds the connector's position plus the id of the
-- full listing in progress, if any.

-- One row per sync of an integration. `seq` numbers an integration's runs 1, 2, 3… under the
-- integration's row lock, so "newest first" is exact even when two runs start in the same
-- clock tick. A runner owns its run until `lease_expires_at` and renews the lease with every
-- page it commits; an expired lease on a RUNNING run means its process died.
CREATE TABLE sync_runs (
    tenant_id        text        NOT NULL,
    integration_id   uuid        NOT NULL,
    seq              bigint      NOT NULL,
    id               uuid        NOT NULL,
    trigger          text        NOT NULL,
    outcome          text        NOT NULL,
    started_at       timestamptz NOT NULL,
    ended_at         timestamptz,
    pages            integer     NOT NULL DEFAULT 0,
    records_upserted bigint      NOT NULL DEFAULT 0,
    records_deleted  bigint      NOT NULL DEFAULT 0,
    full_resync      boolean     NOT NULL DEFAULT false,
    error            jsonb,
    note             text        NOT NULL DEFAULT '',
    lease_expires_at timestamptz,
    PRIMARY KEY (tenant_id, integration_id, seq),
    UNIQUE (tenant_id, id),
    FOREIGN KEY (tenant_id, integration_id) REFERENCES integrations (tenant_id, id)
        ON DELETE CASCADE
);

-- Never two running syncs of one integration, whichever replica started them: the second
-- INSERT of a RUNNING row fails instead of syncing in parallel.
CREATE UNIQUE INDEX sync_runs_one_running ON sync_runs (tenant_id, integration_id)
    WHERE outcome = 'RUNNING';

-- The synced data, keyed by the provider's own record id. `listing` is the id of the last full
-- listing that saw the record: when a full listing ends, records it did not see are gone at
-- the provider and are deleted (Google's 410 resync, every ICS or REST sync).
CREATE TABLE records (
    tenant_id      text        NOT NULL,
    integration_id uuid        NOT NULL,
    record_id      text        NOT NULL,
    data           jsonb       NOT NULL,
    listing        uuid,
    updated_at     timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, integration_id, record_id),
    FOREIGN KEY (tenant_id, integration_id) REFERENCES integrations (tenant_id, id)
        ON DELETE CASCADE
);
