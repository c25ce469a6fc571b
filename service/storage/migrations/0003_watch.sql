-- WatchStatus and history retention.
--
-- Events older than the retention window are compacted (deleted) by a periodic job. So that a
-- subscriber resuming from an old revision is told it missed history instead of silently
-- skipping it, the job records per tenant the highest revision it deleted: resuming after a
-- revision below that watermark fails with REVISION_COMPACTED. A separate table, not a column
-- of tenant_revisions, so compaction never contends for the row lock that orders writers.
CREATE TABLE history_compaction (
    tenant_id         text        PRIMARY KEY,
    compacted_through bigint      NOT NULL,
    compacted_at      timestamptz NOT NULL
);

-- Finds what the retention window lets go without scanning a tenant's whole history.
CREATE INDEX events_by_age ON events (tenant_id, occurred_at);
